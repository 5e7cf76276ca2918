"""Calibration (issue 14): temperature scaling, per-label thresholds, ECE, abstention, and the same
temperature in predict, serve and both export formats."""

import json

import pytest
import torch
from helpers import tiny_label_model
from hypothesis import given, settings
from hypothesis import strategies as st

from labeltune import LabelModel
from labeltune.calibration import (Calibration, calibrate, expected_calibration_error, fit_temperature,
                                   fit_thresholds, reliability)
from labeltune.tasks import get_task

TEXTS = ["the movie was great", "bad acting", "john smith lives in new york city", "awful", "loved the plot"]


def test_fit_temperature_recovers_the_temperature_that_generated_the_labels():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(20000, 4, generator=g) * 3
    for true_t in (0.5, 2.0):
        y = torch.multinomial(torch.softmax(z / true_t, -1), 1, generator=g).squeeze(1)
        assert fit_temperature(z, y) == pytest.approx(true_t, rel=0.05)


def test_ece_matches_a_hand_computation():
    # top scores 0.95, 0.95 (bin 14: one right, one wrong) and 0.6, 0.6 (bin 9: both right)
    probs = torch.tensor([[0.95, 0.05], [0.95, 0.05], [0.4, 0.6], [0.4, 0.6]])
    y = torch.tensor([0, 1, 1, 1])
    expected = (2 * abs(0.5 - 0.95) + 2 * abs(1.0 - 0.6)) / 4
    assert expected_calibration_error(probs, y) == pytest.approx(expected)
    conf, acc, count = reliability(probs, y)
    assert count[14] == 2 and count[9] == 2 and sum(count) == 4 and acc[14] == 0.5


def test_temperature_lowers_the_ece_of_an_overconfident_model():
    g = torch.Generator().manual_seed(1)
    z = torch.randn(4000, 3, generator=g)
    y = torch.multinomial(torch.softmax(z, -1), 1, generator=g).squeeze(1)
    cal = calibrate(z * 4, y, "single_label", ["a", "b", "c"], "test")  # logits 4x too sharp
    assert cal.temperature == pytest.approx(4.0, rel=0.1)
    assert cal.ece_after < cal.ece_before / 3 and cal.nll_after < cal.nll_before


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.floats(-30, 30), min_size=3, max_size=3), min_size=1, max_size=20),
       st.floats(0.05, 20))
def test_temperature_scaling_never_changes_the_decision(rows, temperature):
    class Model:  # what SequenceTask.decisions / probabilities read
        labels = type("L", (), {"problem_type": "single_label", "names": ["a", "b", "c"]})()
        calibration = Calibration(temperature=temperature)

    Model.temperature = temperature
    task = get_task("sequence")
    logits = torch.tensor(rows, dtype=torch.float32)
    probs = task.probabilities(logits, Model)
    assert torch.equal(task.decisions(logits, Model), logits.argmax(-1))
    # the top score belongs to the decided label (ties aside: equal logits give equal scores)
    assert torch.equal(probs.gather(1, logits.argmax(-1, keepdim=True)), probs.max(-1, keepdim=True).values)


def test_fit_thresholds_picks_the_f1_best_threshold_per_label():
    # label a: positives score 0.3-0.4, negatives 0.1-0.2 -> a threshold in (0.2, 0.3]; label b: separable at 0.5
    p = torch.tensor([[0.35, 0.9], [0.3, 0.8], [0.15, 0.2], [0.1, 0.1]])
    y = [[1, 1], [1, 1], [0, 0], [0, 0]]
    t = fit_thresholds(torch.logit(p), y, ["a", "b"])
    assert 0.15 < t["a"] <= 0.3 + 1e-6 and t["b"] == 0.5


def _calibrated_run(tmp_path, tiny_llama, temperature=2.5):
    model = tiny_label_model(tiny_llama, labels=("neg", "pos", "neu"))
    with torch.no_grad():
        model.head.score.weight.normal_(std=2.0)
    model.calibration = Calibration(temperature=temperature, fitted_on="test")
    model.save_pretrained(tmp_path / "run")
    return model, tmp_path / "run"


def test_abstention_returns_null_below_the_threshold_and_keeps_the_scores(tmp_path, tiny_llama):
    model, run = _calibrated_run(tmp_path, tiny_llama)
    rows = model.predict(TEXTS)
    top = [r["score"] for r in rows]
    cut = sorted(top)[len(top) // 2]  # half above, half below
    model.abstain_below = cut
    gated = model.predict(TEXTS)
    for r, g in zip(rows, gated):
        assert g["scores"] == r["scores"] and g["score"] == r["score"]
        assert g["label"] == (r["label"] if r["score"] >= cut else None)
    assert any(g["label"] is None for g in gated) and any(g["label"] is not None for g in gated)


def test_predict_serve_and_both_exports_apply_the_same_temperature(tmp_path, tiny_llama):
    from fastapi.testclient import TestClient
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from labeltune.export import export_run
    from labeltune.serve import create_app

    model, run = _calibrated_run(tmp_path, tiny_llama, temperature=2.5)
    enc, _ = model.encode(TEXTS)
    expected = torch.softmax(torch.stack(model.logits(enc)) / 2.5, -1)
    loaded = LabelModel.from_pretrained(run)
    assert loaded.temperature == 2.5
    got = torch.tensor([[r["scores"][n] for n in ("neg", "pos", "neu")] for r in loaded.predict(TEXTS)])
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    served = TestClient(create_app(run)).post("/predict", json={"texts": TEXTS}).json()["predictions"]
    assert [r["scores"] for r in served] == [r["scores"] for r in loaded.predict(TEXTS)]
    export_run(run, tmp_path / "merged")  # labeltune layout: calibration.json travels
    merged = LabelModel.from_pretrained(tmp_path / "merged")
    assert merged.temperature == 2.5
    export_run(run, tmp_path / "hf", format="transformers")  # stock layout: T folded into the score layer
    tok = AutoTokenizer.from_pretrained(tmp_path / "hf")
    hf = AutoModelForSequenceClassification.from_pretrained(tmp_path / "hf").eval()
    with torch.no_grad():
        stock = torch.stack([torch.softmax(hf(**tok(t, return_tensors="pt")).logits[0], -1) for t in TEXTS])
    torch.testing.assert_close(stock, expected, atol=1e-5, rtol=0)


def test_training_fits_on_the_calibration_split_and_never_trains_on_it(tmp_path, tiny_llama):
    import labeltune

    rows = [{"text": t, "label": y} for t, y in [("the movie was great", "pos"), ("bad acting", "neg"),
                                                 ("loved the plot", "pos"), ("awful film", "neg")] * 5]
    model = labeltune.train(rows, rows[:8], model=str(tiny_llama), epochs=1, calibration_split=0.25,
                            output=tmp_path / "run", progress=False, echo=lambda s: None)
    m = model.metrics
    assert m["train_examples"] == 15 and "5 training examples" in m["calibration"]["fitted_on"]
    assert m["calibration"]["temperature"] == model.temperature > 0
    assert "ece" in m and "ece" in m["uncalibrated"]
    saved = json.loads((tmp_path / "run" / "calibration.json").read_text())
    assert saved["temperature"] == model.temperature
    assert (tmp_path / "run" / "plots" / "calibration.png").exists() or not _has_matplotlib()


def test_a_run_without_calibration_scores_as_before(tmp_path, tiny_llama):
    import labeltune

    rows = [{"text": "great fun", "label": "pos"}, {"text": "awful", "label": "neg"}] * 4
    model = labeltune.train(rows, model=str(tiny_llama), epochs=1, calibration="none", progress=False,
                            echo=lambda s: None)
    assert model.calibration is None and model.temperature == 1.0
    enc, _ = model.encode(["great fun"])
    assert model.predict("great fun")["scores"]["pos"] == pytest.approx(
        float(torch.softmax(model.logits(enc)[0], -1)[model.labels.names.index("pos")]), abs=1e-6)


def _has_matplotlib():
    import importlib.util

    return importlib.util.find_spec("matplotlib") is not None


def test_token_runs_refuse_a_calibration_split(tmp_path):
    from labeltune import ConfigError, RunConfig

    with pytest.raises(ConfigError, match="calibration_split applies to the sequence task"):
        RunConfig.from_dict({"model": {"task": "token"}, "train": {"calibration_split": 0.2}})
