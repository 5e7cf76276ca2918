"""FastDropout: the LoRA dropout mask drawn 16 bits per element (lora_dropout.py)."""

import math

import pytest
import torch
from torch import nn

from labeltune.lora_dropout import FastDropout, use_fast_lora_dropout


@pytest.mark.parametrize("p", [0.05, 0.1, 0.5])
def test_drop_rate_scale_and_expectation(p):
    torch.manual_seed(0)
    drop = FastDropout(p).train()
    x = torch.ones(1000, 999)  # numel not a multiple of 4: the last 64-bit draw is only partly used
    y = drop(x)
    n = x.numel()
    p_rounded = round(p * 65536) / 65536
    dropped = (y == 0).float().mean().item()
    assert abs(dropped - p_rounded) < 5 * math.sqrt(p * (1 - p) / n)  # binomial, 5 standard deviations
    kept = y[y != 0]
    assert torch.allclose(kept, torch.full_like(kept, 1 / (1 - p_rounded)))
    assert abs(y.mean().item() - 1.0) < 5 * math.sqrt(p / (1 - p) / n)  # inverted dropout keeps E[y] = x


def test_masks_are_independent_across_positions():
    # a wrong view of the 16-bit pieces would repeat or correlate neighbouring elements' decisions
    torch.manual_seed(1)
    y = FastDropout(0.5).train()(torch.ones(200_000))
    drop = (y == 0).float()
    for lag in (1, 2, 3, 4, 5):
        both = (drop[:-lag] * drop[lag:]).mean().item()
        assert abs(both - 0.25) < 0.01, lag


def test_gradient_is_the_mask_times_the_scale():
    torch.manual_seed(2)
    drop = FastDropout(0.1).train()
    x = torch.randn(3, 5, 7, requires_grad=True)
    y = drop(x)
    y.sum().backward()
    kept = y.detach() != 0
    assert torch.equal(x.grad, kept.float() * drop.scale)
    assert torch.allclose(y.detach(), x.detach() * kept * drop.scale)


def test_identity_in_eval_and_at_zero():
    x = torch.randn(4, 6)
    assert FastDropout(0.3).eval()(x) is x
    assert FastDropout(0.0).train()(x) is x


def test_seeded_and_replayable():
    drop = FastDropout(0.2).train()
    x = torch.randn(8, 16)
    torch.manual_seed(3)
    a = drop(x)
    state = torch.get_rng_state()
    b = drop(x)
    torch.set_rng_state(state)  # window_cache.py replays a slice's masks this way
    assert torch.equal(drop(x), b)
    torch.manual_seed(3)
    assert torch.equal(drop(x), a)
    assert not torch.equal(a, b)


def test_bf16_input_keeps_its_dtype():
    torch.manual_seed(4)
    y = FastDropout(0.05).train()(torch.ones(64, 64, dtype=torch.bfloat16))
    assert y.dtype == torch.bfloat16 and (y == 0).any() and (y != 0).any()


def test_label_model_uses_it_for_every_lora_dropout(tiny_llama):
    from labeltune import LabelModel, RunConfig
    from labeltune.data import LabelMap

    cfg = RunConfig.from_dict({"model": {"name": str(tiny_llama)},
                               "lora": {"target_modules": "q_proj,v_proj", "dropout": 0.05}})
    model = LabelModel.from_config(cfg, LabelMap(["neg", "pos"], "single_label_classification"))
    dropouts = [m for m in model.modules() if isinstance(m, nn.Dropout) and m.p == 0.05]
    assert dropouts and all(isinstance(m, FastDropout) for m in dropouts)
    # one per adapted layer (q_proj, v_proj in every decoder layer)
    layers = model.base_model.config.num_hidden_layers
    assert len(dropouts) == 2 * layers
    assert use_fast_lora_dropout(model) == 0  # already swapped: nothing left to do
