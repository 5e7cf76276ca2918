"""FastDropout (lora_dropout.py): the law of nn.Dropout's masks, drawn from fewer random words."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from labeltune.lora_dropout import FastDropout, dropout_multiplier, use_fast_lora_dropout


@pytest.mark.parametrize("p", [0.05, 0.1, 0.5])
def test_the_multiplier_drops_at_rate_p_and_keeps_the_expectation(p):
    torch.manual_seed(0)
    n = 1_000_003  # not a multiple of the four numbers one draw gives
    m = dropout_multiplier((n,), p)
    dropped = (m == 0).double().mean().item()
    # the drop rate is p quantised to 1/32768; 5 binomial standard deviations around it
    assert abs(dropped - p) < 5 * math.sqrt(p * (1 - p) / n) + 2**-16
    kept = m[m != 0]
    assert torch.allclose(kept, torch.full_like(kept, kept[0].item()))
    assert kept[0].item() == pytest.approx(1 / (1 - p), abs=1e-4)
    assert m.double().mean().item() == pytest.approx(1.0, abs=5 * math.sqrt(p / (1 - p) / n))


def test_neighbouring_elements_are_dropped_independently():
    # the four 15-bit numbers of one 64-bit draw: a drop in one must not make a drop next to it likelier
    torch.manual_seed(1)
    p, n = 0.2, 400_000
    dropped = dropout_multiplier((n,), p) == 0
    for lag in (1, 2, 3, 4):
        both = (dropped[:-lag] & dropped[lag:]).double().mean().item()
        assert both == pytest.approx(p * p, abs=5 * math.sqrt(p * p / n))


def test_the_masks_follow_the_global_seed_and_replay_from_its_state():
    torch.manual_seed(7)
    a = dropout_multiplier((5, 9, 13), 0.3)
    state = torch.get_rng_state()
    b = dropout_multiplier((5, 9, 13), 0.3)
    torch.set_rng_state(state)
    assert torch.equal(dropout_multiplier((5, 9, 13), 0.3), b)
    assert not torch.equal(a, b)
    torch.manual_seed(7)
    assert torch.equal(dropout_multiplier((5, 9, 13), 0.3), a)


def test_fast_dropout_multiplies_by_the_mask_and_its_gradient_is_the_mask():
    layer = FastDropout(0.25).train()
    x = torch.randn(6, 40, requires_grad=True)
    torch.manual_seed(3)
    y = layer(x)
    torch.manual_seed(3)
    mask = dropout_multiplier(x.shape, 0.25)
    assert torch.equal(y, x * mask)
    y.sum().backward()
    assert torch.equal(x.grad, mask)
    assert layer.eval()(x) is x  # eval mode: the identity, as nn.Dropout
    assert FastDropout(0.25).train()(x.bfloat16()).dtype == torch.bfloat16


def test_every_lora_adapter_of_a_label_model_gets_the_fast_dropout(tiny_llama):
    from labeltune import LabelModel, RunConfig
    from labeltune.data import LabelMap

    cfg = RunConfig.from_dict({"model": {"name": str(tiny_llama)},
                               "lora": {"target_modules": "all-linear", "dropout": 0.1}})
    model = LabelModel.from_config(cfg, LabelMap(["a", "b"]))
    dropouts = [d for m in model.modules() if isinstance(getattr(m, "lora_dropout", None), nn.ModuleDict)
                for d in m.lora_dropout.values()]
    assert len(dropouts) == 2 * 7  # two layers, q k v o gate up down
    assert all(type(d) is FastDropout and d.p == 0.1 for d in dropouts)
    assert use_fast_lora_dropout(model) == 0  # nothing left to replace


def test_lora_dropout_zero_stays_the_identity(tiny_llama):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModel

    model = get_peft_model(AutoModel.from_pretrained(tiny_llama), LoraConfig(r=2, target_modules=["q_proj"],
                                                                               lora_dropout=0.0))
    assert use_fast_lora_dropout(model) == 0
