"""`labeltune export`: a self-contained run directory with the LoRA adapters merged into the backbone
(``--format labeltune``, below), or a plain transformers checkpoint (``--format transformers``: export_hf.py).

    OUT/backbone/          the backbone with W + (alpha / r) * B @ A folded in (a complete HF model
                           directory: safetensors weights, config, tokenizer)
    OUT/config.json, labels.json, head.safetensors, tokenizer/, backbone.json ("merged": true)

evaluate, predict and serve read it like any run (`LabelModel.from_pretrained` sees backbone/, not adapter/),
with no PEFT adapter step and no access to the original base model (hub, GGUF cache) needed.
The export is checked before it is published: the merged model must give the run's logits on a few
probe texts (fp32: 1e-3; a bf16/fp16 export: the same decisions), else nothing is written. A
bf16/fp16 export halves the files; `from_pretrained` loads the weights back as fp32 unless given a dtype.
"""

from __future__ import annotations

import gc
import json
import logging
import shutil
from pathlib import Path

import torch

from .atomic import write_json_atomic
from .card import write_model_card
from .errors import ConfigError
from .rundir import atomic_run_dir, check_output, is_merged

__all__ = ["export_run"]

log = logging.getLogger(__name__)
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
PROBES = ["The movie was a delight from start to finish.", "Shares of Acme Corp fell 3% in Paris on Monday.",
          "What is the capital of Australia?", "terrible"]


FORMATS = ("labeltune", "transformers")


def export_run(run: str | Path, output: str | Path, dtype: str = "float32", overwrite: bool = False,
               format: str = "labeltune") -> dict:
    """Write the merged run to ``output`` (atomically) in labeltune's layout or as a plain transformers
    checkpoint (``export_hf``); returns the probe comparison."""
    from .modeling import LabelModel

    if dtype not in DTYPES:
        raise ConfigError(f"--dtype {dtype!r}: use one of {', '.join(DTYPES)}")
    if format not in FORMATS:
        raise ConfigError(f"--format {format!r}: use one of {', '.join(FORMATS)}")
    from .rundir import local_run_path

    run, output = local_run_path(run), Path(output)
    if output.resolve() == run.resolve() or output.resolve() in run.resolve().parents:
        raise ConfigError(f"{output} is the run or a folder that holds it; export to a new directory")
    if is_merged(run):
        raise ConfigError(f"{run} is already an exported (merged) run; copy it instead")
    check_output(output, overwrite)  # before the (slow) load
    model = LabelModel.from_pretrained(run, full_precision=True)
    if model.config.model.quantize != "none":  # merging into 4/8-bit weights would round the adapters away
        log.warning("%s was trained on %s-quantised base weights; the export merges its adapters into the full-"
                    "precision weights (the checked logits are those of the full-precision base)", run,
                    model.config.model.quantize)
    model.config.train.mixed_precision = "no"  # the reference logits: fp32, as the adapter run computes them
    reference = _probe_logits(model)
    if format == "transformers":
        from .export_hf import export_transformers

        with atomic_run_dir(output, overwrite) as tmp:
            return export_transformers(model, reference, tmp, DTYPES[dtype], run, PROBES)
    with atomic_run_dir(output, overwrite) as tmp:
        for name in ("config.json", "labels.json", "head.safetensors", "metrics.json", "calibration.json"):
            if (run / name).exists():
                shutil.copy2(run / name, tmp / name)
        for name in ("tokenizer", "plots"):
            if (run / name).is_dir():
                shutil.copytree(run / name, tmp / name)
        base = model.backbone.merge_and_unload()  # (PEFT) folds every LoRA pair into its linear layer
        base.to(DTYPES[dtype]).save_pretrained(tmp / "backbone")
        model.tokenizer.save_pretrained(tmp / "backbone")  # backbone/ is a complete HF model directory
        metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8")) if (run / "metrics.json").exists() else {}
        write_model_card(tmp, model, metrics, exported=True)
        info = json.loads((run / "backbone.json").read_text(encoding="utf-8"))
        info.update(merged=True, dtype=dtype, merged_from=str(run))
        write_json_atomic(tmp / "backbone.json", info)
        del model, base  # one backbone in memory at a time (a 7B model in fp32 is 28 GB)
        gc.collect()
        exported = LabelModel.from_pretrained(tmp)
        exported.config.train.mixed_precision = "no"
        check = _compare(reference, _probe_logits(exported), dtype, exported)
    return check


def _probe_logits(model) -> list[torch.Tensor]:
    encoded, _ = model.encode(PROBES, PROBES if model.config.data.text_pair_column else None)
    return model.logits(encoded)


def _compare(reference: list[torch.Tensor], got: list[torch.Tensor], dtype: str, model) -> dict:
    """float32: logits within 1e-3. bf16/fp16 weights: the same decisions (the task's: argmax,
    thresholded sigmoids for multi-label, regression values within 1% + 0.01)."""
    diff = max(float((a - b.float()).abs().max()) for a, b in zip(reference, got))
    same = model.task.same_decisions(reference, got, model)
    ok = diff <= 1e-3 if dtype == "float32" else same
    if not ok:  # raising inside atomic_run_dir leaves no output behind
        raise ConfigError(f"the merged model does not reproduce the run's logits (max |diff| {diff:.2e}, "
                          f"same predictions: {same}); nothing was written. Please report this with the run's "
                          "backbone.json")
    return {"max_abs_logit_diff": diff, "same_predictions": same, "probes": len(reference)}
