"""Long texts read whole in windows (issue 14, sequence task): windows cover the text, a text that fits
is scored exactly as before, and a label decided at the end of a long text is found by windows and
missed by truncation."""

import random

import pytest
import torch
from helpers import tiny_label_model

from labeltune import ConfigError
from labeltune.data.examples import Encoded

FILLER = "the a movie film was is plot actors john smith lives in paris works at acme corp london".split()


def _doc(rng, n, last):
    return " ".join(rng.choice(FILLER) for _ in range(n)) + " " + last


def test_windows_cover_the_text_and_a_short_text_is_one_window(tiny_llama):
    model = tiny_label_model(tiny_llama, long_documents="window", max_length=10, template="the {text} film")
    tok = model.tokenizer
    text = " ".join(FILLER * 2)  # 34 words, far over 10 tokens
    windows = model.template.encode_windows([text, "great fun"], 10, stride=3)
    body = tok(text, add_special_tokens=False)["input_ids"]
    head, tail = tok("the", add_special_tokens=False)["input_ids"], tok("film", add_special_tokens=False)["input_ids"]
    room = 10 - len(head) - len(tail)
    long, short = windows
    assert all(len(w) <= 10 and w[: len(head)] == head and w[-len(tail):] == tail for w in long)
    inner = [w[len(head): len(w) - len(tail)] for w in long]
    assert inner[0] == body[:room] and inner[-1] == body[-room:]  # from the first token to the last
    assert all(a[3:] == b[: room - 3] for a, b in zip(inner[:-2], inner[1:-1]))  # stride 3: overlapping
    assert short == [model.template.encode(["great fun"], None, 10)[0][0]]


def test_a_text_that_fits_scores_as_with_truncation(tiny_llama):
    model = tiny_label_model(tiny_llama)
    texts = ["the movie was great", "bad acting"]
    enc, _ = model.encode(texts)
    before = model.logits(enc)
    model.config = model.config.with_overrides({"data": {"long_documents": "window"}})
    windowed, _ = model.encode(texts)
    assert all(e.windows is None for e in windowed)
    for a, b in zip(before, model.logits(windowed)):
        assert torch.equal(a, b)


def test_windows_find_a_label_at_the_end_that_truncation_misses(tmp_path, tiny_llama):
    import labeltune

    rng = random.Random(0)
    # the label is the last word of a 40-word text; max_length 12 sees a quarter of it; one text is
    # 10x max_length long
    rows = [{"text": _doc(rng, 40 if i else 120, "great" if i % 2 else "awful"), "label": "pos" if i % 2 else "neg"}
            for i in range(40)]
    dev = [{"text": _doc(rng, 40, "great" if i % 2 else "awful"), "label": "pos" if i % 2 else "neg"}
           for i in range(20)]
    common = dict(model=str(tiny_llama), max_length=12, epochs=8, batch_size=2, lr=5e-3, seed=0, progress=False,
                  calibration="none", mixed_precision="no", echo=lambda s: None, template="none")
    windowed = labeltune.train(rows, dev, long_documents="window", window_pooling="mean", **common)
    truncated = labeltune.train(rows, dev, **common)
    # observed 1.00 and 0.55 (chance); the bounds leave room for another CPU's arithmetic
    assert windowed.metrics["accuracy"] >= 0.8, windowed.metrics["accuracy"]
    assert truncated.metrics["accuracy"] <= 0.7, truncated.metrics["accuracy"]
    assert windowed.metrics["accuracy"] - truncated.metrics["accuracy"] >= 0.2
    assert truncated.metrics["truncated_train_examples"] == 40 and windowed.metrics["truncated_train_examples"] == 0
    # the stride changes the inner windows (and how many there are), not most decisions: tolerance 8
    # texts in 20. Mean pooling weighs the final window (the one with the label) by 1 / the number of
    # windows: stride 2 reads ~15 windows of a 40-word text where training read ~6 at the default stride
    # 6, so near-ties flip. Measured at stride 2 on this tiny model (training seeds 0-2, 8 and 16
    # epochs, torch's LoRA dropout and labeltune's): 1-7 texts (8 at stride 4 once); this seed: 6
    labels = [r["label"] for r in windowed.predict([r["text"] for r in dev])]
    windowed.config = windowed.config.with_overrides({"data": {"window_stride": 2}})
    labels_2 = [r["label"] for r in windowed.predict([r["text"] for r in dev])]
    assert sum(a != b for a, b in zip(labels, labels_2)) <= 8


def test_max_over_windows_trains_and_predicts(tiny_llama):
    import labeltune

    rng = random.Random(1)
    rows = [{"text": _doc(rng, 30, "great" if i % 2 else "awful"), "label": "pos" if i % 2 else "neg"} for i in range(8)]
    model = labeltune.train(rows, model=str(tiny_llama), max_length=12, epochs=1, long_documents="window",
                            window_pooling="max", template="none", progress=False, echo=lambda s: None)
    enc, _ = model.encode([rows[0]["text"]])
    assert enc[0].windows and len(enc[0].windows) >= 5
    assert model.predict(rows[0]["text"])["label"] in ("pos", "neg")


def test_last_over_windows_scores_each_texts_last_window_alone(tiny_llama):
    model = tiny_label_model(tiny_llama, long_documents="window", max_length=12, template="none",
                             window_pooling="last")
    rng = random.Random(4)
    texts = [_doc(rng, 40, "great"), _doc(rng, 3, "fun"), _doc(rng, 25, "awful")]
    enc, _ = model.encode(texts)
    got = model.logits(enc)
    for e, logits in zip(enc, got):
        last = e.input_ids[-e.windows[-1]:] if e.windows else e.input_ids  # windows: their lengths, end to end
        # the last window scored as a text of its own (template none: a window is its tokens)
        torch.testing.assert_close(logits, model.logits([Encoded(last)])[0], rtol=1e-4, atol=1e-5)
    # the text before the last window does not enter without memory: another start, the same scores
    changed, _ = model.encode(["paris " * 20 + texts[0]])
    n = enc[0].windows[-1]
    assert len(changed[0].windows) > len(enc[0].windows) and changed[0].input_ids[-n:] == enc[0].input_ids[-n:]
    torch.testing.assert_close(model.logits(changed)[0], got[0], rtol=1e-4, atol=1e-5)


def test_window_settings_are_checked(tiny_llama):
    from labeltune import RunConfig

    with pytest.raises(ConfigError, match="pair runs truncate"):
        RunConfig.from_dict({"data": {"long_documents": "window", "text_pair_column": "h"}})
    with pytest.raises(ConfigError, match="long_documents='all'"):
        RunConfig.from_dict({"data": {"long_documents": "all"}})


def test_attention_over_windows_starts_as_the_mean_and_learns():
    from labeltune.heads import attend_windows, group_pool

    g = torch.Generator().manual_seed(0)
    states = torch.randn(7, 5, generator=g)
    text_of = torch.tensor([0, 0, 0, 1, 2, 2, 2])
    query = torch.zeros(5, requires_grad=True)
    mean = group_pool(states[None], text_of[None], 3, "mean")
    torch.testing.assert_close(attend_windows(states, text_of, 3, query), mean)
    # a query along one window's state moves the text's weight towards it, and gradients reach it
    out = attend_windows(states, text_of, 3, states[1].clone().requires_grad_())
    assert float((out[0] - states[1]).norm()) < float((mean[0] - states[1]).norm())
    attend_windows(states, text_of, 3, query).sum().backward()
    assert query.grad is not None


def test_attention_pooled_windowed_run_trains_saves_and_loads(tmp_path, tiny_llama):
    import labeltune
    from labeltune import LabelModel

    rng = random.Random(2)
    rows = [{"text": _doc(rng, 30, "great" if i % 2 else "awful"), "label": "pos" if i % 2 else "neg"} for i in range(8)]
    model = labeltune.train(rows, model=str(tiny_llama), max_length=12, epochs=2, long_documents="window",
                            window_pooling="attention", template="none", progress=False, echo=lambda s: None,
                            output=tmp_path / "run")
    assert float(model.head.window_query.abs().sum()) > 0  # trained away from the mean
    loaded = LabelModel.from_pretrained(tmp_path / "run")
    enc, _ = model.encode([r["text"] for r in rows[:3]])
    for a, b in zip(model.logits(enc), loaded.logits(enc)):
        assert torch.equal(a, b)
