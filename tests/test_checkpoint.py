"""Checkpoints and --resume (issue 13): a run killed with SIGKILL after a checkpoint and resumed ends
where an uninterrupted run ends; a failed checkpoint write keeps the previous checkpoint."""

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from helpers import SENTIMENT_ROWS

from labeltune import ConfigError, LabelModel
from labeltune.checkpoint import CheckpointError, Checkpoints, checkpoint_folder

ROWS = SENTIMENT_ROWS

# the child trains with a pause after each optimiser step (so the parent can kill it mid-run)
CHILD = """
import json, sys, time, torch
sys.path.insert(0, {tests!r})
import labeltune
pause = float(sys.argv[1])
step = torch.optim.AdamW.step
def slow_step(self, *a, **k):
    time.sleep(pause)
    return step(self, *a, **k)
torch.optim.AdamW.step = slow_step
rows = json.load(open({data!r}))
labeltune.train(rows, rows[:8], model={model!r}, output={out!r}, resume=True, progress=False, epochs=3,
                batch_size=4, checkpoint_every=2, seed=3, mixed_precision="no", calibration="none")
"""


def _train_kwargs(tiny):
    return dict(model=str(tiny), progress=False, epochs=3, batch_size=4, checkpoint_every=2, seed=3,
                mixed_precision="no", calibration="none", echo=lambda s: None)


def test_killed_run_resumes_and_ends_as_an_uninterrupted_run(tmp_path, tiny_llama):
    import labeltune

    reference = labeltune.train(ROWS, ROWS[:8], output=tmp_path / "ref", **_train_kwargs(tiny_llama))
    assert not checkpoint_folder(tmp_path / "ref").exists()  # removed once the run is written

    data = tmp_path / "rows.json"
    data.write_text(json.dumps(ROWS))
    out = tmp_path / "run"
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(tests=str(Path(__file__).parent), data=str(data), model=str(tiny_llama),
                                   out=str(out)))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    child = subprocess.Popen([sys.executable, str(script), "0.3"], env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)
    folder = checkpoint_folder(out)
    deadline = time.time() + 240
    while time.time() < deadline and child.poll() is None:
        if (folder / "step-00000008" / "progress.json").exists():  # mid-epoch 2 (24 examples, batch 4: 6 steps an epoch)
            break
        time.sleep(0.05)
    assert child.poll() is None, child.stderr.read().decode()[-2000:]
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert not out.exists()  # nothing half-written
    done = Checkpoints(folder).all()
    assert done and int(done[-1].name.split("-")[1]) >= 8
    assert len(done) <= 2  # keep_checkpoints

    resumed = subprocess.run([sys.executable, str(script), "0"], env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming from" in resumed.stdout  # labeltune.train echoes with print
    assert not folder.exists()
    loaded = LabelModel.from_pretrained(out)
    m_ref = json.loads((tmp_path / "ref" / "metrics.json").read_text())
    m_res = json.loads((out / "metrics.json").read_text())
    # tolerance: 1e-6 on losses and weights (the same operations in the same order on the CPU)
    assert m_res["steps"] == m_ref["steps"] == 18 and m_res["best_epoch"] == m_ref["best_epoch"]
    assert m_res["accuracy"] == m_ref["accuracy"]
    assert m_res["loss"] == pytest.approx(m_ref["loss"], abs=1e-6)
    ref_log = [e["loss"] for e in reference.train_log if e["event"] == "train"]
    res_log = [json.loads(line)["loss"] for line in (out / "train_log.jsonl").read_text().splitlines()
               if json.loads(line)["event"] == "train"]
    assert res_log == pytest.approx(ref_log, abs=1e-6)  # the same data order and dropout after the resume
    for name, p in reference.head.state_dict().items():
        torch.testing.assert_close(loaded.head.state_dict()[name], p, atol=1e-6, rtol=0)


def test_a_failed_checkpoint_write_keeps_the_previous_one(tmp_path, tiny_llama, monkeypatch):
    import labeltune
    import labeltune.checkpoint as ck

    calls = {"n": 0}
    real_save = torch.save

    def disk_full(obj, path, *a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, path, *a, **k)

    monkeypatch.setattr(ck.torch, "save", disk_full)
    with pytest.raises(CheckpointError) as err:
        labeltune.train(ROWS, output=tmp_path / "run", **_train_kwargs(tiny_llama))
    message = str(err.value)
    folder = checkpoint_folder(tmp_path / "run")
    assert str(folder / "step-00000004") in message and "No space left on device" in message
    assert "step-00000002" in message and "--resume" in message
    kept = Checkpoints(folder).all()
    assert [p.name for p in kept] == ["step-00000002"]
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]  # no half-written folder
    trainable, state, progress = Checkpoints.load(kept[0])
    assert progress["step"] == 2 and trainable and "optimizer" in state
    assert not (tmp_path / "run").exists()


def test_resume_refuses_a_checkpoint_of_other_settings(tmp_path, tiny_llama, monkeypatch):
    import labeltune

    # stop the first run right after its first checkpoint, as a kill would
    real = Checkpoints.save

    def save_then_die(self, *a, **k):
        real(self, *a, **k)
        raise KeyboardInterrupt

    monkeypatch.setattr(Checkpoints, "save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        labeltune.train(ROWS, output=tmp_path / "run", **_train_kwargs(tiny_llama))
    monkeypatch.setattr(Checkpoints, "save", real)
    kwargs = {**_train_kwargs(tiny_llama), "seed": 4}
    with pytest.raises(ConfigError, match=r"other config \(train\.seed: 3 -> 4\)"):
        labeltune.train(ROWS, output=tmp_path / "run", resume=True, **kwargs)
