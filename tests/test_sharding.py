"""Sharded parameters (FSDP2 fully_shard over 2 gloo processes on the CPU; issue 13): every process
scores every example and gets the unsharded model's logits; the trainable parameters gathered whole
equal the unsharded ones; a run directory written from them loads and scores as the unsharded run
(the bug peers ship: a shard saved as if it were the whole, peft#310, DeepSpeed#4295).

Accelerate takes FSDP only on GPUs, so the training loop's FSDP / ZeRO-3 path is exercised on the
device machine (docs/SCALING.md); here the pieces it is built from run under torch's own FSDP2."""

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

TESTS = Path(__file__).parent

CHILD = """
import sys
sys.path.insert(0, {tests!r})
import torch, torch.distributed as dist
from torch.distributed.fsdp import fully_shard
from helpers import tiny_label_model
from labeltune import LabelModel
from labeltune.sharding import full_trainable_state, load_trainable_state

dist.init_process_group("gloo")
rank = dist.get_rank()
model = tiny_label_model({model!r})  # the same seed on both processes: the same weights
texts = ["the movie was great", "bad acting in paris", "loved the plot", "awful", "john smith lives in london"]
enc, _ = model.encode(texts)
reference = model.logits(enc)
before = {{k: v.clone() for k, v in model.trainable_state().items()}}
if rank == 0:
    model.save_pretrained(sys.argv[1] + "/plain")
for layer in model.base_model.layers:
    fully_shard(layer)
fully_shard(model)
assert any(type(p).__name__ == "DTensor" for p in model.head.parameters()), "not sharded"
got = model.logits(enc)  # every process, every example, in step
assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(reference, got)), "sharded logits differ"
whole = full_trainable_state(model)
assert set(whole) == set(before) and all(torch.equal(whole[k], before[k]) for k in before), "gathered state differs"
if rank == 0:
    model.save_pretrained(sys.argv[1] + "/sharded", state=whole)
# scattering back: a changed head is what the sharded model then computes with
changed = {{k: (v + 0.5 if k.startswith("head.") else v) for k, v in whole.items()}}
load_trainable_state(model, changed)
again = full_trainable_state(model)
assert all(torch.equal(again[k], changed[k]) for k in changed), "scattered state differs"
assert not torch.allclose(model.logits(enc)[0], reference[0]), "the loaded head is not used"
dist.barrier()
if rank == 0:
    loaded = LabelModel.from_pretrained(sys.argv[1] + "/sharded")
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(reference, loaded.logits(enc))), "saved run differs"
    print("OK", flush=True)
"""


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun():
    return shutil.which("torchrun", path=str(Path(sys.executable).parent)) or shutil.which("torchrun")


@pytest.mark.skipif(_torchrun() is None, reason="torchrun is not installed")
def test_fsdp2_shards_score_gather_and_save_as_the_unsharded_model(tmp_path, tiny_llama):
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(tests=str(TESTS), model=str(tiny_llama)))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "CUDA_VISIBLE_DEVICES": ""}  # gloo on CPUs
    proc = subprocess.run([_torchrun(), "--nproc_per_node", "2", "--master_port", str(_port()), str(script),
                           str(tmp_path)], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert "OK" in proc.stdout
    plain = (tmp_path / "plain" / "head.safetensors").read_bytes()
    assert (tmp_path / "sharded" / "head.safetensors").read_bytes() == plain  # the head, whole


def test_checkpoints_are_refused_where_the_optimizer_state_is_sharded():
    from types import SimpleNamespace

    from accelerate.utils import DistributedType

    from labeltune import ConfigError
    from labeltune.sharding import check_supported, params_sharded

    zero2 = SimpleNamespace(distributed_type=DistributedType.DEEPSPEED,
                            state=SimpleNamespace(deepspeed_plugin=SimpleNamespace(zero_stage=2)))
    assert not params_sharded(zero2)
    check_supported(zero2, 0, False)
    with pytest.raises(ConfigError, match="not supported under DEEPSPEED"):
        check_supported(zero2, 100, False)
    fsdp1 = SimpleNamespace(distributed_type=DistributedType.FSDP, state=SimpleNamespace(
        fsdp_plugin=SimpleNamespace(fsdp_version=1)))
    with pytest.raises(ConfigError, match="fsdp_version: 2"):
        check_supported(fsdp1, 0, False)


FSDP_CHILD = """
import json, sys
import labeltune
rows = [{{"text": t, "label": y}} for t, y in [("the movie was great", "pos"), ("bad acting", "neg"),
        ("loved the plot", "pos"), ("awful film", "neg"), ("great fun", "pos"), ("boring plot", "neg")] * 6]
model = labeltune.train(rows, rows[:12], model={model!r}, output=sys.argv[1], progress=False, epochs=3, batch_size=8,
                        seed=1, calibration="none", mixed_precision="no")
"""


@pytest.mark.skipif(not torch.cuda.is_available(), reason="Accelerate runs FSDP on GPUs only "
                    "(the CPU test above covers the pieces)")
def test_fsdp2_training_through_accelerate_writes_a_whole_run(tmp_path, tiny_llama):
    from labeltune import LabelModel

    accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent)) or shutil.which("accelerate")
    script = tmp_path / "child.py"
    script.write_text(FSDP_CHILD.format(model=str(tiny_llama)))
    config = TESTS.parent / "examples" / "distributed" / "fsdp.yaml"
    proc = subprocess.run([accelerate, "launch", "--config_file", str(config), "--num_processes",
                           str(torch.cuda.device_count()), "--main_process_port", str(_port()), str(script),
                           str(tmp_path / "run")], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(TESTS.parent / "src")})
    assert proc.returncode == 0, proc.stderr[-4000:]
    # the run directory scores, in a plain process, what training measured on the same data: its
    # weights are whole, not one process's shard
    trained = json.loads((tmp_path / "run" / "metrics.json").read_text())
    loaded = LabelModel.from_pretrained(tmp_path / "run", device="cuda")
    rows = [{"text": t, "label": y} for t, y in [("the movie was great", "pos"), ("bad acting", "neg"),
            ("loved the plot", "pos"), ("awful film", "neg"), ("great fun", "pos"), ("boring plot", "neg")] * 2]
    again = loaded.evaluate(rows)
    assert again["accuracy"] == trained["accuracy"]
    assert again["loss"] == pytest.approx(trained["loss"], abs=1e-3)
