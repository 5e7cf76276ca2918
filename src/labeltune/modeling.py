"""LabelModel = decoder backbone (+ LoRA via PEFT, + per-layer unmasking) + label head.

Saved as a run directory (see ``save_pretrained``), the contract between train, evaluate, predict,
serve and export.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
from packaging.version import Version
from safetensors.torch import load_file, save_file
from torch import nn

from . import attention
from .backbone import cache_kwarg, load_backbone, load_tokenizer, output_cache
from .config import RunConfig
from .data.batching import Encoded, collate, encode_texts, inference_batches, resolve_template
from .data.labels import LabelMap
from .errors import ConfigError
from .heads import SequenceHead, TokenHead, label_loss
from .precision import autocast_for

__all__ = ["LabelModel", "LabelOutput"]

RUN_FILES = ("config.json", "labels.json", "head.safetensors", "tokenizer", "backbone.json")
# plus adapter/ (LoRA on the referenced backbone) or, in an exported run, backbone/ (weights merged)


@dataclass
class LabelOutput:
    logits: torch.Tensor  # (E, L) sequence task, (U, L) token task
    loss: torch.Tensor | None = None


def _apply_lora(backbone, lora) -> nn.Module:
    from peft import LoraConfig, get_peft_model

    targets = lora.modules()
    if targets != "all-linear":
        names = {n.rsplit(".", 1)[-1] for n, m in backbone.named_modules() if isinstance(m, nn.Linear)}
        if "qkv_proj" in names and any(t in ("q_proj", "k_proj", "v_proj") for t in targets):
            # fused attention projection (Phi-3): adapt the fused matrix instead
            targets = ["qkv_proj"] + [t for t in targets if t not in ("q_proj", "k_proj", "v_proj")]
        missing = [t for t in targets if t not in names]
        if missing:
            raise ConfigError(f"LoRA target modules {missing} do not exist in this model; its linear layers are "
                              f"{', '.join(sorted(names))} (or use all-linear)")
    cfg = LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=targets, bias="none")
    return get_peft_model(backbone, cfg)


class LabelModel(nn.Module):
    def __init__(self, backbone: nn.Module, tokenizer, config: RunConfig, labels: LabelMap, source: str):
        super().__init__()
        self.backbone, self.tokenizer, self.config, self.labels, self.source = backbone, tokenizer, config, labels, source
        m = config.model
        base_config = self._base().config
        self.num_layers = base_config.num_hidden_layers
        self.bidirectional = attention.parse_unmask(m.unmask, self.num_layers)
        self.can_plan = base_config.model_type in attention.SUPPORTED_FAMILIES
        # the backend actually loaded (a family without SDPA falls back to its own eager attention)
        backend = base_config._attn_implementation.removeprefix("labeltune_")
        if self.bidirectional or config.train.batching == "packed":
            attention.check_supported(base_config, backend)
        if self.can_plan:  # stock behaviour until a forward carries a MaskPlan
            attention.enable_labeltune_attention(self._base(), backend)
        hidden = base_config.hidden_size
        n = len(labels) if labels.problem_type != "regression" else 1
        self.head = (TokenHead(hidden, n, m.head_dropout) if m.task == "token"
                     else SequenceHead(hidden, n, m.pooling, m.head_dropout))
        self.class_weights: torch.Tensor | None = None
        self.prefix_ids = self._template_prefix(tokenizer, config)
        self.suffix_ids = self._template_suffix(tokenizer, config)

    @staticmethod
    def _template_prefix(tokenizer, config: RunConfig) -> list[int]:
        """Token ids of the template's part before {text} (sequence task, at least two tokens): the
        same for every example, so it is context, never pooled, and computed once per batch."""
        t = config.data.template
        if not t or config.model.task != "sequence":
            return []
        head = t[: t.index("{text}")]
        if "{pair}" in head:
            return []
        ids = tokenizer(head.format(), return_attention_mask=False)["input_ids"]  # format(): {{ }} -> braces
        return ids if len(ids) >= 2 else []

    @staticmethod
    def _template_suffix(tokenizer, config: RunConfig) -> list[int]:
        """Token ids of the template's part after {text} (sequence task): its closing tokens, which
        max pooling skips (the chat markers' outlier activations would win every max)."""
        t = config.data.template
        if not t or config.model.task != "sequence":
            return []
        field = "{pair}" if "{pair}" in t and t.index("{pair}") > t.index("{text}") else "{text}"
        tail = t[t.index(field) + len(field):]  # after the last field: fixed text only
        ids = tokenizer(tail.format(), add_special_tokens=False, return_attention_mask=False)["input_ids"]
        if config.data.append_eos and tokenizer.eos_token_id is not None:
            ids = ids + [tokenizer.eos_token_id]  # encode_texts ends every example with it
        return ids

    # ---- construction -------------------------------------------------------------------------
    @classmethod
    def from_config(cls, config: RunConfig, labels: LabelMap, dtype: torch.dtype | None = None) -> "LabelModel":
        """A fresh model: pretrained backbone, new LoRA adapters, new head."""
        backbone, tokenizer, source = load_backbone(config.model.name, config.model.attn_implementation, dtype)
        backbone.config.use_cache = False
        # the run directory records the concrete template, so inference never re-derives it
        template = resolve_template(config.data.template, tokenizer, config.model.task, bool(config.data.text_pair_column))
        config = config.with_overrides({"data": {"template": template or "none"}})
        model = cls(_apply_lora(backbone, config.lora), tokenizer, config, labels, source)
        return model

    def _base(self) -> nn.Module:
        """The transformers model underneath PEFT's wrappers."""
        b = self.backbone
        return b.get_base_model() if hasattr(b, "get_base_model") else b

    @property
    def device(self) -> torch.device:
        return self.head.score.weight.device

    # ---- forward ------------------------------------------------------------------------------
    def forward(self, batch: dict[str, Any]) -> LabelOutput:
        dev = self.device
        seg = batch["segment_ids"].to(dev)
        packed = bool((seg > 1).any())
        kwargs: dict[str, Any] = {}
        if self.bidirectional or packed:
            if not self.can_plan:
                raise ConfigError("packing/unmasking needs a supported family: " + ", ".join(attention.SUPPORTED_FAMILIES))
            kwargs["labeltune_plan"] = attention.MaskPlan(seg, batch["position_ids"].to(dev), self.bidirectional)
            mask = None
        else:
            mask = (seg > 0).long()
        ids, pos, example_ids = batch["input_ids"].to(dev), batch["position_ids"].to(dev), batch["example_ids"].to(dev)
        pooling = self.config.model.pooling
        if self.config.model.task == "sequence" and pooling in ("mean", "max") and (self.prefix_ids or self.suffix_ids):
            example_ids = self._unpool_template(ids, pos, example_ids, batch["num_examples"], closing=pooling == "max")
        P = self._shareable_prefix(ids, seg, packed)
        if P:
            hidden = self._hidden_after_shared_prefix(ids, seg, pos, P)
            example_ids = example_ids[:, P:]
        else:
            hidden = self.backbone(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=False,
                                   **kwargs).last_hidden_state
        if self.config.model.task == "token":
            logits = self.head(hidden, batch["unit_ids"].to(dev), batch["num_units"])
        else:
            logits = self.head(hidden, example_ids, batch["num_examples"])
        loss = None
        if "labels" in batch:
            loss = label_loss(logits, batch["labels"].to(dev), self.labels.problem_type, self.class_weights)
        return LabelOutput(logits, loss)

    def _shareable_prefix(self, ids: torch.Tensor, seg: torch.Tensor, packed: bool) -> int:
        """P > 0 when every row (one example each, causal) starts with the template's P prefix tokens
        and has a token after them; else 0 (the plain path, always correct)."""
        P = len(self.prefix_ids)
        if (not P or packed or self.bidirectional or ids.shape[1] <= P
                or (self.training and any(getattr(m, "gradient_checkpointing", False) for m in self._base().modules()))):
            return 0
        prefix = torch.tensor(self.prefix_ids, device=ids.device)
        return P if bool((ids[:, :P] == prefix).all()) and bool((seg[:, P] > 0).all()) else 0

    def _unpool_template(self, ids, pos, example_ids, num_examples: int, closing: bool) -> torch.Tensor:
        """(B, T) example_ids with template tokens set to -1, so pooling skips them: the prefix
        (position p < P holding prefix[p]) always; with ``closing``, also the suffix (an example's last
        S positions holding the suffix's tokens; one merged with the text by the tokenizer stays).

        Measured on SST-2 / TREC-6 (docs/RESULTS.md): mean pooling is best with the closing tokens,
        which have read the whole text (82.1 / 87.4 vs 78.6 / 84.4 without); max pooling needs them
        out, as their outlier activations win every max (50.9 / 13.0 with, 71.6 / 69.2 without). An
        example left with no token keeps all of its own.
        """
        real = example_ids >= 0
        out = example_ids
        if self.prefix_ids:
            prefix = torch.tensor(self.prefix_ids, device=ids.device)
            out = out.masked_fill((pos < len(prefix)) & (ids == prefix[pos.clamp(max=len(prefix) - 1)]), -1)
        if closing and self.suffix_ids:
            suffix, S = torch.tensor(self.suffix_ids, device=ids.device), len(self.suffix_ids)
            last = torch.full((num_examples,), -1, device=ids.device).scatter_reduce(0, example_ids[real], pos[real], "amax")
            k = pos - (last[example_ids.clamp(min=0)] - S + 1)  # index into the suffix inside its window
            out = out.masked_fill(real & (k >= 0) & (ids == suffix[k.clamp(0, S - 1)]), -1)
        kept = torch.bincount(out[out >= 0], minlength=num_examples)
        return torch.where(real & (kept[example_ids.clamp(min=0)] == 0), example_ids, out)

    def _hidden_after_shared_prefix(self, ids, seg, pos, P: int) -> torch.Tensor:
        """(B, T) rows sharing their first P tokens -> (B, T-P) final states of the rest.

        The prefix runs once (1 x P) and every row attends to its cached keys/values instead of
        recomputing them B times; exact under a causal mask, where the prefix never sees what follows.
        Gradients reach the LoRA weights through the cache (repeat_interleave sums them back).
        """
        cache = output_cache(self.backbone(input_ids=ids[:1, :P], position_ids=pos[:1, :P], use_cache=True))
        cache.batch_repeat_interleave(ids.shape[0])
        mask = torch.cat([torch.ones_like(seg[:, :P]), (seg[:, P:] > 0).long()], 1)
        return self.backbone(input_ids=ids[:, P:], attention_mask=mask, position_ids=pos[:, P:], use_cache=True,
                             **cache_kwarg(self._base(), cache)).last_hidden_state

    # ---- inference ----------------------------------------------------------------------------
    def encode(self, texts: Sequence[str], pairs: Sequence[str] | None = None) -> tuple[list[Encoded], int]:
        ids, truncated = encode_texts(self.tokenizer, texts, pairs, self.config.data.max_length,
                                     self.config.data.append_eos, self.config.data.template)
        return [Encoded(x) for x in ids], truncated

    @torch.no_grad()
    def logits(self, encoded: Sequence[Encoded], max_tokens: int | None = None) -> list[torch.Tensor]:
        """Per-example logits in input order; batches sorted by length under a token budget.

        Computed in the run's mixed precision (``train.mixed_precision`` resolved for the device the
        model is on): a run trained in bf16 is evaluated and served in bf16, as during training.
        """
        was_training = self.training
        self.eval()
        budget = max_tokens or self.config.train.eval_batch_tokens
        out: list[torch.Tensor | None] = [None] * len(encoded)
        pad = self.tokenizer.pad_token_id
        autocast = autocast_for(self.config.train.mixed_precision, next(self.parameters()).device)
        for rows in inference_batches([len(e) for e in encoded], budget):
            batch = collate(rows, encoded, pad, "none")
            with autocast:
                logits = self(batch).logits.float().cpu()
            if self.config.model.task == "token":  # split the (U, L) units back per example
                counts = [max(encoded[i].units, default=-1) + 1 for i in batch["order"]]
                for i, part in zip(batch["order"], torch.split(logits, counts)):
                    out[i] = part
            else:
                for i, row in zip(batch["order"], logits):
                    out[i] = row
        self.train(was_training)
        return out  # type: ignore[return-value]

    def predict(self, texts: str | Sequence[str], pairs: str | Sequence[str] | None = None):
        """Label names and scores; one text -> one dict, a list -> a list in the same order."""
        single = isinstance(texts, str)
        texts_l = [texts] if single else list(texts)
        pairs_l = ([pairs] if isinstance(pairs, str) else list(pairs)) if pairs is not None else None
        encoded, _ = self.encode(texts_l, pairs_l)
        results = [self._decode(row) for row in self.logits(encoded)]
        return results[0] if single else results

    def _decode(self, logits: torch.Tensor) -> dict[str, Any]:
        kind, names = self.labels.problem_type, self.labels.names
        if kind == "regression":
            return {"value": float(logits[0])}
        if kind == "multi_label":
            p = torch.sigmoid(logits)
            chosen = [n for n, s in zip(names, p) if s >= self.config.model.threshold]
            return {"labels": chosen, "scores": {n: float(s) for n, s in zip(names, p)}}
        p = torch.softmax(logits, -1)
        best = int(p.argmax())
        return {"label": names[best], "score": float(p[best]), "scores": {n: float(s) for n, s in zip(names, p)}}

    # ---- persistence --------------------------------------------------------------------------
    def trainable_state(self) -> dict[str, torch.Tensor]:
        """LoRA + head parameters (small): what training changes."""
        return {k: v.detach().clone() for k, v in self.named_parameters() if v.requires_grad}

    def save_pretrained(self, path: str | Path) -> None:
        """Write the run-directory files (config, labels, adapter, head, tokenizer, backbone reference)."""
        if not hasattr(self.backbone, "peft_config"):
            raise ConfigError("this model was loaded from an exported (merged) run, which has no adapters to save; "
                              "copy its directory instead")
        import peft
        import transformers

        from . import __version__

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.config.save(path / "config.json")
        self.labels.save(path / "labels.json")
        self.backbone.save_pretrained(path / "adapter")
        save_file({k: v.detach().cpu().contiguous() for k, v in self.head.state_dict().items()}, path / "head.safetensors")
        self.tokenizer.save_pretrained(path / "tokenizer")
        base = self._base().config
        (path / "backbone.json").write_text(json.dumps({
            "name": self.config.model.name, "source": self.source, "model_type": base.model_type,
            "num_hidden_layers": base.num_hidden_layers, "hidden_size": base.hidden_size,
            "versions": {"labeltune": __version__, "transformers": transformers.__version__,
                         "peft": peft.__version__, "torch": torch.__version__},
        }, indent=2) + "\n")

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | torch.device | None = None,
                        dtype: torch.dtype | None = None) -> "LabelModel":
        path = Path(path)
        merged = (path / "backbone").is_dir()  # `labeltune export`: self-contained, LoRA merged in
        missing = [f for f in (*RUN_FILES, "backbone" if merged else "adapter") if not (path / f).exists()]
        if missing:
            raise ConfigError(f"{path} is not a complete labeltune run (missing {', '.join(missing)}); "
                              "give the --output directory of a finished `labeltune train`")
        config = RunConfig.load(path / "config.json")
        if "template" not in json.loads((path / "config.json").read_text()).get("data", {}):
            config = config.with_overrides({"data": {"template": "none"}})  # a run from before templates existed
        labels = LabelMap.load(path / "labels.json")
        name = str(path / "backbone") if merged else config.model.name
        backbone, _, source = load_backbone(name, config.model.attn_implementation, dtype)
        backbone.config.use_cache = False
        if not merged:
            from peft import PeftModel

            backbone = PeftModel.from_pretrained(backbone, path / "adapter")
        model = cls(backbone, load_tokenizer(str(path / "tokenizer")), config, labels, source)
        written_by = json.loads((path / "backbone.json").read_text()).get("versions", {}).get("labeltune", "0")
        if config.model.pooling == "max" and Version(written_by) < Version("0.2"):
            model.suffix_ids = []  # trained when max pooling still read the template's closing tokens
        model.head.load_state_dict(load_file(path / "head.safetensors"))
        model.eval()
        return model.to(device) if device is not None else model

