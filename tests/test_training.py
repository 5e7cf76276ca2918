"""Training: the loss falls on a tiny model; the CLI writes a complete run directory atomically."""

import json
import subprocess
import sys

import pytest
import torch

from labeltune import RunConfig
from labeltune.training import fit


def train(*args, **kwargs):  # the run's metrics, as 0.2's labeltune.train.train returned them
    return fit(*args, **kwargs).metrics


POS = ["the movie was great", "loved the actors", "great fun", "the film was good", "fun plot", "good actors"]
NEG = ["the movie was awful", "hated the plot", "boring film", "terrible actors", "the plot was bad", "awful film"]


def _write_csv(path, rows):
    path.write_text("text,label\n" + "".join(f"{t},{l}\n" for t, l in rows))
    return path


@pytest.fixture()
def sentiment_files(tmp_path):
    rows = [(t, "pos") for t in POS] + [(t, "neg") for t in NEG]
    return _write_csv(tmp_path / "train.csv", rows * 3), _write_csv(tmp_path / "dev.csv", rows)


def _config(model_dir, **train):
    return RunConfig.from_dict({"model": {"name": str(model_dir), "pooling": "mean"},
                                "lora": {"target_modules": "all-linear"},
                                "train": {"lr": 5e-3, "batch_size": 8, "epochs": 6, "warmup_ratio": 0.0, **train}})


def test_loss_decreases_and_run_dir_is_complete(tmp_path, tiny_llama, sentiment_files):
    train_file, dev_file = sentiment_files
    metrics = train(_config(tiny_llama), str(train_file), str(dev_file), tmp_path / "run", progress=False,
                    echo=lambda s: None)
    run = tmp_path / "run"
    log = [json.loads(l) for l in (run / "train_log.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in log if r["event"] == "train"]
    assert losses[-1] < losses[0] * 0.7, losses
    for name in ("config.json", "labels.json", "head.safetensors", "adapter/adapter_config.json",
                 "tokenizer/tokenizer_config.json", "backbone.json", "metrics.json",
                 "plots/learning_curves.png", "plots/confusion_matrix.png"):
        assert (run / name).exists(), name
    saved = json.loads((run / "metrics.json").read_text())
    assert saved["accuracy"] == metrics["accuracy"] and "macro_f1" in saved
    assert json.loads((run / "labels.json").read_text())["labels"] == ["neg", "pos"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".run.tmp")]


@pytest.mark.parametrize("batching", ["padded", "bucketed", "packed"])
def test_every_batching_mode_trains(tmp_path, tiny_llama, sentiment_files, batching):
    train_file, _ = sentiment_files
    # each mode learns the training set (36 sentences, 6 distinct a label) within 4 epochs
    metrics = train(_config(tiny_llama, batching=batching, epochs=4), str(train_file), str(train_file),
                    tmp_path / "run", progress=False, echo=lambda s: None)
    assert metrics["train_examples"] == 36 and metrics["n"] == 36
    if batching != "packed":  # 36 examples, 8 a batch: 5 steps an epoch (packing fills rows, not batches)
        assert metrics["steps"] == 4 * 5
    assert metrics["accuracy"] >= 0.9, metrics["history"]


def test_failed_training_leaves_no_run_directory(tmp_path, tiny_llama, sentiment_files):
    from labeltune import DataError

    train_file, _ = sentiment_files
    bad_dev = _write_csv(tmp_path / "bad.csv", [("the movie", "meh")])
    with pytest.raises(DataError, match="'meh' never appears in the training data"):
        train(_config(tiny_llama), str(train_file), str(bad_dev), tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]


def test_class_weights_balanced():
    from labeltune.data import Encoded, LabelMap
    from labeltune.tasks import get_task

    w = get_task("sequence").class_weights("balanced", [Encoded([1], t) for t in (0, 0, 0, 1)], LabelMap(["a", "b"]))
    torch.testing.assert_close(w, torch.tensor([4 / 6, 4 / 2]))


def test_cli_train_evaluate_predict_with_yaml_config(tmp_path, tiny_llama, sentiment_files):
    train_file, dev_file = sentiment_files
    (tmp_path / "cfg.yaml").write_text(f"model:\n  name: {tiny_llama}\n  pooling: max\ntrain:\n  epochs: 1\n  lr: 0.01\n")
    cli = [sys.executable, "-m", "labeltune.cli"]
    run = tmp_path / "run"
    subprocess.run(cli + ["train", "--config", str(tmp_path / "cfg.yaml"), "--train", str(train_file), "--eval",
                          str(dev_file), "--output", str(run), "--pooling", "mean", "--quiet"], check=True,
                   capture_output=True, text=True)
    saved = json.loads((run / "config.json").read_text())
    assert saved["model"]["pooling"] == "mean"  # command line beats YAML
    assert saved["train"]["lr"] == 0.01  # YAML beats defaults
    subprocess.run(cli + ["evaluate", str(run), "--data", str(dev_file), "--out", str(tmp_path / "m.json")],
                   check=True, capture_output=True)
    assert {"accuracy", "macro_f1"} <= set(json.loads((tmp_path / "m.json").read_text()))
    out = subprocess.run(cli + ["predict", str(run), "--text", "great fun", "--text", "awful film"], check=True,
                         capture_output=True, text=True).stdout
    rows = [json.loads(l) for l in out.splitlines()]
    assert [r["text"] for r in rows] == ["great fun", "awful film"]
    assert all(r["label"] in ("neg", "pos") for r in rows)


def test_demo_runs_end_to_end_on_a_tiny_model(tmp_path, tiny_llama, capsys):
    from labeltune.demo import run_demo

    metrics = run_demo(tmp_path / "demo", epochs=0.2, model=str(tiny_llama), progress=False)
    out = capsys.readouterr().out
    assert metrics["n"] == 400 and set(metrics["per_class"]) == {"bearish", "bullish", "neutral"}
    assert "macro F1" in out and "run directory" in out
    assert (tmp_path / "demo" / "plots" / "confusion_matrix.png").exists()
