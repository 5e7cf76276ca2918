"""Packed rows (block-diagonal attention, restarted positions) give the same loss and gradients as
one example a row, for causal and unmasked models, sequence and token tasks."""

import pytest
import torch
from helpers import tiny_label_model

from labeltune.data import Encoded
from labeltune.data.batching import collate, plan_batches

SEQS = [[5, 6, 7, 8], [9, 10], [11, 12, 13, 14, 15, 16], [17], [18, 19, 20]]


def _grads(model, batch):
    model.zero_grad()
    out = model(batch)
    out.loss.backward()
    return out.loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("task", ["sequence", "token"])
@pytest.mark.parametrize("unmask", ["none", "all", "from:1"])
@pytest.mark.parametrize("pooling", ["last", "mean"])
def test_packed_equals_unpacked(tiny_llama, task, unmask, pooling):
    if task == "token" and pooling != "last":
        pytest.skip("pooling applies to the sequence task")
    labels = ("O", "B-PER", "I-PER") if task == "token" else ("a", "b", "c")
    model = tiny_label_model(tiny_llama, labels=labels, task=task, unmask=unmask, pooling=pooling, head_dropout=0.0,
                             depth="all")  # both layers (the token default keeps 0.67: one of two)
    model.train()  # dropout is 0 in these settings, so train mode is deterministic
    if task == "token":  # every token is a word (unit); targets cycle through the tags
        enc = [Encoded(s, [k % 3 for k in range(len(s))], list(range(len(s)))) for s in SEQS]
        problem = "token"
    else:
        enc = [Encoded(s, i % 3) for i, s in enumerate(SEQS)]
        problem = "single_label"
    unpacked = collate([[i] for i in range(len(SEQS))], enc, 3, problem)
    packed = collate([[0, 1, 3], [2, 4]], enc, 3, problem)
    assert packed["segment_ids"].max() == 3 and packed["input_ids"].shape[0] == 2
    loss_a, grads_a = _grads(model, unpacked)
    loss_b, grads_b = _grads(model, packed)
    torch.testing.assert_close(loss_b, loss_a, atol=1e-5, rtol=0)
    for name in grads_a:
        torch.testing.assert_close(grads_b[name], grads_a[name], atol=1e-5, rtol=1e-4, msg=name)


def test_plans_cover_every_example_once():
    import random

    lengths = [random.Random(i).randint(1, 40) for i in range(200)]
    for mode in ("padded", "bucketed", "packed"):
        plan = plan_batches(lengths, mode, 16, 256, 64, random.Random(0))
        seen = sorted(i for batch in plan for row in batch for i in row)
        assert seen == list(range(200)), mode
        if mode == "packed":
            assert all(sum(lengths[i] for i in row) <= 64 or len(row) == 1 for b in plan for row in b)
        if mode == "bucketed":
            assert all(max(lengths[i] for r in b for i in r) * len(b) <= 256 or len(b) == 1 for b in plan)


@pytest.mark.parametrize("pooling", ["mean", "max"])
def test_packed_equals_unpacked_with_a_template(tmp_path, pooling):
    # several templated examples in one row: each skips its own template prefix (and, for max, its
    # closing tokens) exactly as in a row of its own
    from helpers import make_tiny_dir

    from labeltune import LabelModel, RunConfig
    from labeltune.data import LabelMap
    from labeltune.template import encode_texts

    cfg = RunConfig.from_dict({"model": {"name": str(make_tiny_dir(tmp_path, "llama")), "pooling": pooling,
                                         "head_dropout": 0.0},
                               "data": {"template": "the film was {text} fun"},
                               "lora": {"target_modules": "q_proj,v_proj", "dropout": 0.0},
                               "train": {"mixed_precision": "no"}})
    torch.manual_seed(0)
    model = LabelModel.from_config(cfg, LabelMap(["a", "b", "c"])).train()
    texts = ["great", "the plot was boring", "bad acting", "a fun and witty film", "awful"]
    ids, _ = encode_texts(model.tokenizer, texts, None, 64, template=cfg.data.template)
    enc = [Encoded(x, i % 3) for i, x in enumerate(ids)]
    unpacked = collate([[i] for i in range(len(ids))], enc, 3, "single_label")
    packed = collate([[0, 1, 3], [2, 4]], enc, 3, "single_label")
    loss_a, grads_a = _grads(model, unpacked)
    loss_b, grads_b = _grads(model, packed)
    torch.testing.assert_close(loss_b, loss_a, atol=1e-5, rtol=0)
    for name in grads_a:
        torch.testing.assert_close(grads_b[name], grads_a[name], atol=1e-5, rtol=1e-4, msg=name)
