"""Two processes (torchrun, gloo, CPU) train as one does (issue 13): --batch-size is the global batch,
the schedule counts global steps, evaluation is sharded and gathered, the main process writes the run."""

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from labeltune import LabelModel

CHILD = """
import atexit, json, os, sys
import torch.distributed
# registered before labeltune's own exit hook, so it runs after it (atexit: last in, first out)
atexit.register(lambda: os.write(1, ("GROUP AT EXIT %s %s\\n" % (os.environ.get("RANK", "0"),
                                                            torch.distributed.is_initialized())).encode()))
import labeltune
import labeltune.data.batching as batching
seen = [0]
collate = batching.collate
def counting(rows, encoded, pad_id, problem):  # the training batches this process collates (examples)
    if problem != "none":  # (evaluation batches have no labels)
        seen[0] += sum(len(r) for r in rows)
    return collate(rows, encoded, pad_id, problem)
batching.collate = counting
rows = [{{"text": t, "label": y}} for t, y in [("the movie was great", "pos"), ("bad acting", "neg"),
        ("loved the plot", "pos"), ("awful film", "neg"), ("great fun", "pos"), ("boring plot", "neg"),
        ("fine", "pos")] * 5]
# dropout off: the two layouts draw different masks; everything else is the same arithmetic
labeltune.train(rows, rows[:13], model={model!r}, output=sys.argv[1], progress=False, epochs=2, batch_size=8,
                seed=1, lora_dropout=0.0, head_dropout=0.0, mixed_precision="no", calibration="none")
os.write(1, ("SEEN %s %d\\n" % (os.environ.get("RANK", "0"), seen[0])).encode())  # one write: never interleaved
"""


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(shutil.which("torchrun", path=str(Path(sys.executable).parent)) is None
                    and shutil.which("torchrun") is None, reason="torchrun is not installed")
def test_two_processes_train_as_one_with_the_same_global_batch(tmp_path, tiny_llama):
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(model=str(tiny_llama)))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "CUDA_VISIBLE_DEVICES": ""}  # gloo on CPUs
    one = subprocess.run([sys.executable, str(script), str(tmp_path / "one")], env=env, capture_output=True,
                         text=True, timeout=300)
    assert one.returncode == 0, one.stderr[-3000:]
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or shutil.which("torchrun")
    two = subprocess.run([torchrun, "--nproc_per_node", "2", "--master_port", str(_port()), str(script),
                          str(tmp_path / "two")], env=env, capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    assert two.stdout.count("epoch 2: eval") == 1  # one process speaks
    # the process group is destroyed before the interpreter's teardown (process_group.py)
    assert sorted(line for line in two.stdout.splitlines() if line.startswith("GROUP")) == \
        ["GROUP AT EXIT 0 False", "GROUP AT EXIT 1 False"]
    seen_one = [int(line.split()[2]) for line in one.stdout.splitlines() if line.startswith("SEEN")]
    seen_two = [int(line.split()[2]) for line in two.stdout.splitlines() if line.startswith("SEEN")]
    assert seen_one == [70] and len(seen_two) == 2  # 35 examples x 2 epochs in one process
    assert sum(seen_two) == 70 and max(seen_two) <= 36  # each process trains on its share of every batch
    m1 = json.loads((tmp_path / "one" / "metrics.json").read_text())
    m2 = json.loads((tmp_path / "two" / "metrics.json").read_text())
    # the same number of global optimiser steps (not twice as many, nor half), every evaluation example
    # scored exactly once (13, gathered from both processes), and the same result
    assert m1["steps"] == m2["steps"] == 10
    assert m1["n"] == m2["n"] == 13 and sum(m2["confusion_matrix"][0]) + sum(m2["confusion_matrix"][1]) == 13
    # tolerance: 1e-5 (the same sums in another order across two processes)
    assert m2["loss"] == pytest.approx(m1["loss"], abs=1e-5) and m2["accuracy"] == m1["accuracy"]
    a, b = LabelModel.from_pretrained(tmp_path / "one"), LabelModel.from_pretrained(tmp_path / "two")
    for (name, p), q in zip(a.head.state_dict().items(), b.head.state_dict().values()):
        torch.testing.assert_close(q, p, atol=1e-5, rtol=0, msg=name)
    lora_a = {k: v for k, v in a.named_parameters() if "lora_" in k}
    lora_b = dict(b.named_parameters())
    for k, v in lora_a.items():
        torch.testing.assert_close(lora_b[k], v, atol=1e-5, rtol=0)
    assert b.predict("the movie was great")["label"] == a.predict("the movie was great")["label"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal is for machines without a CUDA GPU")
def test_quantize_without_a_gpu_is_a_clear_error(tmp_path, tiny_llama):
    import labeltune
    from labeltune import ConfigError

    with pytest.raises(ConfigError, match="needs a CUDA GPU; this machine has none"):
        labeltune.train([{"text": "great", "label": "pos"}, {"text": "bad", "label": "neg"}], model=str(tiny_llama),
                        quantize="4bit", progress=False, echo=lambda s: None)
    with pytest.raises(ConfigError, match="quantize='2bit' is not valid"):
        labeltune.RunConfig.from_dict({"model": {"quantize": "2bit"}})


def test_a_quantised_run_loads_in_full_precision_without_a_gpu(tmp_path, tiny_llama, caplog):
    from helpers import tiny_label_model

    model = tiny_label_model(tiny_llama)
    model.save_pretrained(tmp_path / "run")
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    cfg["model"]["quantize"] = "4bit"  # as a run trained on a GPU with --quantize 4bit writes it
    (tmp_path / "run" / "config.json").write_text(json.dumps(cfg))
    loaded = LabelModel.from_pretrained(tmp_path / "run")
    enc, _ = model.encode(["the movie was great"])
    torch.testing.assert_close(loaded.logits(enc)[0], model.logits(enc)[0], atol=1e-5, rtol=0)
    if not torch.cuda.is_available():
        assert "loads them in full precision" in caplog.text


def test_two_processes_predict_one_file_into_one_ordered_output(tmp_path, tiny_llama):
    from helpers import tiny_label_model

    tiny_label_model(tiny_llama).save_pretrained(tmp_path / "run")
    texts = [f"the movie was {w} {i}" for i, w in enumerate(["great", "bad", "awful", "fine", "fun"] * 3)]
    (tmp_path / "data.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or shutil.which("torchrun")
    if torchrun is None:
        pytest.skip("torchrun is not installed")
    proc = subprocess.run([torchrun, "--nproc_per_node", "2", "--master_port", str(_port()), "-m", "labeltune.cli",
                           "predict", str(tmp_path / "run"), "--data", str(tmp_path / "data.jsonl"), "--out",
                           str(tmp_path / "two.jsonl"), "--device", "cpu"], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    two = [json.loads(line) for line in (tmp_path / "two.jsonl").read_text().splitlines()]
    one = LabelModel.from_pretrained(tmp_path / "run").predict(texts)
    # all 15, in input order, the same labels; scores to float rounding: each process batches its share,
    # and some CPUs' matmul kernels round by the batch's shape (seen on one with AMX: 3e-8)
    assert [(r["text"], r["label"]) for r in two] == [(r["text"], r["label"]) for r in one]
    for a, b in zip(two, one):
        assert a["scores"].keys() == b["scores"].keys()
        assert all(abs(a["scores"][k] - b["scores"][k]) < 1e-5 for k in a["scores"]), (a, b)


FAST_CLOCK = """
import os, sys, time
import labeltune, labeltune.training
class Clock:  # rank 0's clock runs 10,000x fast: it is out of a 60 s budget after its first step
    def __getattr__(self, name):
        return getattr(time, name)
    def perf_counter(self):
        return time.perf_counter() * (10000.0 if os.environ.get("RANK", "0") == "0" else 1.0)
labeltune.training.time = Clock()
rows = [{{"text": t, "label": y}} for t, y in [("the movie was great", "pos"), ("bad acting", "neg"),
        ("loved the plot", "pos"), ("awful film", "neg")] * 8]
labeltune.train(rows, None, model={model!r}, output=sys.argv[1], progress=False, epochs=3, batch_size=4,
                time_budget_s=60, mixed_precision="no", calibration="none")
"""


def test_a_process_out_of_time_stops_every_process_at_the_same_step(tmp_path, tiny_llama):
    # each process reads its own clock; if only the one out of time stopped, the other would wait
    # for it in the next gradient all-reduce until the timeout
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or shutil.which("torchrun")
    if torchrun is None:
        pytest.skip("torchrun is not installed")
    script = tmp_path / "child.py"
    script.write_text(FAST_CLOCK.format(model=str(tiny_llama)))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([torchrun, "--nproc_per_node", "2", "--master_port", str(_port()), str(script),
                           str(tmp_path / "run")], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["steps"] == 1  # of 24 planned: both stopped after the first


def _bitsandbytes() -> bool:
    import importlib.util

    return importlib.util.find_spec("bitsandbytes") is not None


@pytest.mark.skipif(not torch.cuda.is_available() or not _bitsandbytes(),
                    reason="QLoRA runs on a CUDA GPU with bitsandbytes (this machine: the refusal test above)")
def test_qlora_trains_a_4bit_base_with_full_precision_adapters_and_head(tmp_path, tiny_llama):
    import bitsandbytes as bnb

    import labeltune

    rows = [{"text": t, "label": y} for t, y in [("the movie was great", "pos"), ("bad acting", "neg")] * 8]
    model = labeltune.train(rows, rows, model=str(tiny_llama), quantize="4bit", epochs=2, progress=False,
                            echo=lambda s: None, output=tmp_path / "run", calibration="none")
    assert any(isinstance(m, bnb.nn.Linear4bit) for m in model.base_model.modules())
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert trainable and all(p.dtype == torch.float32 for p in trainable)
    loaded = LabelModel.from_pretrained(tmp_path / "run", device="cuda")
    assert loaded.predict("the movie was great")["label"] == model.predict("the movie was great")["label"]


FAILING_PREDICT = """
import os, sys
from labeltune import LabelModel
from labeltune.inference import predict_run
real = LabelModel.predict_examples
def broken(self, examples, source="data"):  # one process fails on its share of the first chunk
    if os.environ["RANK"] == "1":
        raise RuntimeError("out of memory (simulated)")
    return real(self, examples, source)
LabelModel.predict_examples = broken
try:
    predict_run(sys.argv[1], sys.argv[2], None, sys.argv[3], device="cpu")
except Exception as e:
    # one write of one line: the two processes share the pipe, and a short write is never interleaved
    os.write(1, f"FAILED {os.environ['RANK']} {type(e).__name__} {e}\\n".encode())
    sys.exit(3)
"""


def test_a_process_failing_in_prediction_stops_all_of_them_with_the_reason(tmp_path, tiny_llama):
    from helpers import tiny_label_model

    tiny_label_model(tiny_llama).save_pretrained(tmp_path / "run")
    (tmp_path / "data.jsonl").write_text("".join(json.dumps({"text": f"great {i}"}) + "\n" for i in range(9)))
    script = tmp_path / "child.py"
    script.write_text(FAILING_PREDICT)
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or shutil.which("torchrun")
    if torchrun is None:
        pytest.skip("torchrun is not installed")
    proc = subprocess.run([torchrun, "--nproc_per_node", "2", "--master_port", str(_port()), str(script),
                           str(tmp_path / "run"), str(tmp_path / "data.jsonl"), str(tmp_path / "out.jsonl")],
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0  # both ended (no hang: the timeout above)
    assert "FAILED 1 RuntimeError out of memory (simulated)" in proc.stdout
    assert "FAILED 0 LabeltuneError prediction failed on process 1: RuntimeError: out of memory" in proc.stdout
    assert not (tmp_path / "out.jsonl").exists()
