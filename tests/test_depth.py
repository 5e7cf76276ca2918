"""``model.depth``: the head reads the K-th decoder layer (through the final norm) and the layers above are
dropped -- the stock model built with K layers computes the same states; runs save, reload and export as
K-layer models; the setting is checked."""

import pytest
import torch
from helpers import SENTIMENT_ROWS, tiny_label_model

import labeltune
from labeltune import ConfigError, LabelModel


def test_the_first_k_layers_run_as_a_stock_model_of_k_layers(tiny_llama):
    from transformers import AutoModel

    model = tiny_label_model(tiny_llama, depth=1)
    assert len(model.base_model.layers) == 1 and model.num_layers == 1 and model.config.model.depth == "1"
    stock = AutoModel.from_pretrained(tiny_llama, num_hidden_layers=1).eval()
    ids = torch.tensor([[3, 5, 7, 9, 11, 4]])
    with torch.no_grad(), model.backbone.disable_adapter():
        ours = model.backbone(input_ids=ids).last_hidden_state
    with torch.no_grad():
        torch.testing.assert_close(ours, stock(input_ids=ids).last_hidden_state)
        full = AutoModel.from_pretrained(tiny_llama).eval()(input_ids=ids).last_hidden_state
    assert (ours - full).abs().max() > 1e-3  # the second layer is really gone


def test_depth_resolves_to_a_count_and_unmasking_counts_the_kept_layers(tiny_llama):
    assert tiny_label_model(tiny_llama, depth=0.5).config.model.depth == "1"
    assert tiny_label_model(tiny_llama, depth="2").config.model.depth == "all"
    assert tiny_label_model(tiny_llama).config.model.depth == "all"  # the sequence task's default
    # the token task's default: the lower two thirds, at least one layer (of the tiny model's 2: one)
    assert tiny_label_model(tiny_llama, task="token", labels=("O", "B-PER", "I-PER")).config.model.depth == "1"
    token = tiny_label_model(tiny_llama, task="token", depth=1, labels=("O", "B-PER", "I-PER"))
    assert token.bidirectional == frozenset({0})  # the token task's unmask all: every layer that runs


def test_a_shallow_run_trains_saves_reloads_and_exports(tmp_path, tiny_llama):
    from labeltune.export import export_run

    model = labeltune.train(SENTIMENT_ROWS, model=str(tiny_llama), depth=1, epochs=1, output=tmp_path / "run",
                            progress=False, calibration="none", mixed_precision="no", echo=lambda s: None)
    texts = [r["text"] for r in SENTIMENT_ROWS[:6]]
    enc, _ = model.encode(texts)
    expected = model.logits(enc)
    loaded = LabelModel.from_pretrained(tmp_path / "run")
    assert loaded.config.model.depth == "1" and len(loaded.base_model.layers) == 1
    for a, b in zip(expected, loaded.logits(enc)):
        torch.testing.assert_close(a, b)
    export_run(tmp_path / "run", tmp_path / "merged")
    merged = LabelModel.from_pretrained(tmp_path / "merged")
    assert merged.base_model.config.num_hidden_layers == 1
    for a, b in zip(expected, merged.logits(enc)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("depth, message", [(0, "keeps no decoder layer"), (3, "use 1 to 2 or all"),
                                            ("1.5", "is not valid"), ("half", "is not valid")])
def test_depth_is_checked(tiny_llama, depth, message):
    with pytest.raises(ConfigError, match=message):
        tiny_label_model(tiny_llama, depth=depth)


def test_a_token_run_written_before_depth_existed_reloads_with_every_layer(tmp_path, tiny_llama):
    """0.11 made 0.67 the token task's default: a run saved without ``model.depth`` ran every layer, and
    must load, score and save again as such (not be cut to the new default)."""
    import json

    model = tiny_label_model(tiny_llama, task="token", labels=("O", "B-PER", "I-PER"), depth="all")
    model.save_pretrained(tmp_path / "run")
    raw = json.loads((tmp_path / "run" / "config.json").read_text())
    del raw["model"]["depth"]
    (tmp_path / "run" / "config.json").write_text(json.dumps(raw))
    loaded = LabelModel.from_pretrained(tmp_path / "run")
    assert loaded.config.model.depth == "all" and len(loaded.base_model.layers) == 2
    enc, _ = model.encode(["john smith lives in paris"])
    torch.testing.assert_close(loaded.logits(enc)[0], model.logits(enc)[0])
    loaded.save_pretrained(tmp_path / "again")
    assert json.loads((tmp_path / "again" / "config.json").read_text())["model"]["depth"] == "all"
