"""Streamed reading (``long_documents=stream``, window_memory.py): a long text is one templated sequence cut
into chunks of max_length tokens, each attending to the keys and values of all chunks before it. Checked
against ONE forward over the whole text (the same logits), the gradients a round at a time against one
graph, and a saved run against its reload and its export to the stock transformers class."""

import json
import random

import pytest
import torch
from helpers import filler_text, set_adapter_dropout, tiny_label_model, trainable_grads, windowed_batch

from labeltune import ConfigError, RunConfig
from labeltune.lora_dropout import FastDropout
from labeltune.window_memory import memory_backward, window_rounds

TEMPLATE = "the {text} film"


def _whole_text_logits(model, texts) -> torch.Tensor:
    """The reference: each text read whole in one forward (truncation at a length no text reaches)."""
    streamed = model.config
    model.config = streamed.with_overrides({"data": {"long_documents": "truncate", "max_length": 10**6}})
    try:
        enc, truncated = model.encode(texts)
        assert truncated == 0 and not any(e.windows for e in enc)
        return torch.stack(model.logits(enc))
    finally:
        model.config = streamed


def test_chunks_are_the_whole_templated_text_cut_in_order(tiny_llama):
    model = tiny_label_model(tiny_llama, long_documents="stream", max_length=12, template=TEMPLATE)
    text = filler_text(random.Random(1), 40)
    (chunks,) = model.template.encode_stream([text], 12)
    whole, _ = model.template.encode([text], None, 10**6)
    assert [i for c in chunks for i in c] == whole[0]  # every token once, in order; the template once
    assert [len(c) for c in chunks[:-1]] == [12] * (len(chunks) - 1) and 0 < len(chunks[-1]) <= 12
    enc, truncated = model.encode([text, "short one"])
    assert truncated == 0 and enc[0].windows == [len(c) for c in chunks] and enc[1].windows is None


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_a_streamed_text_scores_as_one_forward_over_all_of_it(tiny_llama, attn):
    model = tiny_label_model(tiny_llama, long_documents="stream", max_length=12, template=TEMPLATE,
                             attn_implementation=attn)
    with torch.no_grad():
        model.head.score.weight.normal_(std=0.5)
    rng = random.Random(0)
    texts = [filler_text(rng, 50), filler_text(rng, 4), filler_text(rng, 23), filler_text(rng, 9)]
    enc, _ = model.encode(texts)
    assert len(enc[0].windows) >= 5 and enc[1].windows is None  # one text in one chunk, one in many
    expected = _whole_text_logits(model, texts)
    torch.testing.assert_close(torch.stack(model.logits(enc)), expected, rtol=1e-4, atol=1e-5)
    # a batch budget under one text's chunks changes nothing: a round holds one chunk per text
    torch.testing.assert_close(torch.stack(model.logits(enc, max_tokens=12)), expected, rtol=1e-4, atol=1e-5)
    # what makes it exact: every chunk before (one chunk of memory, window_memory's, reads otherwise)
    windowed = model.config
    model.config = windowed.with_overrides({"data": {"long_documents": "window"},
                                            "model": {"window_memory": True, "window_pooling": "last"}})
    one_back = torch.stack(model.logits(model.encode(texts)[0]))
    model.config = windowed
    assert (one_back[0] - expected[0]).abs().max() > 1e-3


def test_a_streamed_run_trains_reloads_and_exports_to_the_stock_class(tmp_path, tiny_llama):
    import labeltune
    from labeltune import LabelModel
    from labeltune.export import export_run

    rng = random.Random(3)
    rows = [{"text": filler_text(rng, 30) + (" great" if i % 2 else " awful"), "label": "pos" if i % 2 else "neg"}
            for i in range(8)]
    model = labeltune.train(rows, model=str(tiny_llama), max_length=12, epochs=1, batch_size=4,
                            long_documents="stream", template=TEMPLATE, progress=False, calibration="none",
                            mixed_precision="no", echo=lambda s: None, output=tmp_path / "run")
    assert model.metrics["steps"] == 2 and model.metrics["truncated_train_examples"] == 0
    loaded = LabelModel.from_pretrained(tmp_path / "run")
    assert loaded.config.data.long_documents == "stream"
    texts = [r["text"] for r in rows]
    enc, _ = loaded.encode(texts)
    assert all(e.windows and len(e.windows) >= 3 for e in enc)
    ours = torch.stack(loaded.logits(enc))
    torch.testing.assert_close(torch.stack(model.logits(enc)), ours)
    # the stock class reads the whole text in one forward: a streamed run is what it computes
    export_run(tmp_path / "run", tmp_path / "hf", format="transformers")
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tmp_path / "hf")
    hf = AutoModelForSequenceClassification.from_pretrained(tmp_path / "hf").eval()
    fmt = json.loads((tmp_path / "hf" / "input_format.json").read_text())
    template = fmt["template"]
    assert fmt["max_length"] is None  # read whole: no truncation length to apply
    with torch.no_grad():
        stock = torch.stack([hf(**tok(template.format(text=t), return_tensors="pt")).logits[0] for t in texts])
    torch.testing.assert_close(stock, ours, atol=1e-4, rtol=0)


@pytest.mark.parametrize("settings,match", [
    ({"model": {"pooling": "mean"}}, "set pooling last"),
    ({"train": {"gradient_checkpointing": True}}, "gradient checkpointing"),
    ({"model": {"window_memory": True}}, "set long_documents=window too"),
    ({"data": {"text_pair_column": "b", "template": "{text} {pair}"}}, "pair runs truncate"),
    ({"model": {"task": "token"}}, "sequence task only"),
    ({"model": {"window_pooling": "max"}}, "apply to long_documents=window"),
    ({"data": {"window_stride": 4}}, "apply to long_documents=window"),
])
def test_stream_settings_are_checked(settings, match):
    config = {"model": {}, "data": {"long_documents": "stream"}, "train": {}}
    for section, values in settings.items():
        config[section].update(values)
    with pytest.raises(ConfigError, match=match):
        RunConfig.from_dict(config)


def test_stream_refuses_unmasked_layers(tiny_llama):
    with pytest.raises(ConfigError, match="long_documents=stream off"):
        tiny_label_model(tiny_llama, long_documents="stream", unmask="all")


def _whole_text_gradients(model, texts, labels) -> tuple[torch.Tensor, dict]:
    """The reference: loss and gradients of the batch read whole, one forward per text's whole sequence."""
    streamed = model.config
    model.config = streamed.with_overrides({"data": {"long_documents": "truncate", "max_length": 10**6}})
    try:
        batch = windowed_batch(model, texts, labels)
        assert "window_example" not in batch
        model.zero_grad()
        loss = model(batch).loss
        loss.backward()
        return loss.detach(), trainable_grads(model)
    finally:
        model.config = streamed
        model.zero_grad()


@pytest.mark.parametrize("template", ["none", TEMPLATE])
def test_streamed_training_has_the_gradients_of_one_forward_over_each_whole_text(tiny_llama, template):
    """Chunks replayed last to first, the memory's gradient flowing back into the chunk that computed it:
    the same loss and LoRA/head gradients as reading each text whole (and as one graph over the rounds)."""
    model = tiny_label_model(tiny_llama, long_documents="stream", max_length=10, template=template,
                             lora={"target_modules": "q_proj,k_proj,v_proj,o_proj"}).train()
    rng = random.Random(2)
    # texts not in order of length: round k's texts sit at other rows of round j's than 0..n-1
    texts, labels = [filler_text(rng, 3), filler_text(rng, 45), filler_text(rng, 8), filler_text(rng, 20)], [0, 1, 2, 1]
    expected_loss, expected = _whole_text_gradients(model, texts, labels)
    batch = windowed_batch(model, texts, labels)
    rounds = len(window_rounds(batch))
    assert rounds >= 5 and [len(r) for r in window_rounds(batch)][:2] == [4, 2]
    one_graph = model(batch).loss  # the rounds in one graph, memory attached
    one_graph.backward()
    in_one_graph = trainable_grads(model)
    model.zero_grad()
    graphs = []  # per backbone forward: was a graph built?
    hook = model.backbone.register_forward_pre_hook(lambda m, a: graphs.append(torch.is_grad_enabled()))
    loss = memory_backward(model, batch, lambda l: l.backward())
    hook.remove()
    got = trainable_grads(model)
    assert graphs == [False] * rounds + [True] * rounds  # (1) no graph; (3) every round, last to first
    torch.testing.assert_close(loss, expected_loss)
    torch.testing.assert_close(one_graph.detach(), expected_loss)
    assert got.keys() == expected.keys() and sum("lora" in n for n in got) >= 8
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-4, atol=1e-6, msg=name)
        torch.testing.assert_close(in_one_graph[name], expected[name], rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize("dropout", [FastDropout, torch.nn.Dropout])
def test_streamed_training_replays_each_chunks_dropout_masks(tiny_llama, dropout):
    """With dropout in the adapters, the rounds replayed last to first use the masks their first forward
    drew: the gradients of the rounds in one graph from the same seed."""
    model = tiny_label_model(tiny_llama, long_documents="stream", max_length=10, template="none").train()
    set_adapter_dropout(model, dropout)
    rng = random.Random(4)
    batch = windowed_batch(model, [filler_text(rng, 40), filler_text(rng, 25)], [1, 0])
    torch.manual_seed(5)
    whole = model(batch).loss
    whole.backward()
    expected = trainable_grads(model)
    model.zero_grad()
    torch.manual_seed(5)
    loss = memory_backward(model, batch, lambda l: l.backward())
    got = trainable_grads(model)
    torch.testing.assert_close(loss, whole.detach())
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-4, atol=1e-6, msg=name)


def test_a_text_past_the_models_positions_is_warned_about(tiny_llama, caplog):
    model = tiny_label_model(tiny_llama, long_documents="stream", max_length=12, template="none")
    limit = model.base_model.config.max_position_embeddings
    with caplog.at_level("WARNING", logger="labeltune.tasks.sequence"):
        model.encode([filler_text(random.Random(5), 20)])
        assert not caplog.records
        model.encode(["word " * (limit + 10)])
    assert f"past the {limit} positions" in caplog.text
