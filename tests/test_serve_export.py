"""`labeltune export` (merged LoRA, self-contained run) and `labeltune serve` (HTTP) on tiny runs."""

import json
import subprocess
import sys

import pytest
import torch
from helpers import tiny_label_model

from labeltune import ConfigError, LabelModel
from labeltune.export import export_run

TEXTS = ["the movie was great", "bad acting", "john smith lives in new york city"]


@pytest.fixture
def saved_run(tmp_path, tiny_llama):
    model = tiny_label_model(tiny_llama, pooling="mean", head_bias=True)  # LoRA B is non-zero: merging must matter
    with torch.no_grad():
        model.head.score.bias.normal_()
    model.save_pretrained(tmp_path / "run")
    return model, tmp_path / "run"


def test_export_merges_lora_and_reproduces_logits(saved_run, tmp_path):
    model, run = saved_run
    check = export_run(run, tmp_path / "merged")
    out = tmp_path / "merged"
    assert (out / "backbone").is_dir() and not (out / "adapter").exists()
    assert json.loads((out / "backbone.json").read_text())["merged"] is True
    assert check["max_abs_logit_diff"] <= 1e-3 and check["same_predictions"]
    exported = LabelModel.from_pretrained(out)
    assert not hasattr(exported.backbone, "peft_config")  # a plain transformers model, no adapters
    enc, _ = model.encode(TEXTS)
    for a, b in zip(model.logits(enc), exported.logits(enc)):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=0)
    base = LabelModel.from_pretrained(run)  # without LoRA the logits differ: the merge did something
    with torch.no_grad():
        for name, p in base.named_parameters():
            if "lora_B" in name:
                p.zero_()
    assert not all(torch.allclose(a, b, atol=1e-4) for a, b in zip(base.logits(enc), exported.logits(enc)))


def test_export_refuses_to_overwrite_and_merged_runs(saved_run, tmp_path):
    _, run = saved_run
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("x")
    with pytest.raises(ConfigError, match="already exists"):
        export_run(run, tmp_path / "taken")
    assert (tmp_path / "taken" / "keep.txt").read_text() == "x"
    export_run(run, tmp_path / "merged", dtype="bfloat16")
    with pytest.raises(ConfigError, match="already an exported"):
        export_run(tmp_path / "merged", tmp_path / "again")
    with pytest.raises(ConfigError, match="--dtype"):
        export_run(run, tmp_path / "x", dtype="int4")


def test_cli_export_then_predict(saved_run, tmp_path):
    model, run = saved_run
    cli = [sys.executable, "-m", "labeltune.cli"]
    proc = subprocess.run(cli + ["export", str(run), "--output", str(tmp_path / "m")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "same predictions: True" in proc.stdout
    out = subprocess.run(cli + ["predict", str(tmp_path / "m"), "--text", TEXTS[0]], capture_output=True, text=True,
                         check=True).stdout
    assert json.loads(out.strip().splitlines()[-1])["label"] == model.predict(TEXTS[0])["label"]


def test_serve_predicts_like_the_library(saved_run):
    from fastapi.testclient import TestClient

    from labeltune.serve import create_app

    model, run = saved_run
    client = TestClient(create_app(run, max_texts=8))
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["labels"] == model.labels.names and health["task"] == "sequence"
    got = client.post("/predict", json={"texts": TEXTS}).json()["predictions"]
    expected = model.predict(TEXTS)
    assert [g["label"] for g in got] == [e["label"] for e in expected] and [g["text"] for g in got] == TEXTS
    for g, e in zip(got, expected):
        assert g["scores"] == pytest.approx(e["scores"], abs=1e-6)


def test_serve_rejects_bad_requests_with_reasons(saved_run):
    from fastapi.testclient import TestClient

    from labeltune.serve import create_app

    _, run = saved_run
    client = TestClient(create_app(run, max_texts=2))
    assert client.post("/predict", json={"texts": []}).status_code == 422
    assert client.post("/predict", json={"texts": ["a", "b", "c"]}).status_code == 422  # over max_texts
    r = client.post("/predict", json={"texts": ["fine", " "]})
    assert r.status_code == 422 and "empty" in r.json()["detail"][0]["msg"] and r.json()["detail"][0]["loc"] == [
        "body", "texts", 1]
    r = client.post("/predict", json={"texts": ["fine"], "pairs": ["other"]})
    assert r.status_code == 422 and "single texts" in r.json()["detail"][0]["msg"]


def test_serve_token_run_returns_entities(tmp_path, tiny_llama):
    from fastapi.testclient import TestClient

    from labeltune.serve import create_app

    model = tiny_label_model(tiny_llama, labels=("O", "B-PER", "I-PER"), task="token")
    with torch.no_grad():  # every word B-PER: one entity a word, whatever the random backbone says
        model.head.score.weight.zero_()
        model.head.score.bias.copy_(torch.tensor([0.0, 5.0, 0.0]))
    model.save_pretrained(tmp_path / "tok")
    client = TestClient(create_app(tmp_path / "tok"))
    row = client.post("/predict", json={"texts": ["john smith  visited paris"]}).json()["predictions"][0]
    assert row["tokens"] == ["john", "smith", "visited", "paris"] and row["tags"] == ["B-PER"] * 4
    # offsets index the original text, double space included
    assert [(e["start"], e["end"], e["text"]) for e in row["entities"]] == [
        (0, 4, "john"), (5, 10, "smith"), (12, 19, "visited"), (20, 25, "paris")]


def test_pair_runs_need_pairs_everywhere(tmp_path, tiny_llama):
    from fastapi.testclient import TestClient

    from labeltune.inference import predict_texts
    from labeltune.serve import create_app

    model = tiny_label_model(tiny_llama)
    model.config.data.text_pair_column = "hypothesis"
    model.save_pretrained(tmp_path / "pairs")
    with pytest.raises(ConfigError, match="pairs"):
        predict_texts(model, ["a premise"])
    with pytest.raises(ConfigError, match="one pair per text"):
        predict_texts(model, ["a", "b"], ["only one"])
    client = TestClient(create_app(tmp_path / "pairs"))
    r = client.post("/predict", json={"texts": ["a premise"]})  # the pair run's schema requires pairs
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "pairs"]
    r = client.post("/predict", json={"texts": ["a premise", "b"], "pairs": ["one"]})
    assert r.status_code == 422 and "one pair per text" in r.json()["detail"]
    got = client.post("/predict", json={"texts": ["a premise"], "pairs": ["a hypothesis"]}).json()["predictions"]
    assert got[0]["pair"] == "a hypothesis" and got[0]["label"] in model.labels.names


def test_failed_export_check_writes_nothing_and_a_parent_folder_is_refused(saved_run, tmp_path, monkeypatch):
    import labeltune.export as export

    _, run = saved_run
    with pytest.raises(ConfigError, match="folder that holds it"):
        export_run(run, run.parent, overwrite=True)
    assert (run / "adapter").is_dir()  # the run is untouched

    def mismatch(*args):
        raise ConfigError("the merged model does not reproduce the run's logits")

    monkeypatch.setattr(export, "_compare", mismatch)
    with pytest.raises(ConfigError, match="does not reproduce"):
        export_run(run, tmp_path / "bad")
    assert not (tmp_path / "bad").exists() and not list(tmp_path.glob(".bad.tmp-*"))


def test_runs_from_before_0_2_keep_their_max_pooling(tmp_path, tiny_llama):
    # max pooling skips the template's closing tokens since 0.2; older runs were trained reading them
    from labeltune import RunConfig
    from labeltune.data import LabelMap

    cfg = RunConfig.from_dict({"model": {"name": str(tiny_llama), "pooling": "max"},
                               "data": {"template": "the film was {text} fun"}})
    model = LabelModel.from_config(cfg, LabelMap(["a", "b"]))
    assert model.template.suffix_ids
    model.save_pretrained(tmp_path / "run")
    current = LabelModel.from_pretrained(tmp_path / "run")
    assert current.template.suffix_ids == model.template.suffix_ids and not current.max_pools_closing
    info = json.loads((tmp_path / "run" / "backbone.json").read_text())
    info["versions"]["labeltune"] = "0.1.0"
    (tmp_path / "run" / "backbone.json").write_text(json.dumps(info))
    legacy = LabelModel.from_pretrained(tmp_path / "run")
    assert legacy.max_pools_closing
    # the closing tokens enter the max again: with the same weights, other logits than today's
    enc, _ = current.encode(["great fun", "awful"])
    assert not torch.equal(torch.stack(legacy.logits(enc)), torch.stack(current.logits(enc)))


def test_template_suffix_ends_with_eos_when_appended(tiny_llama):
    from labeltune import RunConfig
    from labeltune.data import LabelMap
    from labeltune.template import encode_texts

    cfg = RunConfig.from_dict({"model": {"name": str(tiny_llama), "pooling": "max"},
                               "data": {"template": "the film was {text} fun", "append_eos": True}})
    model = LabelModel.from_config(cfg, LabelMap(["a", "b"]))
    ids, _ = encode_texts(model.tokenizer, ["great"], None, 64, True, cfg.data.template)
    assert ids[0][-len(model.template.suffix_ids):] == model.template.suffix_ids and model.template.suffix_ids[-1] == model.tokenizer.eos_token_id
