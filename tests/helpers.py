"""Tiny random decoders and a word-level tokenizer built locally (no hub access)."""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import AutoConfig, PreTrainedTokenizerFast

WORDS = ("the a movie film was is great good bad awful terrible fine boring fun loved hated plot actors "
         "john smith lives in paris works at acme corp london new york visited google city").split()

# a small two-label sentiment set, 24 rows (checkpoint and weight-average runs on the tiny model)
SENTIMENT_ROWS = [{"text": t, "label": y} for t, y in [("the movie was great", "pos"), ("bad acting", "neg"),
                                                       ("loved the plot", "pos"), ("awful film", "neg"),
                                                       ("great fun", "pos"), ("boring plot", "neg")] * 4]

TINY = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=256, vocab_size=len(WORDS) + 4)

FAMILIES = {
    "llama": {},
    "mistral": {"sliding_window": 4},
    "qwen2": {"use_sliding_window": True, "sliding_window": 4, "max_window_layers": 1,
              "layer_types": ["full_attention", "sliding_attention"]},
    "qwen3": {"head_dim": 8},
    "gemma2": {"head_dim": 8, "sliding_window": 4, "query_pre_attn_scalar": 8},
    "gemma3_text": {"head_dim": 8, "sliding_window": 4, "query_pre_attn_scalar": 8,
                    "layer_types": ["sliding_attention", "full_attention"]},
    "phi3": {},
}


def make_tokenizer(pad_is_eos: bool = False) -> PreTrainedTokenizerFast:
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, "<pad>": 3}
    vocab.update({w: i + 4 for i, w in enumerate(WORDS)})
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                                   pad_token="</s>" if pad_is_eos else "<pad>")


def make_tiny_dir(root: Path, family: str = "llama", head: str | None = None, pad_is_eos: bool = False,
                  seed: int = 0, **config) -> Path:
    """Save a tiny random ``family`` model (optionally with a stock head class: seq, tok, or lm for the
    causal LM head) and tokenizer to ``root``."""
    from transformers import (AutoModel, AutoModelForCausalLM, AutoModelForSequenceClassification,
                              AutoModelForTokenClassification)

    tok = make_tokenizer(pad_is_eos)
    cfg = AutoConfig.for_model(family, **TINY, **FAMILIES[family], pad_token_id=tok.pad_token_id,
                               bos_token_id=1, eos_token_id=2, num_labels=3, **config)
    torch.manual_seed(seed)
    cls = {"seq": AutoModelForSequenceClassification, "tok": AutoModelForTokenClassification,
           "lm": AutoModelForCausalLM}.get(head, AutoModel)
    model = cls.from_config(cfg)
    path = root / f"tiny-{family}-{head or 'base'}-{int(pad_is_eos)}{''.join(f'-{k}{v}' for k, v in config.items())}"
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def manual_batch(seqs: list[list[int]], pad_id: int, extra_pad: int = 0, left: bool = False) -> dict:
    """One example a row, padded on the chosen side with ``extra_pad`` more pads than needed."""
    width = max(map(len, seqs)) + extra_pad
    B = len(seqs)
    input_ids = torch.full((B, width), pad_id)
    segment_ids = torch.zeros((B, width), dtype=torch.long)
    position_ids = torch.zeros((B, width), dtype=torch.long)
    example_ids = torch.full((B, width), -1)
    for b, s in enumerate(seqs):
        start = width - len(s) if left else 0
        sl = slice(start, start + len(s))
        input_ids[b, sl] = torch.tensor(s)
        segment_ids[b, sl] = 1
        position_ids[b, sl] = torch.arange(len(s))
        example_ids[b, sl] = b
    return dict(input_ids=input_ids, segment_ids=segment_ids, position_ids=position_ids, example_ids=example_ids,
                num_examples=B)


DATA_SETTINGS = ("template", "append_eos", "max_length", "text_pair_column", "long_documents", "window_stride")


def tiny_label_model(model_dir, labels=("neg", "pos", "neu"), lora: dict | None = None, **settings):
    """A LabelModel on ``model_dir``; ``settings`` are model settings, or data settings (DATA_SETTINGS);
    ``lora`` overrides the LoRA settings (q/v adapters without dropout)."""
    from labeltune import LabelModel, RunConfig
    from labeltune.data import LabelMap

    data = {k: settings.pop(k) for k in DATA_SETTINGS if k in settings}
    model_settings = settings
    cfg = RunConfig.from_dict({"model": {"name": str(model_dir), **model_settings}, "data": data,
                               "lora": {"target_modules": "q_proj,v_proj", "dropout": 0.0, **(lora or {})},
                           "train": {"mixed_precision": "no"}})  # fp32: comparisons are exact
    torch.manual_seed(0)
    model = LabelModel.from_config(cfg, LabelMap(list(labels), cfg.model.problem_type if cfg.model.task == "sequence"
                                                  else "single_label"))
    # LoRA B starts at zero; give it values so adapters matter in every comparison
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.05)
    return model.eval()


# ---- long texts read in windows (test_window_cache.py, test_window_memory.py) --------------------------------
FILLER = "the a movie film was is plot actors john smith lives in paris works at acme corp london".split()


def filler_text(rng, n: int) -> str:
    """``n`` random words of FILLER (``rng``: a random.Random)."""
    return " ".join(rng.choice(FILLER) for _ in range(n))


def windowed_batch(model, texts, labels) -> dict:
    """One collated training batch of ``texts`` (with class ids ``labels``), encoded as ``model`` reads them."""
    from labeltune.data.batching import collate

    enc, _ = model.encode(texts)
    for e, y in zip(enc, labels):
        e.target = y
    return collate([[i] for i in range(len(enc))], enc, model.tokenizer.pad_token_id, "single_label")


def trainable_grads(model) -> dict:
    """The gradients the trainable parameters hold, by name (copies)."""
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad and p.grad is not None}


def set_adapter_dropout(model, dropout, p: float = 0.3) -> int:
    """Every LoRA adapter's dropout replaced by ``dropout(p)`` (a class: FastDropout, nn.Dropout);
    ``tiny_label_model`` builds them off. Returns how many adapted layers there are."""
    layers = [m for m in model.modules() if isinstance(getattr(m, "lora_dropout", None), torch.nn.ModuleDict)]
    for m in layers:
        for name in list(m.lora_dropout):
            m.lora_dropout[name] = dropout(p)
    return len(layers)
