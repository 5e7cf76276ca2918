"""Integration tier: the embedded SmolLM2-135M on real SST-2 sentences (a handful, to stay fast)."""

import random
from pathlib import Path

import pytest
from conftest import shared_data

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def sst2_run(tmp_path_factory):
    from labeltune import RunConfig
    from labeltune.training import fit

    src = shared_data("sst2", "train.tsv")
    lines = src.read_text().splitlines()
    body = lines[1:]
    random.Random(0).shuffle(body)
    root = tmp_path_factory.mktemp("sst2")
    (root / "train.tsv").write_text("\n".join([lines[0]] + body[:64]) + "\n")
    (root / "dev.tsv").write_text("\n".join([lines[0]] + body[64:96]) + "\n")
    cfg = RunConfig.from_dict({"data": {"text_column": "sentence", "max_length": 64},
                               "train": {"epochs": 1, "batch_size": 16}})
    metrics = fit(cfg, str(root / "train.tsv"), str(root / "dev.tsv"), root / "run", progress=False, echo=print).metrics
    return root / "run", metrics


def test_embedded_model_trains_and_predicts(sst2_run):
    from labeltune import LabelModel

    from sklearn.metrics import accuracy_score

    run, metrics = sst2_run
    assert metrics["train_examples"] == 64 and metrics["n"] == 32
    model = LabelModel.from_pretrained(run)
    # the accuracy training reported is the accuracy of the saved run's predictions on the dev file
    dev = [line.split("\t") for line in (run.parent / "dev.tsv").read_text().splitlines()[1:]]
    preds = model.predict([text for text, _ in dev])
    assert metrics["accuracy"] == accuracy_score([label for _, label in dev], [p["label"] for p in preds])
    assert [set(p["scores"]) for p in preds] == [{"0", "1"}] * 32
    assert all(abs(sum(p["scores"].values()) - 1) < 1e-5 for p in preds)


def test_default_model_is_converted_once_then_read_from_the_cache(monkeypatch):
    # (0.2 timed the second load against 3 s, which a loaded machine breaks; this checks the cause)
    import transformers

    from labeltune.backbone import load_backbone

    load_backbone("default")  # converts once if the cache is cold
    real = transformers.AutoModel.from_pretrained

    def no_gguf(*args, **kwargs):
        assert "gguf_file" not in kwargs, "the GGUF file was de-quantised again"
        return real(*args, **kwargs)

    monkeypatch.setattr(transformers.AutoModel, "from_pretrained", no_gguf)
    model, tok, source = load_backbone("default")
    assert (Path(source) / "config.json").exists() and Path(source).parent.name == "gguf"
    assert model.config.model_type == "llama" and model.config.num_hidden_layers == 30


def test_auto_template_is_the_models_chat_template_and_sharing_its_prefix_is_exact(sst2_run):
    import json

    import torch

    from labeltune import LabelModel

    run, _ = sst2_run
    model = LabelModel.from_pretrained(run)
    saved = json.loads((run / "config.json").read_text())["data"]["template"]
    assert saved == model.config.data.template and saved.endswith("<|im_start|>assistant\n")
    texts = ["a gorgeous , witty , seductive movie .", "the plot is a mess ."]
    encoded, _ = model.encode(texts)
    for text, enc in zip(texts, encoded):  # reference: the tokenizer's own chat template
        rendered = model.tokenizer.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True,
                                                       tokenize=False)
        assert enc.input_ids == model.tokenizer(rendered)["input_ids"]
    assert len(model.template.prefix_ids) > 10  # the system turn and "<|im_start|>user\n" run once per batch
    model.config.train.mixed_precision = "no"  # fp32: the two paths must agree to rounding
    shared = torch.stack(model.logits(encoded))
    model._shareable_prefix = lambda *a: 0  # the plain path: the prefix inside every row
    inline = torch.stack(model.logits(encoded))
    torch.testing.assert_close(shared, inline, atol=1e-4, rtol=0)


def test_quick_bench_suite_runs_every_method_end_to_end(tmp_path):
    # `labeltune bench quick` (= `make bench-quick`, ~20 s): LS, 0-shot prompting and the MiniLM encoder
    # on the same 64 SST-2 training / 100 dev sentences, table and chart written
    import json

    from conftest import SHARED_DATA

    from labeltune.bench import load_suite, run_suite

    shared_data("sst2", "train.tsv")
    suite = load_suite("quick")
    run_suite(suite, "default", SHARED_DATA, tmp_path / "quick", echo=lambda s: None)
    rows = json.loads((tmp_path / "quick" / "results.json").read_text())["rows"]
    assert sorted(r["method"] for r in rows) == sorted(m["name"] for m in suite["methods"])
    assert all(r["n_eval"] == 100 for r in rows)
    table = (tmp_path / "quick" / "RESULTS.md").read_text()
    for r in rows:  # the table reports each method's computed accuracy
        line = next(line for line in table.splitlines() if line.startswith(f"| {r['method']} |"))
        assert f"{100 * r['accuracy']:.1f}" in line
    # zero-shot prompting (deterministic, no training) is better than always answering one label
    # (macro-F1 1/3); LS and the encoder get 2 and 4 steps here and may not be (issue 10)
    prompt = next(r for r in rows if r["method"].startswith("prompt"))
    assert prompt["macro_f1"] > 0.34, prompt
    assert (tmp_path / "quick" / "results.png").stat().st_size > 10_000


def test_readme_python_section_runs(tmp_path, monkeypatch):
    # the README's Python block, as written, on the embedded model (about 20 s)
    import re

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme[readme.index("## Python"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, "README.md#python", "exec"), namespace)
    from labeltune import LabelModel

    model, tagger = namespace["model"], namespace["tagger"]
    assert isinstance(model, LabelModel) and model.labels.names == ["negative", "positive"]
    assert (tmp_path / "runs" / "reviews" / "adapter").is_dir()
    row = model.predict("a charming, funny film")
    assert set(row) == {"text", "label", "score", "scores"} and row["label"] in ("negative", "positive")
    tagged = tagger.predict("Ann Lee visited London")
    assert tagged["tokens"] == ["Ann", "Lee", "visited", "London"] and len(tagged["tags"]) == 4
