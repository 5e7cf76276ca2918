"""The training loop on Accelerate: read -> encode -> plan batches -> train/evaluate per epoch ->
keep the best epoch's LoRA + head -> write the run directory atomically."""

from __future__ import annotations

import json
import logging
import math
import random
import time
from pathlib import Path
from typing import Any, Callable

import torch

from .config import RunConfig
from .data.batching import collate, plan_batches
from .metrics import primary_metric
from .modeling import LabelModel
from .precision import resolve_mixed_precision
from .rundir import atomic_run_dir, check_output, write_json_atomic
from .tasks import build_label_map, encode_examples, evaluate_examples, read_examples

__all__ = ["train"]

log = logging.getLogger(__name__)


class _Batches(torch.utils.data.Dataset):
    """Pre-planned batches, collated lazily; a DataLoader over it uses batch_size=1."""

    def __init__(self, plan, encoded, pad_id, problem):
        self.plan, self.encoded, self.pad_id, self.problem = plan, encoded, pad_id, problem

    def __len__(self):
        return len(self.plan)

    def __getitem__(self, i):
        return collate(self.plan[i], self.encoded, self.pad_id, self.problem)


def _class_weights(setting: str, targets, n: int) -> torch.Tensor | None:
    if setting == "none":
        return None
    if setting == "balanced":  # n_samples / (n_classes * count), as scikit-learn's "balanced"
        counts = torch.bincount(torch.tensor(targets), minlength=n).float().clamp_min(1)
        return counts.sum() / (n * counts)
    w = torch.tensor([float(x) for x in setting.split(",")])
    if len(w) != n:
        from .errors import ConfigError

        raise ConfigError(f"class_weights has {len(w)} values but there are {n} labels")
    return w


def train(config: RunConfig, train_data: str, eval_data: str | None, output: str | Path,
          overwrite: bool = False, progress: bool = True, echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Fine-tune and write the run directory; returns the final metrics (also in RUN/metrics.json)."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from tqdm.auto import tqdm
    from transformers import get_linear_schedule_with_warmup

    t_cfg = config.train
    check_output(output, overwrite)  # fail before hours of training, not after
    set_seed(t_cfg.seed)
    accelerator = Accelerator(mixed_precision=resolve_mixed_precision(t_cfg.mixed_precision),
                              gradient_accumulation_steps=t_cfg.grad_accum)
    task_problem = "token" if config.model.task == "token" else config.model.problem_type

    # data: everything is validated before the model loads, so input mistakes fail in seconds
    train_ex = read_examples(train_data, config)
    labels = build_label_map(train_ex, config)
    eval_ex = read_examples(eval_data, config) if eval_data else None
    dtype = torch.bfloat16 if accelerator.mixed_precision == "bf16" and accelerator.device.type == "cuda" else None
    model = LabelModel.from_config(config, labels, dtype=dtype)
    config = model.config  # with the template resolved for this tokenizer
    train_enc, n_cut = encode_examples(model.tokenizer, train_ex, labels, config, train_data, training=True)
    eval_enc, n_cut_eval = (encode_examples(model.tokenizer, eval_ex, labels, config, eval_data)
                            if eval_ex else (None, 0))
    for n, name, total in ((n_cut, train_data, len(train_ex)), (n_cut_eval, eval_data, len(eval_ex or []))):
        if n:
            echo(f"note: {n} of {total} examples in {name} are longer than max_length={config.data.max_length} "
                 "tokens and were truncated (raise --max-length to keep them whole)")
    if task_problem == "single_label":
        model.class_weights = _class_weights(t_cfg.class_weights, [e.target for e in train_enc], len(labels))
    if t_cfg.gradient_checkpointing:
        model._base().gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model._base().enable_input_require_grads()

    # batches: planned per epoch (fresh shuffle); the schedule needs the total up front
    lengths = [len(e) for e in train_enc]
    budget = t_cfg.max_tokens_per_batch or t_cfg.batch_size * config.data.max_length
    rng = random.Random(t_cfg.seed)
    n_epochs = math.ceil(t_cfg.epochs)
    plans = [plan_batches(lengths, t_cfg.batching, t_cfg.batch_size, budget, config.data.max_length, rng)
             for _ in range(n_epochs)]
    steps_per_epoch = [len(p) // t_cfg.grad_accum for p in plans]
    total_steps = max(1, int(sum(steps_per_epoch[:-1]) + steps_per_epoch[-1] * (t_cfg.epochs - n_epochs + 1)))
    if t_cfg.max_steps:
        total_steps = min(total_steps, t_cfg.max_steps)

    params = [p for p in model.parameters() if p.requires_grad]
    head = [p for p in model.head.parameters() if p.requires_grad]
    head_ids = {id(p) for p in head}
    groups = [{"params": [p for p in params if id(p) not in head_ids]},
              {"params": head, "lr": t_cfg.lr * t_cfg.head_lr_scale}]
    optimizer = torch.optim.AdamW(groups, lr=t_cfg.lr, weight_decay=t_cfg.weight_decay)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(t_cfg.warmup_ratio * total_steps), total_steps)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    raw = accelerator.unwrap_model(model)

    metric_name, higher = primary_metric(task_problem)
    best: dict[str, Any] = {"score": None, "state": None, "metrics": None, "epoch": None}
    history, train_log = [], []
    step, t0, tokens, eval_time = 0, time.perf_counter(), 0, 0.0
    bar = tqdm(total=total_steps, disable=not progress or not accelerator.is_local_main_process, desc="train",
               dynamic_ncols=True)
    stop = False
    for epoch in range(n_epochs):
        loader = torch.utils.data.DataLoader(_Batches(plans[epoch], train_enc, raw.tokenizer.pad_token_id, task_problem),
                                             batch_size=None, shuffle=False, num_workers=t_cfg.num_workers)
        loader = accelerator.prepare_data_loader(loader, device_placement=False)
        model.train()
        running, seen = 0.0, 0
        for batch in loader:
            with accelerator.accumulate(model):
                out = model(batch)
                accelerator.backward(out.loss)
                if accelerator.sync_gradients and t_cfg.max_grad_norm:
                    accelerator.clip_grad_norm_(params, t_cfg.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
            tokens += batch["real_tokens"]
            running, seen = running + out.loss.item(), seen + 1
            if not accelerator.sync_gradients:
                continue
            step += 1
            elapsed = time.perf_counter() - t0 - eval_time
            bar.update(1)
            bar.set_postfix(epoch=epoch + 1, loss=f"{running / seen:.4f}", tok_s=f"{tokens / elapsed:.0f}")
            if step % 10 == 0 or step == total_steps:
                train_log.append({"event": "train", "step": step, "epoch": epoch + 1, "loss": running / seen,
                                  "lr": scheduler.get_last_lr()[0], "real_tokens_per_s": tokens / elapsed,
                                  "elapsed_s": elapsed})
                running, seen = 0.0, 0
            if step >= total_steps or (t_cfg.time_budget_s and elapsed > t_cfg.time_budget_s):
                stop = True
                break
        if eval_enc is not None and accelerator.is_main_process:
            t_eval = time.perf_counter()
            metrics, _ = evaluate_examples(raw, eval_ex, eval_enc)
            eval_time += time.perf_counter() - t_eval
            entry = {"event": "eval", "step": step, "epoch": epoch + 1, metric_name: metrics[metric_name],
                     "eval_loss": metrics.get("loss"), "elapsed_s": time.perf_counter() - t0}
            train_log.append(entry)
            history.append(entry)
            echo(f"epoch {epoch + 1}: eval {metric_name} {metrics[metric_name]:.4f}")
            score = metrics[metric_name]
            if best["score"] is None or (score > best["score"] if higher else score < best["score"]):
                best.update(score=score, state=raw.trainable_state(), metrics=metrics, epoch=epoch + 1)
        if stop:
            break
    bar.close()
    train_time = time.perf_counter() - t0 - eval_time  # optimisation only; evaluation reported apart

    if not accelerator.is_main_process:
        return {}
    if best["state"] is not None:  # keep the best epoch, not merely the last
        raw.load_state_dict(best["state"], strict=False)
    final = dict(best["metrics"] or {})
    final.update(best_epoch=best["epoch"], history=history, train_time_s=train_time, eval_time_s=eval_time, steps=step,
                 train_real_tokens_per_s=tokens / max(train_time, 1e-9), eval_data=str(eval_data) if eval_data else None,
                 train_examples=len(train_enc), truncated_train_examples=n_cut)
    with atomic_run_dir(output, overwrite) as tmp:
        raw.save_pretrained(tmp)
        _tensorboard(tmp / "tensorboard", train_log)
        write_json_atomic(tmp / "metrics.json", final)
        (tmp / "train_log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in train_log))
        _plots(tmp / "plots", train_log, final, raw.labels.names, metric_name, task_problem)
    return final


def _tensorboard(folder: Path, train_log) -> None:
    """Mirror the JSONL log into TensorBoard event files when tensorboard is installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return
    with SummaryWriter(str(folder)) as writer:
        for r in train_log:
            for k, v in r.items():
                if k not in ("event", "step", "epoch") and isinstance(v, (int, float)):
                    writer.add_scalar(f"{r['event']}/{k}", v, r["step"])


def _plots(folder: Path, train_log, metrics, names, metric_name, problem) -> None:
    from .report import plot_confusion_matrix, plot_entity_f1, plot_learning_curves

    folder.mkdir(exist_ok=True)
    plot_learning_curves(train_log, folder / "learning_curves.png", metric_name)
    if "confusion_matrix" in metrics:
        plot_confusion_matrix(metrics["confusion_matrix"], names, folder / "confusion_matrix.png")
    if "per_type" in metrics:
        plot_entity_f1(metrics["per_type"], folder / "entity_f1.png")
