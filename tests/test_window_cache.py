"""A long text whose windows exceed the token budget runs a slice of windows at a time (window_cache.py):
the same logits and the same gradients as one forward over every window, with no forward past the
budget, in training and in prediction."""

import random

import pytest
import torch
from helpers import filler_text, set_adapter_dropout, tiny_label_model, trainable_grads, windowed_batch

from labeltune.lora_dropout import FastDropout
from labeltune.window_cache import over_budget, sliced_backward, window_slices

@pytest.mark.parametrize("pooling", ["mean", "max", "attention", "last"])
def test_sliced_backward_gives_the_gradients_of_one_forward_over_every_window(tiny_llama, pooling):
    model = tiny_label_model(tiny_llama, long_documents="window", max_length=10, template="none",
                             window_pooling=pooling).train()
    if pooling == "attention":  # away from zero, so the attention weights are not uniform
        torch.nn.init.normal_(model.head.window_query, std=0.5)
    rng = random.Random(0)
    batch = windowed_batch(model, [filler_text(rng, 60), filler_text(rng, 25)], [1, 0])
    rows, width = batch["input_ids"].shape
    assert rows >= 8 and over_budget(batch, 3 * width)
    model.zero_grad()
    whole = model(batch).loss
    whole.backward()
    expected = trainable_grads(model)
    model.zero_grad()
    loss = sliced_backward(model, batch, 3 * width, lambda l: l.backward())
    got = trainable_grads(model)
    assert len(window_slices(batch, 3 * width)) == -(-rows // 3)
    torch.testing.assert_close(loss, whole.detach())
    assert got.keys() == expected.keys() and any("lora" in n for n in got)
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize("dropout", [FastDropout, torch.nn.Dropout])
def test_sliced_backward_replays_each_slices_dropout_masks(tiny_llama, dropout):
    """With dropout on, the second forward of each slice must draw the masks of the first, else its
    gradient belongs to another forward than the states the head saw (labeltune's own LoRA dropout on
    a CPU, and torch's)."""
    model = tiny_label_model(tiny_llama, long_documents="window", max_length=10, template="none").train()
    assert set_adapter_dropout(model, dropout)  # LoRA dropout 0.3 inside every slice's forward
    rng = random.Random(1)
    batch = windowed_batch(model, [filler_text(rng, 50)], [2])
    width = batch["input_ids"].shape[1]
    torch.manual_seed(7)  # reference: the same slices in the same RNG order, one graph kept whole
    states = torch.cat([model.pooled_states(part) for part in window_slices(batch, 2 * width)])
    ref = torch.nn.functional.cross_entropy(model.score_states(states, batch), batch["labels"])
    model.zero_grad()
    ref.backward()
    expected = trainable_grads(model)
    model.zero_grad()
    torch.manual_seed(7)
    loss = sliced_backward(model, batch, 2 * width, lambda l: l.backward())
    torch.testing.assert_close(loss, ref.detach())
    for name, g in trainable_grads(model).items():
        torch.testing.assert_close(g, expected[name], rtol=1e-4, atol=1e-6, msg=name)


def test_logits_of_a_text_past_the_budget_equal_the_whole_forward(tiny_llama):
    model = tiny_label_model(tiny_llama, long_documents="window", max_length=10, template="none")
    rng = random.Random(2)
    enc, _ = model.encode([filler_text(rng, 80), filler_text(rng, 5), filler_text(rng, 30)])
    whole = model.logits(enc, max_tokens=10_000)
    seen = []
    hook = model.backbone.register_forward_pre_hook(lambda m, a, kw: seen.append(kw["input_ids"].numel()),
                                                    with_kwargs=True)
    sliced = model.logits(enc, max_tokens=20)
    hook.remove()
    assert max(seen) <= 20 and len(seen) > len(enc)
    for a, b in zip(whole, sliced):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_a_document_of_10x_the_budget_trains_and_predicts_without_a_forward_past_the_budget(tiny_llama, monkeypatch):
    """Training (budget batch_size x max_length) and prediction (eval_batch_tokens) of texts up to
    ~10x the training budget never run a forward over more padded tokens than the budget."""
    import labeltune
    from labeltune.modeling import LabelModel

    seen = []
    pooled = LabelModel.pooled_states
    monkeypatch.setattr(LabelModel, "pooled_states",
                        lambda self, batch: seen.append(batch["input_ids"].numel()) or pooled(self, batch))
    rng = random.Random(3)
    rows = [{"text": filler_text(rng, 200 if i == 0 else 20) + (" great" if i % 2 else " awful"),
             "label": "pos" if i % 2 else "neg"} for i in range(6)]
    model = labeltune.train(rows, model=str(tiny_llama), max_length=12, batch_size=2, epochs=1, long_documents="window",
                            template="none", progress=False, calibration="none", mixed_precision="no",
                            echo=lambda s: None)
    enc, _ = model.encode([rows[0]["text"]])
    assert len(enc[0]) > 10 * 24  # the long text alone is over 10x the training budget (2 x 12 tokens)
    assert seen and max(seen) <= 24
    seen.clear()
    model.config = model.config.with_overrides({"train": {"eval_batch_tokens": 36}})
    assert model.predict(rows[0]["text"])["label"] in ("pos", "neg")
    assert seen and max(seen) <= 36


def test_a_training_batch_holds_batch_size_windowed_texts_within_the_budget(tiny_llama, monkeypatch):
    """The planner counts a windowed text by its widest window, so a step trains batch_size texts
    (as the recipe line says), not one text that fills the budget; forwards stay within the budget."""
    import labeltune
    from labeltune.modeling import LabelModel

    seen = []
    pooled = LabelModel.pooled_states
    monkeypatch.setattr(LabelModel, "pooled_states",
                        lambda self, batch: seen.append(batch["input_ids"].numel()) or pooled(self, batch))
    rng = random.Random(4)
    rows = [{"text": filler_text(rng, 40) + (" great" if i % 2 else " awful"), "label": "pos" if i % 2 else "neg"}
            for i in range(6)]
    model = labeltune.train(rows, model=str(tiny_llama), max_length=12, batch_size=2, epochs=1, long_documents="window",
                            template="none", progress=False, calibration="none", mixed_precision="no",
                            echo=lambda s: None)
    enc, _ = model.encode([r["text"] for r in rows])
    assert all(len(e.windows) >= 3 and len(e) > 24 for e in enc)  # each text alone past the 24-token budget
    assert model.metrics["steps"] == 3  # 6 texts, 2 a step (planned by their whole length: 6 steps)
    assert seen and max(seen) <= 24
