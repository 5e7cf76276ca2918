"""Windows that remember (``window_memory``, window_memory.py): each window of a long text attends to its
predecessor's keys and values. Checked against one forward over a text's windows end to end with the
mask that recurrence means; gradients a round at a time equal those of one graph; runs save and reload."""

import random

import pytest
import torch
from helpers import FILLER, filler_text, set_adapter_dropout, tiny_label_model, trainable_grads, windowed_batch

from labeltune import ConfigError
from labeltune.lora_dropout import FastDropout
from labeltune.window_memory import memory_backward, memory_states, window_rounds

def _reference_states(model, batch, text: int) -> torch.Tensor:
    """(windows, H) pooled states of one text's windows from ONE forward over its rows laid end to end:
    row r at positions r x width + i, each token seeing its own row causally and the text tokens of row
    r-1 (not its template tokens or padding) -- what the recurrence computes, written out as a mask."""
    rows = (batch["window_example"] == text).nonzero().flatten()
    ids, seg = batch["input_ids"][rows], batch["segment_ids"][rows]
    n, width = ids.shape
    local = batch["position_ids"][rows]
    example_ids = torch.where(seg > 0, torch.arange(n)[:, None], -1)
    text_tok = model.template.unpool(ids, local, example_ids, n, closing=True) >= 0  # (n, width)
    row_of = torch.arange(n).repeat_interleave(width)  # (n*width,)
    i_of = torch.arange(width).repeat(n)
    real = (seg > 0).flatten()
    same_row = (row_of[:, None] == row_of[None, :]) & (i_of[None, :] <= i_of[:, None]) & real[None, :]
    prev_row = (row_of[None, :] == row_of[:, None] - 1) & text_tok.flatten()[None, :]
    allowed = same_row | prev_row
    allowed |= torch.eye(n * width, dtype=torch.bool)  # padding queries see themselves (no empty rows)
    additive = torch.zeros(allowed.shape).masked_fill(~allowed, torch.finfo(torch.float32).min)  # eager's form
    hidden = model.backbone(input_ids=ids.reshape(1, -1), attention_mask=additive[None, None],
                            position_ids=(local + torch.arange(n)[:, None] * width).reshape(1, -1),
                            use_cache=False).last_hidden_state.reshape(n, width, -1)
    groups, count = model.task.head_groups(model, dict(example_ids=example_ids, num_examples=n), ids, local)
    return model.head.pool(hidden, groups, count)


@pytest.mark.parametrize("pooling", ["last", "mean"])
def test_each_window_reads_its_predecessors_text_as_one_forward_would(tiny_llama, pooling):
    model = tiny_label_model(tiny_llama, long_documents="window", max_length=12, template="the {text} film",
                             window_memory=True, pooling=pooling, attn_implementation="eager")
    rng = random.Random(0)
    batch = windowed_batch(model, [filler_text(rng, 40), filler_text(rng, 5), filler_text(rng, 22)], [0, 1, 2])
    per_text = torch.bincount(batch["window_example"]).tolist()
    assert per_text[0] >= 4 and per_text[1] == 1 and 2 <= per_text[2] < per_text[0]  # rounds of 3, 2, 1 texts
    assert [len(r) for r in window_rounds(batch)][:2] == [3, 2]
    with torch.no_grad():
        got = memory_states(model, batch)
        for text in range(3):
            rows = (batch["window_example"] == text).nonzero().flatten()
            torch.testing.assert_close(got[rows], _reference_states(model, batch, text), rtol=1e-4, atol=1e-5)
        # and the memory matters: windows read alone score otherwise (the first window of each text excepted)
        model.config = model.config.with_overrides({"model": {"window_memory": False}})
        alone = model.pooled_states(batch)
    first = torch.tensor([(batch["window_example"][:w] != batch["window_example"][w]).all().item()
                          for w in range(len(batch["window_example"]))])
    torch.testing.assert_close(got[first], alone[first])
    assert (got[~first] - alone[~first]).abs().max() > 1e-3


@pytest.mark.parametrize("dropout,combine", [(FastDropout, "mean"), (torch.nn.Dropout, "mean"), (FastDropout, "last")])
def test_a_round_at_a_time_gives_the_gradients_of_one_graph(tiny_llama, dropout, combine):
    """memory_backward (rounds replayed, dropout masks included) against the loss of all rounds in one
    graph (the memory detached in both: no gradient flows into a window's predecessor)."""
    model = tiny_label_model(tiny_llama, long_documents="window", max_length=10, template="none",
                             window_memory=True, window_pooling=combine).train()
    set_adapter_dropout(model, dropout)
    rng = random.Random(2)
    batch = windowed_batch(model, [filler_text(rng, 45), filler_text(rng, 20)], [1, 2])
    assert len(window_rounds(batch)) >= 4
    torch.manual_seed(5)
    whole = model(batch).loss
    model.zero_grad()
    whole.backward()
    expected = trainable_grads(model)
    model.zero_grad()
    torch.manual_seed(5)
    graphs = []  # per backbone forward: was a graph built?
    hook = model.backbone.register_forward_pre_hook(lambda m, a: graphs.append(torch.is_grad_enabled()))
    loss = memory_backward(model, batch, lambda l: l.backward())
    hook.remove()
    got = trainable_grads(model)
    rounds = len(window_rounds(batch))
    assert len(graphs) == 2 * rounds and not any(graphs[:rounds])  # (1) no graph, then (3) replays
    # last: only the rounds that hold a text's last window need a graph (here: the shorter text's, the longer's)
    assert sum(graphs[rounds:]) == (rounds if combine == "mean" else 2)
    torch.testing.assert_close(loss, whole.detach())
    assert got.keys() == expected.keys() and any("lora" in n for n in got)
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-4, atol=1e-6, msg=name)


def test_recurrent_windows_follow_one_another(tiny_llama):
    model = tiny_label_model(tiny_llama, long_documents="window", max_length=10, template="the {text} film")
    tok = model.tokenizer
    text = " ".join(FILLER * 2)
    body = tok(text, add_special_tokens=False)["input_ids"]
    head, tail = tok("the", add_special_tokens=False)["input_ids"], tok("film", add_special_tokens=False)["input_ids"]
    room = 10 - len(head) - len(tail)
    (windows,) = model.template.encode_windows([text], 10, recurrent=True)
    inner = [w[len(head): len(w) - len(tail)] for w in windows]
    assert [len(x) for x in inner[:-1]] == [room] * (len(inner) - 1) and 0 < len(inner[-1]) <= room
    assert [i for x in inner for i in x] == body  # every token once, in order: no overlap, nothing cut


def test_a_windowed_run_with_memory_trains_saves_and_reloads(tmp_path, tiny_llama):
    import labeltune
    from labeltune import LabelModel

    rng = random.Random(3)
    rows = [{"text": filler_text(rng, 30) + (" great" if i % 2 else " awful"), "label": "pos" if i % 2 else "neg"}
            for i in range(8)]
    model = labeltune.train(rows, model=str(tiny_llama), max_length=12, epochs=1, batch_size=4,
                            long_documents="window", window_memory=True, template="none", progress=False,
                            calibration="none", mixed_precision="no", echo=lambda s: None, output=tmp_path / "run")
    assert model.metrics["steps"] == 2
    loaded = LabelModel.from_pretrained(tmp_path / "run")
    assert loaded.config.model.window_memory is True
    enc, _ = loaded.encode([r["text"] for r in rows])
    assert all(e.windows and len(e.windows) >= 3 for e in enc)
    for a, b in zip(model.logits(enc), loaded.logits(enc)):
        torch.testing.assert_close(a, b)
    # a batch budget far under a text's windows changes nothing: rounds hold one window per text
    for a, b in zip(loaded.logits(enc), loaded.logits(enc, max_tokens=12)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_window_memory_settings_are_checked(tiny_llama):
    from labeltune import RunConfig

    with pytest.raises(ConfigError, match="set long_documents=window too"):
        RunConfig.from_dict({"model": {"window_memory": True}})
    with pytest.raises(ConfigError, match="sequence task only"):
        RunConfig.from_dict({"model": {"task": "token", "window_memory": True}, "data": {"long_documents": "window"}})
    with pytest.raises(ConfigError, match="gradient checkpointing"):
        RunConfig.from_dict({"model": {"window_memory": True}, "data": {"long_documents": "window"},
                             "train": {"gradient_checkpointing": True}})
    with pytest.raises(ConfigError, match="unmask none"):
        tiny_label_model(tiny_llama, long_documents="window", window_memory=True, unmask="all")
