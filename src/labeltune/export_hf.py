"""`labeltune export --format transformers`: a standard transformers checkpoint that plain
``AutoModelForSequenceClassification`` / ``AutoModelForTokenClassification`` (and the pipelines, and the
serving stacks that read those classes) load with no labeltune installed.

    OUT/config.json, model.safetensors   the stock *For{Sequence,Token}Classification: LoRA merged into
                                         the decoder, the label head as its ``score`` layer, id2label,
                                         label2id, problem_type, and a pad_token_id the input never holds
    OUT/tokenizer files                  the run's tokenizer, its pad token set to that id
    OUT/input_format.json                how a raw text becomes the model's input (the run's template)
    OUT/labeltune_run.json, metrics.json the run's settings and scores (provenance); README.md (model card);
                                         calibration.json: a temperature is folded into the score layer
                                         (W/T), per-label thresholds are config.labeltune_thresholds

Why a run may not be expressible: the stock classes attend causally (no unmasked layers), the
sequence class reads the last non-pad token (pooling ``last`` only) through a bias-free ``score``
layer (head_bias false, the default since 0.4). Such runs are refused with the reason.
The export is checked before it is published: the stock class, loaded from the written files and fed
the documented input, must give the run's logits on probe texts (fp32: 1e-3; bf16/fp16: the same
decisions), else nothing is written.
"""

from __future__ import annotations

import gc
import json
import shutil
from pathlib import Path

import torch

from .atomic import write_json_atomic, write_text_atomic
from .errors import ConfigError
from .template import special_tokens

__all__ = ["transformers_refusal", "export_transformers", "stock_input_ids"]


def transformers_refusal(model) -> str | None:
    """Why the stock classes cannot express this run, or None when they can."""
    cfg = model.config
    if model.bidirectional:
        return (f"layers {sorted(model.bidirectional)} attend bidirectionally (unmask {cfg.model.unmask}); the stock "
                "transformers classes are causal")
    if cfg.data.long_documents == "window":
        if cfg.model.task == "token":
            return ("it reads each sentence in windows with its document's words around it; the stock class reads "
                    "one sentence, truncated")
        return "it reads long texts in windows whose states are combined before the head; the stock class reads one"
    if cfg.model.task == "sequence":
        if cfg.model.pooling != "last":
            return (f"pooling {cfg.model.pooling!r}: the stock *ForSequenceClassification reads the last token only")
        if model.head.score.bias is not None:
            return ("the label head has a bias, which the stock *ForSequenceClassification score layer lacks "
                    "(runs before 0.4, or --head-bias); retrain with --no-head-bias")
    return None


def _input_format(model) -> dict:
    """input_format.json: what the stock model must be fed to reproduce the run (see ``stock_input_ids``)."""
    cfg, tok = model.config, model.tokenizer
    if cfg.model.task == "token":
        prefix, suffix = special_tokens(tok)
        return {"task": "token", "label_alignment": cfg.model.label_alignment, "prefix_ids": prefix,
                "suffix_ids": suffix,
                "how": "words = text.split(); ids = prefix_ids + [each word tokenised alone, add_special_tokens="
                       "False, with a leading space before every word but the first] + suffix_ids; a word's tag is "
                       "the argmax at its first sub-word (label_alignment first/all), its last (last), or of the "
                       "mean of its sub-words' logits (mean)"}
    fmt = cfg.data.template if cfg.data.template not in (None, "none") else None
    if cfg.data.append_eos and tok.eos_token is not None:
        fmt = (fmt or ("{text}\n{pair}" if cfg.data.text_pair_column else "{text}")) + tok.eos_token.replace(
            "{", "{{").replace("}", "}}")
    return {"task": "sequence", "template": fmt, "pairs": bool(cfg.data.text_pair_column),
            "max_length": None if cfg.data.long_documents == "stream" else cfg.data.max_length,
            "how": ("ids = tokenizer(template.format(text=text" + (", pair=pair" if cfg.data.text_pair_column else "")
                    + ")).input_ids" if fmt else
                    "ids = tokenizer(text" + (", pair" if cfg.data.text_pair_column else "") + ").input_ids (the raw "
                    "text: the transformers pipeline feeds it as is)")}


def stock_input_ids(fmt: dict, tokenizer, text: str, pair: str | None = None) -> tuple[list[int], list[list[int]]]:
    """(input ids, the sub-word positions of each word [token task]) per input_format.json: the reference
    for the documented recipe (tests repeat it with plain transformers)."""
    if fmt["task"] == "token":
        words = text.split()
        pieces = tokenizer([(" " if k else "") + w for k, w in enumerate(words)], add_special_tokens=False)["input_ids"]
        ids, spans = list(fmt["prefix_ids"]), []
        for piece in pieces:
            piece = piece or [tokenizer.unk_token_id or 0]
            spans.append(list(range(len(ids), len(ids) + len(piece))))
            ids += piece
        return ids + list(fmt["suffix_ids"]), spans
    if fmt["template"]:
        return tokenizer(fmt["template"].format(text=text, pair=pair or ""))["input_ids"], []
    return tokenizer(text, pair)["input_ids"], []


def _pad_id(model, fmt: dict) -> int:
    """An id the model's input never holds, so that the stock class's "last non-pad token" is the token
    labeltune pools (pad == eos would be wrong where the template or --append-eos puts EOS in the input)."""
    tok = model.tokenizer
    used = set(model.template.prefix_ids) | set(model.template.suffix_ids)
    for probe in ("x", "x y"):
        used |= set(stock_input_ids(fmt, tok, probe, probe if fmt.get("pairs") else None)[0])
    used -= set(tok("x y", add_special_tokens=False)["input_ids"])  # the words themselves are not markers
    candidates = [tok.pad_token_id, tok.unk_token_id, tok.eos_token_id, *tok.all_special_ids,
                  *sorted(tok.added_tokens_decoder)]
    for c in candidates:
        if c is not None and c not in used:
            return int(c)
    raise ConfigError("every special token of this tokenizer occurs in the run's input format, so no pad token "
                      "lets the stock class find the pooled token; use --format labeltune")


def _stock_class(task: str):
    from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification

    return AutoModelForSequenceClassification if task == "sequence" else AutoModelForTokenClassification


def _output_layer(stock, num_labels: int) -> torch.nn.Linear:
    for name in ("score", "classifier"):
        layer = getattr(stock, name, None)
        if isinstance(layer, torch.nn.Linear) and layer.out_features == num_labels:
            return layer
    raise ConfigError(f"{type(stock).__name__} has no score/classifier layer labeltune knows; use --format labeltune")


def export_transformers(model, reference: list[torch.Tensor], tmp: Path, dtype: torch.dtype, run: Path,
                        probes: list[str]) -> dict:
    """Write the stock checkpoint of ``model`` (a LabelModel, fp32) into ``tmp``; check it against
    ``reference`` (the run's logits on ``probes``). ConfigError when the run cannot be expressed."""
    from accelerate import init_empty_weights

    why = transformers_refusal(model)
    if why:
        raise ConfigError(f"--format transformers cannot express this run: {why}. Use --format labeltune (readable "
                          "by labeltune's evaluate/predict/serve)")
    task, labels = model.config.model.task, model.labels
    fmt = _input_format(model)
    pad = _pad_id(model, fmt) if task == "sequence" else model.tokenizer.pad_token_id
    # a calibrated run's temperature is folded into the head (W/T, b/T): the stock model's softmax gives
    # the calibrated scores, exactly as predict and serve do
    temperature = model.temperature
    head = {k: v.detach().float().cpu() / temperature for k, v in model.head.score.state_dict().items()}
    reference = [r / temperature for r in reference]
    base = model.backbone.merge_and_unload()  # (PEFT) folds every LoRA pair into its linear layer
    hf_config = base.config.__class__.from_dict(base.config.to_dict())
    hf_config.update({"num_labels": len(labels.names), "id2label": dict(enumerate(labels.names)),
                      "label2id": {n: i for i, n in enumerate(labels.names)}, "pad_token_id": pad,
                      "use_cache": False})
    if model.calibration is not None and model.calibration.thresholds:  # multi-label: per-label thresholds
        hf_config.labeltune_thresholds = dict(model.calibration.thresholds)
    if task == "sequence":
        hf_config.problem_type = {"single_label": "single_label_classification",
                                  "multi_label": "multi_label_classification",
                                  "regression": "regression"}[labels.problem_type]
    hf_config.architectures = None
    with init_empty_weights():  # the merged weights are assigned, not copied: one backbone in memory
        stock = _stock_class(task).from_config(hf_config)
    prefix = stock.base_model_prefix
    state = {f"{prefix}.{k}": v for k, v in base.state_dict().items()}
    layer = _output_layer(stock, len(labels.names))
    layer_name = next(n for n, m in stock.named_modules() if m is layer)
    if layer.bias is not None and "bias" not in head:
        head["bias"] = torch.zeros(len(labels.names))
    state.update({f"{layer_name}.{k}": v for k, v in head.items()})
    stock.load_state_dict(state, assign=True, strict=True)
    stock.to(dtype).save_pretrained(tmp)
    del model.backbone, base, stock, state  # free before loading the written files back
    gc.collect()
    tok = model.tokenizer
    if task == "sequence":
        tok.pad_token = tok.convert_ids_to_tokens(pad)
    tok.save_pretrained(tmp)
    write_json_atomic(tmp / "input_format.json", fmt)
    for name in ("metrics.json", "calibration.json"):
        if (run / name).exists():
            shutil.copy2(run / name, tmp / name)
    model.config.save(tmp / "labeltune_run.json")
    check = _check(tmp, reference, probes, dtype, model)
    from .card import model_card

    metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8")) if (run / "metrics.json").exists() else {}
    write_text_atomic(tmp / "README.md", model_card(model, metrics, exported=True, stock_format=fmt))
    return check


def _check(tmp: Path, reference: list[torch.Tensor], probes: list[str], dtype: torch.dtype, model) -> dict:
    """Load the written files with the stock class alone and compare with the run's logits."""
    from transformers import AutoTokenizer

    fmt = json.loads((tmp / "input_format.json").read_text(encoding="utf-8"))
    tok = AutoTokenizer.from_pretrained(tmp)
    stock = _stock_class(fmt["task"]).from_pretrained(tmp, dtype=torch.float32).eval()
    got = []
    with torch.no_grad():
        for text in probes:
            ids, spans = stock_input_ids(fmt, tok, text, text if fmt.get("pairs") else None)
            out = stock(input_ids=torch.tensor([ids])).logits[0]  # (L,) sequence, (T, L) token
            if fmt["task"] == "token":
                pick = {"first": lambda s: out[s[0]], "all": lambda s: out[s[0]], "last": lambda s: out[s[-1]],
                        "mean": lambda s: out[s].mean(0)}[fmt["label_alignment"]]
                out = torch.stack([pick(s) for s in spans])
            got.append(out)
    diff = max(float((a - b).abs().max()) for a, b in zip(reference, got))
    same = model.task.same_decisions(reference, got, model)
    ok = diff <= 1e-3 if dtype == torch.float32 else same
    if not ok:
        raise ConfigError(f"the stock {type(stock).__name__} does not reproduce the run's logits (max |diff| "
                          f"{diff:.2e}, same predictions: {same}); nothing was written. Please report this, or use "
                          "--format labeltune")
    return {"max_abs_logit_diff": diff, "same_predictions": same, "probes": len(reference),
            "class": type(stock).__name__}

