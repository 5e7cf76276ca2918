"""LabelModel = decoder backbone (+ LoRA via PEFT, + per-layer attention wiring) + the task's label head.

What differs between tasks (head, which tokens it reads, targets, outputs) is asked of ``self.task``;
the input format of the sequence task is ``self.template``; the run directory is ``rundir``'s.
"""

from __future__ import annotations

import logging
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from . import attention
from .backbone import keep_layers, load_backbone, load_tokenizer
from .calibration import FILE as CALIBRATION_FILE
from .calibration import Calibration
from .config import RunConfig, parse_depth, parse_unmask
from .data.batching import collate, inference_batches
from .data.examples import Encoded
from .data.labels import LabelMap
from .errors import ConfigError
from .heads import label_loss
from .lora_dropout import use_fast_lora_dropout
from .precision import autocast_for
from .prefix_cache import SharedPrefix
from .tasks import get_task
from .window_cache import over_budget, sliced_logits
from .window_memory import memory_states, streams, uses_memory
from .template import Template, resolve_template

__all__ = ["LabelModel", "LabelOutput"]

log = logging.getLogger(__name__)


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
    layers = layers_pattern = None
    if lora.layers not in (None, "all"):  # peft selects layers by index only with a list of module names
        n = backbone.config.num_hidden_layers
        layers = sorted(parse_unmask(lora.layers, n, setting="lora.layers"))
        # the decoder layers' linear modules, by name: "layers.12.mlp.up_proj" -> ("layers", "up_proj")
        in_layers = [m.groups() for name, module in backbone.named_modules() if isinstance(module, nn.Linear)
                     for m in [re.match(r"(?:.*\.)?([^.]+)\.\d+\.(?:.*\.)?([^.]+)$", name)] if m]
        if not in_layers:
            raise ConfigError(f"lora.layers={lora.layers!r}: no numbered decoder layers found in this model; use all")
        layers_pattern = in_layers[0][0]
        if targets == "all-linear":  # what peft's all-linear means: every linear layer inside the decoder layers
            targets = sorted({leaf for _, leaf in in_layers})
    cfg = LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=targets, bias="none",
                     layers_to_transform=layers, layers_pattern=layers_pattern)
    with warnings.catch_warnings():  # peft 0.21 reads transformers' deprecated `is_gradient_checkpointing`
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        return get_peft_model(backbone, cfg)


def loads_quantised(quantize: str, forced_full_precision: bool) -> bool:
    """Whether a run trained with --quantize loads quantised (True) or in full precision (False: asked
    for, or no CUDA GPU here; the adapters then sit on the unquantised weights, a close approximation)."""
    if forced_full_precision:
        return False
    if not torch.cuda.is_available():
        log.warning("this run was trained on %s-quantised base weights; without a CUDA GPU it loads them in full "
                    "precision (scores may differ slightly from the quantised run's)", quantize)
        return False
    return True


class LabelModel(nn.Module):
    """A decoder that labels texts (sequence task) or tags words (token task).

    ``LabelModel.from_pretrained(RUN)`` loads a run directory (or an exported one);
    ``model.predict(texts)`` labels one text or a list; ``model.save_pretrained(RUN)`` writes the
    run directory; ``labeltune.train(...)`` returns a trained one.
    """

    def __init__(self, backbone: nn.Module, tokenizer, config: RunConfig, labels: LabelMap, source: str):
        super().__init__()
        self.backbone, self.tokenizer, self.config, self.labels, self.source = backbone, tokenizer, config, labels, source
        use_fast_lora_dropout(backbone)  # the same masks' law, a third of the CPU time (lora_dropout.py)
        self.task = get_task(config.model.task)
        base_config = self.base_model.config
        self.num_layers = base_config.num_hidden_layers
        # the task's defaults for what is left at None (a no-op on a resolved config, e.g. from_config's)
        self.config = config = self.task.with_defaults(config)
        self.bidirectional = parse_unmask(config.model.unmask, self.num_layers)
        self.can_plan = base_config.model_type in attention.SUPPORTED_FAMILIES
        # the backend actually loaded (a family without SDPA falls back to its own eager attention)
        backend = base_config._attn_implementation.removeprefix("labeltune_")
        if (config.model.window_memory or streams(config)) and self.bidirectional:
            what = "window_memory" if config.model.window_memory else "long_documents=stream"
            raise ConfigError(f"{what} reads windows causally (each after its predecessor's keys); this run "
                              f"unmasks layers (unmask={config.model.unmask}): set unmask none, or {what} off")
        if self.bidirectional or config.train.batching == "packed":
            attention.check_supported(base_config, backend)
        if self.can_plan:  # stock behaviour until a forward carries a MaskPlan
            attention.enable_labeltune_attention(self.base_model, backend)
        self.head = self.task.make_head(base_config.hidden_size, labels, config)
        self.template = Template(tokenizer, config.data.template, config.data.append_eos)
        self.max_pools_closing = False  # runs before 0.2: max pooling read the template's closing tokens
        self.class_weights: torch.Tensor | None = None
        self.calibration: Calibration | None = None  # calibration.json: temperature / per-label thresholds
        self.abstain_below = 0.0  # predict/serve: no label under this score (the scores are still returned)
        self.metrics: dict[str, Any] = {}  # the last evaluation (set by training)
        self.run_dir: Path | None = None  # the local run directory it was loaded from (not a Hub snapshot)
        self.train_log: list[dict] = []

    # ---- construction -------------------------------------------------------------------------
    @classmethod
    def from_config(cls, config: RunConfig, labels: LabelMap, dtype: torch.dtype | None = None) -> "LabelModel":
        """A fresh model: pretrained backbone, new LoRA adapters, new head. The template and the task's
        defaults (head dropout, unmasked layers) are resolved here and recorded in ``model.config``
        (saved with the run)."""
        backbone, tokenizer, source = load_backbone(config.model.name, config.model.attn_implementation, dtype,
                                                    config.model.quantize)
        backbone.config.use_cache = False
        layers_loaded = backbone.config.num_hidden_layers
        # the layers the head reads through: the task's default or the setting, saved as a count (a merged
        # export holds that many, so a fraction must not be taken again)
        depth = parse_depth(get_task(config.model.task).with_defaults(config).model.depth, layers_loaded)
        keep_layers(backbone, depth)
        if config.model.quantize != "none":  # k-bit preparation: norms in fp32, inputs that carry gradients
            from peft import prepare_model_for_kbit_training

            backbone = prepare_model_for_kbit_training(
                backbone, use_gradient_checkpointing=config.train.gradient_checkpointing,
                gradient_checkpointing_kwargs={"use_reentrant": False})
        template = resolve_template(config.data.template, tokenizer, config.model.task, bool(config.data.text_pair_column))
        overrides: dict[str, dict] = {"data": {"template": template or "none"},
                                      "model": {"depth": "all" if depth == layers_loaded else str(depth)}}
        if config.model.unmask is None and backbone.config.model_type not in attention.SUPPORTED_FAMILIES:
            log.warning("%s: family %r cannot unmask attention; the %s task's default runs causal (unmask none)",
                        config.model.name, backbone.config.model_type, config.model.task)
            overrides["model"]["unmask"] = "none"
        config = get_task(config.model.task).with_defaults(config.with_overrides(overrides))
        model = cls(_apply_lora(backbone, config.lora), tokenizer, config, labels, source)
        model.task.init_head(model)
        return model

    @property
    def base_model(self) -> nn.Module:
        """The transformers model underneath PEFT's wrappers."""
        b = self.backbone
        return b.get_base_model() if hasattr(b, "get_base_model") else b

    @property
    def _no_split_modules(self) -> list[str]:
        """The backbone's decoder-layer classes: what FSDP's transformer-based auto-wrap shards as units."""
        return list(getattr(self.base_model, "_no_split_modules", None) or [])

    @property
    def temperature(self) -> float:
        """What the logits are divided by before the softmax (1.0: uncalibrated)."""
        return self.calibration.temperature if self.calibration is not None else 1.0

    @property
    def device(self) -> torch.device:
        return self.head.score.weight.device

    # ---- forward ------------------------------------------------------------------------------
    def forward(self, batch: dict[str, Any]) -> LabelOutput:
        logits = self.score_states(self.pooled_states(batch), batch)
        return LabelOutput(logits, self.loss(logits, batch) if "labels" in batch else None)

    def loss(self, logits: torch.Tensor, batch: dict[str, Any]) -> torch.Tensor:
        """The training loss of ``logits`` against the batch's labels (class weights, focal exponent)."""
        return label_loss(logits, batch["labels"].to(self.device), self.labels.problem_type, self.class_weights,
                          self.config.train.focal_gamma)

    def pooled_states(self, batch: dict[str, Any]) -> torch.Tensor:
        """The backbone over a collated batch, pooled per group: (G, H), a state per example, per
        window of a long text (then ``score_states`` combines them per text), or per token-task unit."""
        if uses_memory(self, batch):  # windows read in rounds, each after its predecessor's memory
            return memory_states(self, batch)
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
        ids, pos = batch["input_ids"].to(dev), batch["position_ids"].to(dev)
        groups, count = self.task.head_groups(self, batch, ids, pos)
        P = self._shareable_prefix(ids, seg, packed)
        if P:  # the template's prefix runs once (1 x P); every row continues from its keys and values
            shared = SharedPrefix(self.backbone, ids[:1, :P], pos[:1, :P], signature_of=self.base_model, reusable=False)
            hidden = shared.run(ids[:, P:], (seg[:, P:] > 0).long(), pos[:, P:]).last_hidden_state
            groups = groups[:, P:]
        else:
            hidden = self.backbone(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=False,
                                   **kwargs).last_hidden_state
        return self.head.pool(hidden, groups, count)

    def score_states(self, pooled: torch.Tensor, batch: dict[str, Any]) -> torch.Tensor:
        """(G, H) pooled states -> (E, L) logits; long texts' windows combined per text first."""
        if "window_example" in batch:
            # stream: a text's last chunk has read all of it (its last token is the whole text's)
            combine = "last" if streams(self.config) else self.config.model.window_pooling
            return self.head.score_pooled(pooled, batch["window_example"], batch["num_texts"], combine)
        return self.head.score_pooled(pooled)

    def _shareable_prefix(self, ids: torch.Tensor, seg: torch.Tensor, packed: bool) -> int:
        """P > 0 when every row (one example each, causal) starts with the template's P prefix tokens
        and has a token after them; else 0 (the plain path, always correct)."""
        P = len(self.template.prefix_ids)
        if (not P or packed or self.bidirectional or ids.shape[1] <= P
                or (self.training and any(getattr(m, "gradient_checkpointing", False) for m in self.base_model.modules()))):
            return 0
        prefix = torch.tensor(self.template.prefix_ids, device=ids.device)
        return P if bool((ids[:, :P] == prefix).all()) and bool((seg[:, P] > 0).all()) else 0

    # ---- inference ----------------------------------------------------------------------------
    @torch.no_grad()
    def logits(self, encoded: Sequence[Encoded], max_tokens: int | None = None) -> list[torch.Tensor]:
        """Per-example logits in input order ((L,) sequence task, (words, L) token task); batches
        sorted by length under a token budget.

        Computed in the run's mixed precision (``train.mixed_precision`` resolved for the device the
        model is on): a run trained in bf16 is evaluated and served in bf16, as during training.
        """
        was_training = self.training
        self.eval()
        budget = max_tokens or self.config.train.eval_batch_tokens
        pieces, owner = self.task.pieces(encoded)
        out: list[torch.Tensor | None] = [None] * len(pieces)
        autocast = autocast_for(self.config.train.mixed_precision, self.device)
        for rows in inference_batches([len(e) for e in pieces], budget):
            batch = collate(rows, pieces, self.tokenizer.pad_token_id, "none")
            with autocast:  # a text whose windows exceed the budget runs a slice of windows at a time
                sliced = over_budget(batch, budget) and not uses_memory(self, batch)  # rounds bound it already
                logits = (sliced_logits(self, batch, budget) if sliced else self(batch).logits).float().cpu()
            for i, part in zip(batch["order"], self.task.split_logits(logits, batch, pieces)):
                out[i] = part
        self.train(was_training)
        if owner is not None:  # windows of one example: their logits end to end, in window order
            joined: list[list[torch.Tensor]] = [[] for _ in encoded]
            for n, part in zip(owner, out):
                joined[n].append(part)
            return [torch.cat(parts) for parts in joined]
        return out  # type: ignore[return-value]

    def encode(self, texts: Sequence[str], pairs: Sequence[str] | None = None) -> tuple[list[Encoded], int]:
        """Raw texts -> the model's inputs (no targets), as predict encodes them; (encoded, truncated)."""
        return self.task.encode(self, self.task.from_texts(list(texts), pairs, self.config), with_targets=False,
                                source="--text")

    def predict(self, texts: str | Sequence[str], pairs: str | Sequence[str] | None = None):
        """Label one text (-> a dict) or a list (-> a list of dicts in input order), as the CLI's
        predict and the server answer: ``label``/``score``/``scores`` (sequence task; ``labels`` for
        multi-label, ``value`` for regression) or ``tokens``/``tags``/``entities`` (token task)."""
        single = isinstance(texts, str)
        texts_l = [texts] if single else list(texts)
        pairs_l = ([pairs] if isinstance(pairs, str) else list(pairs)) if pairs is not None else None
        rows = self.predict_examples(self.task.from_texts(texts_l, pairs_l, self.config), "--text")
        return rows[0] if single else rows

    def predict_examples(self, examples: Sequence, source: str = "data") -> list[dict]:
        encoded, _ = self.task.encode(self, examples, with_targets=False, source=source)
        return self.task.prediction_rows(self, examples, encoded)

    def evaluate(self, data: Any) -> dict[str, Any]:
        """Metrics on labelled data (a path, ``hf:ID:SPLIT``, a list of dicts, a DataFrame or a Dataset)."""
        from .data.readers import source_name

        examples = self.task.read(data, self.config)
        encoded, truncated = self.task.encode(self, examples, source=source_name(data))
        metrics, _ = self.task.evaluate(self, examples, encoded)
        metrics["truncated_examples"] = truncated
        return metrics

    # ---- persistence --------------------------------------------------------------------------
    def trainable_state(self) -> dict[str, torch.Tensor]:
        """LoRA + head parameters (small): what training changes."""
        return {k: v.detach().clone() for k, v in self.named_parameters() if v.requires_grad}

    def save_pretrained(self, path: str | Path, overwrite: bool = False,
                        state: dict[str, torch.Tensor] | None = None) -> None:
        """Write the run directory (see ``rundir``) atomically: settings, labels, adapter, head,
        tokenizer, backbone reference, and the training record (metrics, log, plots) when trained.
        ``state``: the trainable parameters' whole values (``trainable_state`` names), for a model whose
        own are shards (FSDP, ZeRO-3: ``sharding.full_trainable_state``)."""
        from .card import write_model_card
        from .report import write_training_record
        from .rundir import atomic_run_dir, write_backbone_info

        if not hasattr(self.backbone, "peft_config"):
            raise ConfigError("this model was loaded from an exported (merged) run, which has no adapters to save; "
                              "copy its directory instead")
        with atomic_run_dir(path, overwrite) as tmp:
            self.config.save(tmp / "config.json")
            self.labels.save(tmp / "labels.json")
            if state is None:
                self.backbone.save_pretrained(tmp / "adapter")
                head = self.head.state_dict()
            else:  # PEFT picks the adapter's weights out of the backbone's part
                self.backbone.save_pretrained(tmp / "adapter", state_dict={
                    k.removeprefix("backbone."): v for k, v in state.items() if k.startswith("backbone.")})
                head = {k.removeprefix("head."): v for k, v in state.items() if k.startswith("head.")}
                missing = set(self.head.state_dict()) - set(head)
                if missing:
                    raise ValueError(f"state lacks the head's {sorted(missing)}")
            save_file({k: v.detach().cpu().contiguous() for k, v in head.items()}, tmp / "head.safetensors")
            self.tokenizer.save_pretrained(tmp / "tokenizer")
            if self.calibration is not None:
                self.calibration.save(tmp / CALIBRATION_FILE)
            write_backbone_info(tmp, self.config.model.name, self.source, self.base_model.config,
                                **({"max_pools_closing": True} if self.max_pools_closing else {}))
            if self.metrics or self.train_log:
                write_training_record(tmp, self)
            write_model_card(tmp, self, self.metrics)

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | torch.device | None = None,
                        dtype: torch.dtype | None = None, full_precision: bool = False) -> "LabelModel":
        """Load a run directory (from ``labeltune train``, ``save_pretrained`` or ``labeltune export``),
        or a Hugging Face Hub repository holding one (``user/name``; needs network access)."""
        from .rundir import local_run_path, read_run

        local = local_run_path(path)
        run = read_run(local)
        quantize = run.config.model.quantize
        if quantize != "none" and (run.adapter is None or not loads_quantised(quantize, full_precision)):
            quantize = "none"  # merged (exported) weights, or no GPU: the full-precision base under the adapters
        backbone, _, source = load_backbone(run.backbone, run.config.model.attn_implementation, dtype, quantize)
        backbone.config.use_cache = False
        keep_layers(backbone, parse_depth(run.config.model.depth, backbone.config.num_hidden_layers))
        if run.adapter is not None:
            from peft import PeftModel

            backbone = PeftModel.from_pretrained(backbone, run.adapter)
        model = cls(backbone, load_tokenizer(str(run.tokenizer)), run.config, run.labels, source)
        model.max_pools_closing = run.max_pools_closing
        model.run_dir = run.path if local == Path(path).expanduser() else None  # None: a Hub snapshot
        model.head.load_state_dict(load_file(run.head))
        if (run.path / CALIBRATION_FILE).exists():
            model.calibration = Calibration.load(run.path / CALIBRATION_FILE)
        model.eval()
        return model.to(device) if device is not None else model
