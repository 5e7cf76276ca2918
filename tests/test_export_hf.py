"""`labeltune export --format transformers`: plain transformers loads the export and reproduces the run.

The loading code in these tests (``_stock_*``) uses transformers alone, as a user without labeltune
would, following input_format.json; fp32 logits must agree within 1e-4.
"""

import json

import pytest
import torch
from helpers import make_tiny_dir, tiny_label_model

from labeltune import ConfigError
from labeltune.export import export_run

TEXTS = ["the movie was great", "bad acting", "john smith lives in new york city", "awful", "loved the plot"]
TOL = 1e-4


def _save(model, path):
    model.save_pretrained(path)
    return path


def _stock_sequence_logits(path, texts):
    """Plain transformers: the documented recipe of the model card."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path).eval()
    fmt = json.loads((path / "input_format.json").read_text())
    out = []
    with torch.no_grad():
        for text in texts:
            enc = tok(fmt["template"].format(text=text), return_tensors="pt") if fmt["template"] else tok(
                text, return_tensors="pt")
            out.append(model(**enc).logits[0])
    return torch.stack(out), model


@pytest.mark.parametrize("problem_type", ["single_label", "multi_label"])
def test_untemplated_sequence_run_loads_in_plain_transformers_and_the_pipeline(tmp_path, tiny_llama, problem_type):
    model = tiny_label_model(tiny_llama, problem_type=problem_type)
    with torch.no_grad():
        model.head.score.weight.normal_(std=0.5)
    run = _save(model, tmp_path / "run")
    check = export_run(run, tmp_path / "hf", format="transformers")
    assert check["class"] == "LlamaForSequenceClassification" and check["max_abs_logit_diff"] <= 1e-3
    out = tmp_path / "hf"
    assert not (out / "head.safetensors").exists() and (out / "model.safetensors").exists()
    enc, _ = model.encode(TEXTS)
    ours = torch.stack(model.logits(enc))
    stock, hf = _stock_sequence_logits(out, TEXTS)
    torch.testing.assert_close(stock, ours, atol=TOL, rtol=0)
    expected_type = {"single_label": "single_label_classification", "multi_label": "multi_label_classification"}
    assert hf.config.problem_type == expected_type[problem_type]
    assert hf.config.id2label == {0: "neg", 1: "pos", 2: "neu"}
    # the pipeline pads a batch: the stock class must still pool each text's last real token
    from transformers import pipeline

    pipe = pipeline("text-classification", model=str(out), device="cpu")
    got = [r["label"] for r in pipe(TEXTS, batch_size=len(TEXTS))]
    # its top label (softmax, or sigmoid for multi-label) is the largest logit
    assert got == [model.labels.names[int(i)] for i in ours.argmax(-1)]
    card = (out / "README.md").read_text()
    assert "library_name: transformers" in card and "AutoModelForSequenceClassification" in card


def test_templated_run_with_eos_in_its_format_gets_a_pad_token_that_never_occurs(tmp_path):
    """pad == eos and a format that holds EOS (--append-eos): the stock class would pool the wrong token
    with pad_token_id = eos; the export picks another id and documents the format."""
    path = make_tiny_dir(tmp_path, "llama", pad_is_eos=True)
    model = tiny_label_model(path, template="the {text} film", append_eos=True)
    with torch.no_grad():
        model.head.score.weight.normal_(std=0.5)
    run = _save(model, tmp_path / "run")
    export_run(run, tmp_path / "hf", format="transformers")
    out = tmp_path / "hf"
    fmt = json.loads((out / "input_format.json").read_text())
    assert fmt["template"] == "the {text} film</s>"
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["pad_token_id"] not in (model.tokenizer.eos_token_id,)  # eos is part of every input
    enc, _ = model.encode(TEXTS)
    stock, _ = _stock_sequence_logits(out, TEXTS)
    torch.testing.assert_close(stock, torch.stack(model.logits(enc)), atol=TOL, rtol=0)


@pytest.mark.parametrize("alignment", ["first", "last", "mean"])
def test_causal_token_run_loads_as_token_classification(tmp_path, tiny_llama, alignment):
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    model = tiny_label_model(tiny_llama, labels=("O", "B-PER", "I-PER"), task="token", unmask="none",
                             label_alignment=alignment)
    with torch.no_grad():
        model.head.score.weight.normal_(std=0.5)
        model.head.score.bias.normal_()
    run = _save(model, tmp_path / "run")
    export_run(run, tmp_path / "hf", format="transformers")
    out = tmp_path / "hf"
    tok, hf = AutoTokenizer.from_pretrained(out), AutoModelForTokenClassification.from_pretrained(out).eval()
    fmt = json.loads((out / "input_format.json").read_text())
    enc, _ = model.encode(TEXTS)
    for text, ours in zip(TEXTS, model.logits(enc)):
        words = text.split()
        ids, spans = list(fmt["prefix_ids"]), []
        for k, w in enumerate(words):
            piece = tok((" " if k else "") + w, add_special_tokens=False)["input_ids"]
            spans.append(list(range(len(ids), len(ids) + len(piece))))
            ids += piece
        with torch.no_grad():
            logits = hf(input_ids=torch.tensor([ids + fmt["suffix_ids"]])).logits[0]
        pick = {"first": lambda s: logits[s[0]], "last": lambda s: logits[s[-1]], "mean": lambda s: logits[s].mean(0)}
        stock = torch.stack([pick[alignment](s) for s in spans])
        torch.testing.assert_close(stock, ours, atol=TOL, rtol=0)


@pytest.mark.parametrize("settings, reason", [
    ({"pooling": "mean"}, "pooling 'mean'"),
    ({"pooling": "max"}, "pooling 'max'"),
    ({"head_bias": True}, "has a bias"),
    ({"task": "token"}, "attend bidirectionally"),  # the token task's default unmasks every layer
    ({"unmask": "all"}, "attend bidirectionally"),
    ({"long_documents": "window"}, "combined before the head"),
    ({"task": "token", "unmask": "none", "long_documents": "window"}, "document's words around it"),
])
def test_runs_the_stock_classes_cannot_express_are_refused_with_the_reason(tmp_path, tiny_llama, settings, reason):
    labels = ("O", "B-PER", "I-PER") if settings.get("task") == "token" else ("neg", "pos")
    run = _save(tiny_label_model(tiny_llama, labels=labels, **settings), tmp_path / "run")
    with pytest.raises(ConfigError, match=reason) as err:
        export_run(run, tmp_path / "hf", format="transformers")
    assert "--format labeltune" in str(err.value)
    assert not (tmp_path / "hf").exists()  # nothing half-written


def test_unknown_format_is_refused(tmp_path, tiny_llama):
    run = _save(tiny_label_model(tiny_llama), tmp_path / "run")
    with pytest.raises(ConfigError, match="--format 'onnx'"):
        export_run(run, tmp_path / "hf", format="onnx")
