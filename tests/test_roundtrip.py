"""A saved run reloads to the same logits, in this process and in a fresh one."""

import json
import subprocess
import sys

import torch
from helpers import tiny_label_model

from labeltune import LabelModel

TEXTS = ["the movie was great", "bad acting", "john smith lives in new york city"]


def test_save_load_reproduces_logits_exactly(tmp_path, tiny_llama):
    model = tiny_label_model(tiny_llama, pooling="mean", head_bias=True)
    with torch.no_grad():
        model.head.score.bias.normal_()
    model.save_pretrained(tmp_path / "run")
    loaded = LabelModel.from_pretrained(tmp_path / "run")
    enc, _ = model.encode(TEXTS)
    before, after = model.logits(enc), loaded.logits(enc)
    for a, b in zip(before, after):
        assert torch.equal(a, b)
    assert loaded.config.to_dict() == model.config.to_dict()
    assert loaded.labels.names == model.labels.names


def test_fresh_process_predicts_the_same(tmp_path, tiny_llama):
    model = tiny_label_model(tiny_llama, pooling="last")
    model.save_pretrained(tmp_path / "run")
    expected = model.predict(TEXTS)
    code = (
        "import json, sys; from labeltune import LabelModel; "
        f"m = LabelModel.from_pretrained({str(tmp_path / 'run')!r}); "
        f"print(json.dumps(m.predict({TEXTS!r})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    got = json.loads(out.strip().splitlines()[-1])
    assert [g["label"] for g in got] == [e["label"] for e in expected]
    for g, e in zip(got, expected):
        for name in e["scores"]:
            assert abs(g["scores"][name] - e["scores"][name]) < 1e-6


def test_predict_single_string_and_list_shapes(tiny_llama):
    model = tiny_label_model(tiny_llama)
    one = model.predict("the movie was great")
    many = model.predict(TEXTS)
    # the rows of `labeltune predict` and the server: the text, then label / score / scores
    assert isinstance(one, dict) and set(one) == {"text", "label", "score", "scores"}
    assert one["text"] == "the movie was great" and one["label"] == max(one["scores"], key=one["scores"].get)
    assert isinstance(many, list) and len(many) == len(TEXTS)
    assert one == many[0]


def test_inference_returns_input_order(tiny_llama):
    """Length-sorted batches must not reorder results: compare against one-at-a-time logits."""
    model = tiny_label_model(tiny_llama)
    texts = ["great", "the movie was great and the actors were fine", "bad", "the plot was boring", "fun"] * 3
    enc, _ = model.encode(texts)
    batched = model.logits(enc, max_tokens=24)  # several sorted batches
    for e, row in zip(enc, batched):
        torch.testing.assert_close(model.logits([e])[0], row, atol=1e-5, rtol=0)
