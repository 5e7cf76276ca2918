"""Per-layer unmasking through transformers' extension points: dependence on later tokens, a
hand-computed bidirectional attention, padding invariance, isolation between instances."""

import pytest
import torch
from helpers import FAMILIES, make_tiny_dir, manual_batch, tiny_label_model
from transformers import AutoModel
from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

from labeltune import ConfigError
from labeltune.attention import MaskPlan, enable_labeltune_attention, parse_unmask

SEQ = [5, 6, 7, 8, 9, 10, 11, 12]


@pytest.fixture(scope="module")
def family_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("families")
    return {f: make_tiny_dir(root, f) for f in FAMILIES}


def _layer_outputs(model, seqs, bidirectional, left=False, extra_pad=0):
    """Hidden states after every layer for a padded batch run with a MaskPlan: list of (B, T, H)."""
    b = manual_batch(seqs, pad_id=3, extra_pad=extra_pad, left=left)
    plan = MaskPlan(b["segment_ids"], b["position_ids"], frozenset(bidirectional))
    out = model(input_ids=b["input_ids"], position_ids=b["position_ids"], attention_mask=None,
                labeltune_plan=plan, output_hidden_states=True, use_cache=False)
    return out.hidden_states[1:], b


@pytest.mark.parametrize("backend", ["eager", "sdpa"])
@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.parametrize("padded", [False, True])
def test_unmasked_layer_sees_later_tokens_causal_layer_does_not(family_dirs, family, backend, padded):
    if family == "gemma2" and backend == "sdpa":
        pytest.skip("transformers has no SDPA path for Gemma2 (attention soft-capping); it loads as eager")
    model = AutoModel.from_pretrained(family_dirs[family], attn_implementation=backend).eval()
    enable_labeltune_attention(model, backend)
    changed = SEQ[:4] + [20] + SEQ[5:]  # token 4 differs (inside every sliding window of size 4 around 2)
    other = [[4, 5]] if padded else []
    with torch.no_grad():
        a, _ = _layer_outputs(model, [SEQ] + other, bidirectional={1})
        b, _ = _layer_outputs(model, [changed] + other, bidirectional={1})
    i = 2  # a position before the changed token
    torch.testing.assert_close(a[0][0, i], b[0][0, i], atol=1e-6, rtol=0)  # layer 0 causal: unchanged
    assert (a[1][0, i] - b[1][0, i]).abs().max() > 1e-4  # layer 1 bidirectional: sees the future


def _project(attn, x):
    """(B, T, H) -> q, k, v as (B, heads, T, head_dim)."""
    B, T, _ = x.shape
    hd = attn.head_dim
    q = attn.q_proj(x).view(B, T, -1, hd).transpose(1, 2)
    k = attn.k_proj(x).view(B, T, -1, hd).transpose(1, 2)
    v = attn.v_proj(x).view(B, T, -1, hd).transpose(1, 2)
    return q, k, v


def test_unmasked_attention_equals_hand_computation(tiny_llama):
    model = AutoModel.from_pretrained(tiny_llama, attn_implementation="eager").eval()
    enable_labeltune_attention(model, "eager")
    captured = {}
    attn = model.layers[0].self_attn
    attn.register_forward_hook(lambda m, args, kwargs, out: captured.update(x=kwargs["hidden_states"],
                                                                           pe=kwargs["position_embeddings"],
                                                                           out=out[0]), with_kwargs=True)
    with torch.no_grad():
        _layer_outputs(model, [SEQ], bidirectional={0, 1})
        x, (cos, sin) = captured["x"], captured["pe"]
        q, k, v = _project(attn, x)
        q, k = apply_rotary_pos_emb(q, k, cos, sin)
        rep = q.shape[1] // k.shape[1]
        k, v = k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1)
        weights = torch.softmax(q @ k.transpose(-1, -2) / attn.head_dim**0.5, dim=-1)  # no mask at all
        expected = attn.o_proj((weights @ v).transpose(1, 2).reshape(x.shape[0], x.shape[1], -1))
    torch.testing.assert_close(captured["out"], expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("backend", ["eager", "sdpa"])
@pytest.mark.parametrize("family", ["llama", "gemma2", "qwen2"])
def test_unmasked_outputs_do_not_depend_on_padding(family_dirs, family, backend):
    if family == "gemma2" and backend == "sdpa":
        pytest.skip("transformers has no SDPA path for Gemma2 (attention soft-capping); it loads as eager")
    model = AutoModel.from_pretrained(family_dirs[family], attn_implementation=backend).eval()
    enable_labeltune_attention(model, backend)
    short = [5, 6, 7]
    with torch.no_grad():
        alone, _ = _layer_outputs(model, [short], bidirectional={0, 1})
        for left in (False, True):
            for extra in (0, 4):
                out, b = _layer_outputs(model, [short, SEQ], bidirectional={0, 1}, left=left, extra_pad=extra)
                real = b["segment_ids"][0] > 0
                torch.testing.assert_close(out[-1][0, real], alone[-1][0], atol=1e-5, rtol=0)


def test_none_is_exactly_the_causal_model_and_instances_are_isolated(tiny_llama):
    stock = AutoModel.from_pretrained(tiny_llama).eval()
    causal = tiny_label_model(tiny_llama, unmask="none")
    bidir = tiny_label_model(tiny_llama, unmask="all")
    with torch.no_grad():
        for name, p in causal.named_parameters():  # LoRA off: compare against the pretrained weights
            if "lora_B" in name:
                p.zero_()
        batch = manual_batch([SEQ, [5, 6, 7]], pad_id=3)
        mask = (batch["segment_ids"] > 0).long()
        expected = stock(input_ids=batch["input_ids"], attention_mask=mask, position_ids=batch["position_ids"]).last_hidden_state
        bidir(batch)  # running the unmasked instance must not leak into the other one
        got = causal.backbone(input_ids=batch["input_ids"], attention_mask=mask,
                              position_ids=batch["position_ids"]).last_hidden_state
    assert torch.equal(got, expected)


def test_sliding_window_layers_stay_windowed_but_two_sided():
    seg = torch.ones(1, 6, dtype=torch.long)
    pos = torch.arange(6)[None]
    plan = MaskPlan(seg, pos, frozenset({0}))
    allowed = plan.mask(causal=False, window=2, dtype=torch.float32)[0, 0] == 0
    assert allowed[3].tolist() == [False, False, True, True, True, False]
    allowed_causal = plan.mask(causal=True, window=2, dtype=torch.float32)[0, 0] == 0
    assert allowed_causal[3].tolist() == [False, False, True, True, False, False]


def test_parse_unmask():
    assert parse_unmask("none", 4) == frozenset()
    assert parse_unmask("all", 4) == {0, 1, 2, 3}
    assert parse_unmask("from:2", 4) == {2, 3}
    assert parse_unmask("0,3", 4) == {0, 3}
    with pytest.raises(ConfigError, match="layers \\[7\\] do not exist; the model has layers 0..3"):
        parse_unmask("1,7", 4)
    with pytest.raises(ConfigError, match="K must be in 0..3"):
        parse_unmask("from:9", 4)


def test_unsupported_family_is_a_clear_error(tmp_path):
    from transformers import GPT2Config, GPT2Model

    model = GPT2Model(GPT2Config(n_layer=1, n_embd=16, n_head=2))
    with pytest.raises(ConfigError, match="model family 'gpt2' is not supported.*supported: llama, mistral"):
        enable_labeltune_attention(model, "sdpa")
    from transformers import LlamaConfig, LlamaModel

    llama = LlamaModel(LlamaConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32))
    with pytest.raises(ConfigError, match="attention backend 'flash_attention_2' is not supported; supported: sdpa, eager"):
        enable_labeltune_attention(llama, "flash_attention_2")


def test_cpu_autocast_computes_attention_in_fp32(family_dirs, monkeypatch):
    """Under CPU bf16 autocast SDPA would run in bf16 (3-4x slower on CPU, benchmarks/sdpa_cpu.py):
    labeltune's sdpa path hands it fp32 tensors with autocast off, and the layers still agree with an
    fp32 run to bf16 precision, bidirectional mask included."""
    import transformers.integrations.sdpa_attention as sdpa_module

    model = AutoModel.from_pretrained(family_dirs["llama"], attn_implementation="sdpa").eval()
    enable_labeltune_attention(model, "sdpa")
    real_sdpa = torch.nn.functional.scaled_dot_product_attention
    seen = []

    def spy(q, k, v, attn_mask=None, **kwargs):
        seen.append((q.dtype, k.dtype, v.dtype, None if attn_mask is None else attn_mask.dtype,
                     torch.is_autocast_enabled("cpu")))
        return real_sdpa(q, k, v, attn_mask=attn_mask, **kwargs)

    monkeypatch.setattr(sdpa_module.torch.nn.functional, "scaled_dot_product_attention", spy)
    with torch.no_grad():
        reference, _ = _layer_outputs(model, [SEQ, [5, 6, 7]], bidirectional={1})
        seen.clear()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            fast, b = _layer_outputs(model, [SEQ, [5, 6, 7]], bidirectional={1})
    assert seen and all(s == (torch.float32,) * 4 + (False,) for s in seen)
    real = b["segment_ids"] > 0
    for got, want in zip(fast, reference):
        torch.testing.assert_close(got.float()[real], want[real], atol=0.1, rtol=0.05)


@pytest.mark.parametrize("family", ["llama", "mistral", "qwen3"])
@pytest.mark.parametrize("bidirectional", [frozenset(), frozenset({0})])
def test_grouped_query_attention_inside_sdpa_equals_repeated_heads(family_dirs, family, bidirectional, monkeypatch):
    """On the CPU fp32 path labeltune hands SDPA each K/V head once (enable_gqa) where transformers
    repeats it for every query head of its group: same output, K/V never copied."""
    import torch.nn.functional as F
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    from labeltune.attention import _make_attention

    module = AutoModel.from_pretrained(family_dirs[family], attn_implementation="sdpa").eval().layers[0].self_attn
    assert module.num_key_value_groups == 2
    b = manual_batch([SEQ, [5, 6, 7]], pad_id=3)
    plan = MaskPlan(b["segment_ids"], b["position_ids"], bidirectional)
    g = torch.Generator().manual_seed(0)
    B, T = b["input_ids"].shape
    q = torch.randn(B, 4, T, module.head_dim, generator=g)
    k, v = (torch.randn(B, 2, T, module.head_dim, generator=g) for _ in range(2))
    window = getattr(module, "sliding_window", None)
    stock, _ = sdpa_attention_forward(module, q, k, v, plan.mask(not bidirectional, window, torch.float32),
                                      dropout=0.0, scaling=module.scaling)
    real_sdpa, heads = F.scaled_dot_product_attention, []

    def spy(q, k, v, **kwargs):
        heads.append((q.shape[1], k.shape[1], kwargs.get("enable_gqa", False)))
        return real_sdpa(q, k, v, **kwargs)

    monkeypatch.setattr(F, "scaled_dot_product_attention", spy)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ours, _ = _make_attention("sdpa")(module, q, k, v, None, labeltune_plan=plan, dropout=0.0,
                                          scaling=module.scaling, sliding_window=window)
    assert heads == [(4, 2, True)]
    torch.testing.assert_close(ours.float(), stock, atol=1e-6, rtol=0)
