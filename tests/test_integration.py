"""Integration tier: the embedded SmolLM2-135M on real SST-2 sentences (a handful, to stay fast)."""

import random

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

    run, metrics = sst2_run
    assert metrics["train_examples"] == 64 and metrics["n"] == 32
    assert 0.0 <= metrics["accuracy"] <= 1.0
    model = LabelModel.from_pretrained(run)
    preds = model.predict(["a gorgeous , witty , seductive movie .", "the plot is a mess and the acting is worse ."])
    assert [set(p["scores"]) for p in preds] == [{"0", "1"}] * 2
    assert all(abs(sum(p["scores"].values()) - 1) < 1e-5 for p in preds)


def test_default_model_loads_from_cache_quickly():
    import time

    from labeltune.backbone import load_backbone

    load_backbone("default")  # converts once if the cache is cold
    t0 = time.perf_counter()
    model, tok, source = load_backbone("default")
    assert time.perf_counter() - t0 < 3.0
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
    assert all(r["n_eval"] == 100 and 0.0 <= r["accuracy"] <= 1.0 for r in rows)
    table = (tmp_path / "quick" / "RESULTS.md").read_text()
    assert all(m["name"] in table for m in suite["methods"])
    assert (tmp_path / "quick" / "results.png").stat().st_size > 10_000
