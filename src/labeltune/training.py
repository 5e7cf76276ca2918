"""The training loop on Accelerate: read -> encode -> plan batches -> train/evaluate per epoch ->
keep the best epoch's LoRA + head -> a trained LabelModel (and, given an output, its run directory).

Data are read and checked before torch or the model load, so input mistakes fail in a second.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Callable

from .config import RunConfig
from .errors import ConfigError
from .data.readers import source_name
from .recipe import size_recipe
from .rundir import check_output
from .tasks import get_task

__all__ = ["fit"]

log = logging.getLogger(__name__)


def _batches(plan, encoded, pad_id, problem, rank: int = 0, world: int = 1):
    """Pre-planned global batches, collated lazily; this process's share of each (its rows
    ``rank::world``) and ``loss_scale``, so that the gradient DDP averages over processes is the
    gradient of the global batch's mean loss (each process's mean weighted by its share of the labels).
    A process left without a row repeats the batch's first one with a zero scale (every process must
    take part in each step). A DataLoader over it uses batch_size=None."""
    import torch

    from .data.batching import collate

    def labels_in(rows) -> int:  # what the loss averages over: examples, or tagged units (token task)
        return sum(len(encoded[i].target) if problem == "token" else 1 for row in rows for i in row)

    class Batches(torch.utils.data.Dataset):
        def __len__(self):
            return len(plan)

        def __getitem__(self, i):
            rows = plan[i][rank::world]
            batch = collate(rows or plan[i][:1], encoded, pad_id, problem)
            if world > 1:
                share = labels_in(rows) / max(1, labels_in(plan[i])) if rows else 0.0
                batch["loss_scale"] = share * world
            return batch

    return Batches()


def _sharded_logits(model, encoded, rank: int, world: int) -> list:
    """The logits of every example of ``encoded``, each computed by one process (``rank::world``) and
    gathered, in input order (on every process)."""
    if world == 1:
        return model.logits(encoded)
    from accelerate.utils import gather_object

    mine = list(range(rank, len(encoded), world))
    pairs = gather_object(list(zip(mine, model.logits([encoded[i] for i in mine]))))
    out = [None] * len(encoded)
    for i, logits in pairs:
        out[i] = logits
    assert all(x is not None for x in out), "an evaluation example was scored by no process"
    return out


def _calibration_split(examples: list, fraction: float, seed: int, name: str) -> tuple[list, list | None]:
    """(training examples, the examples set aside to fit the calibration) — a seeded random part."""
    if not fraction:
        return examples, None
    from .errors import DataError

    k = max(1, round(len(examples) * fraction))
    if len(examples) - k < 1:
        raise DataError(name, None, f"calibration_split={fraction} leaves no training examples of {len(examples)}",
                        "lower --calibration-split or add data")
    held = set(random.Random(seed).sample(range(len(examples)), k))
    return [e for i, e in enumerate(examples) if i not in held], [e for i, e in enumerate(examples) if i in held]


def _calibrate(model, task, metrics: dict, cal_ex, eval_ex, eval_enc, train_name: str, eval_name: str | None) -> dict:
    """Fit the calibration (sequence task) on the set-aside part of the training data, else on the
    evaluation data; the final metrics are the evaluation's with it applied, the uncalibrated ones kept."""
    if not task.calibrates:  # token tags: nothing to fit
        return metrics
    # the evaluation's logits (raw: the calibration acts on them in decisions) serve the fit and the
    # calibrated metrics alike: one pass over the evaluation data
    eval_logits = model.logits(eval_enc) if eval_enc else None
    if cal_ex:
        encoded, logits = task.encode(model, cal_ex, source=train_name)[0], None
        where = f"{len(cal_ex)} training examples of {train_name} set aside (calibration_split)"
    elif eval_enc:
        encoded, logits = eval_enc, eval_logits
        where = f"the evaluation data {eval_name} ({len(eval_enc)} examples; its ECE after calibration is in-sample)"
    else:
        return metrics
    calibration = task.calibrate(model, encoded, where, logits)
    if calibration is None:
        return metrics
    model.calibration = calibration
    from dataclasses import asdict

    out = dict(metrics)
    if eval_enc:
        out, _ = task.evaluate(model, eval_ex, eval_enc, eval_logits)
        out["uncalibrated"] = {k: metrics[k] for k in ("ece", "reliability", "macro_f1", "micro_f1", "f1")
                               if k in metrics}
    out["calibration"] = asdict(calibration)
    return out


def fit(config: RunConfig, train_data: Any, eval_data: Any = None, output: str | Path | None = None,
        overwrite: bool = False, progress: bool = True, echo: Callable[[str], None] = print, resume: bool = False):
    """Fine-tune; return the trained LabelModel (``model.metrics``: the best epoch's evaluation and
    the training record). With ``output``, also write the run directory (atomically) and, while
    training, checkpoints beside it (``checkpoint.py``); ``resume`` continues from the newest one.

    ``train_data`` / ``eval_data``: a path, ``hf:ID[,CONFIG]:SPLIT``, a list of dicts, a pandas
    DataFrame or a ``datasets.Dataset``.
    """
    task = get_task(config.model.task)
    if output is not None:
        check_output(output, overwrite)  # fail before hours of training, not after
    # data: everything is validated before torch and the model load, so input mistakes fail in a second
    train_name, eval_name = source_name(train_data), source_name(eval_data) if eval_data is not None else None
    train_ex = task.read(train_data, config)
    labels = task.build_labels(train_ex, config)  # from every example: a label seen only in the split below keeps its row
    eval_ex = task.read(eval_data, config) if eval_data is not None else None
    train_ex, cal_ex = _calibration_split(train_ex, config.train.calibration_split, config.train.seed, train_name)

    import torch
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from tqdm.auto import tqdm
    from transformers import get_linear_schedule_with_warmup

    from .checkpoint import Checkpoints, checkpoint_folder, rng_state, set_rng_state
    from .data.batching import plan_batches
    from .window_cache import over_budget, sliced_backward
    from .window_memory import memory_backward, uses_memory
    from .modeling import LabelModel
    from .precision import resolve_mixed_precision
    from .process_group import end_process_group_at_exit
    from .sharding import (check_supported, configure_deepspeed, full_trainable_state, load_trainable_state,
                           optimizer_sharded, params_sharded)

    t_cfg = config.train
    set_seed(t_cfg.seed)
    from accelerate.state import AcceleratorState

    # Accelerate keeps its settings in a process-wide singleton: a second fit in the same process (a
    # notebook, a benchmark) may ask for another precision; the process group itself is kept
    AcceleratorState._reset_state(reset_partial_state=False)
    # torchrun on a machine without GPUs: Accelerate takes the processes for one unless told cpu (gloo)
    cpu_processes = not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1
    accelerator = Accelerator(mixed_precision=resolve_mixed_precision(t_cfg.mixed_precision),
                              gradient_accumulation_steps=t_cfg.grad_accum, cpu=cpu_processes)
    if accelerator.num_processes > 1:
        end_process_group_at_exit()  # process_group.py: no abort at interpreter exit
    if not accelerator.is_main_process:  # one process speaks (and writes)
        echo = lambda line: None  # noqa: E731
    check_supported(accelerator, t_cfg.checkpoint_every, resume)
    sharded = params_sharded(accelerator)  # FSDP / ZeRO-3: forwards are collectives (sharding.py)
    problem = task.problem(labels)
    dtype = torch.bfloat16 if accelerator.mixed_precision == "bf16" and accelerator.device.type == "cuda" else None
    model = LabelModel.from_config(config, labels, dtype=dtype)
    config = model.config  # with the template resolved for this tokenizer
    train_enc, n_cut = task.encode(model, train_ex, source=train_name, training=True)
    eval_enc, n_cut_eval = task.encode(model, eval_ex, source=eval_name) if eval_ex else (None, 0)
    for n, name, total in ((n_cut, train_name, len(train_ex)), (n_cut_eval, eval_name, len(eval_ex or []))):
        if n:
            echo(f"note: {n} of {total} examples in {name} are longer than max_length={config.data.max_length} "
                 "tokens and were truncated (raise --max-length to keep them whole)")
    train_enc, _ = task.pieces(train_enc)  # windows of long token-task sentences train as examples of their own
    # the schedule: what the user left open is sized to the data (recipe.py), and saved with the run
    lengths = [len(e) for e in train_enc]
    recipe = size_recipe(len(train_enc), sum(lengths) / len(lengths), t_cfg.batch_size, t_cfg.epochs, t_cfg.lr,
                         t_cfg.warmup_ratio, t_cfg.grad_accum, task.min_passes)
    config = config.with_settings(batch_size=recipe.batch_size, epochs=recipe.epochs, lr=recipe.lr,
                                  warmup_ratio=recipe.warmup_ratio)
    model.config, t_cfg = config, config.train
    model.class_weights = task.class_weights(t_cfg.class_weights, train_enc, labels)
    if t_cfg.gradient_checkpointing:
        model.base_model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.base_model.enable_input_require_grads()

    # batches: planned per epoch (fresh shuffle); the schedule needs the total up front
    budget = t_cfg.max_tokens_per_batch or t_cfg.batch_size * config.data.max_length
    rng = random.Random(t_cfg.seed)
    n_epochs = math.ceil(t_cfg.epochs)
    # a batch of windowed texts past the token budget trains a slice of windows at a time (window_cache.py);
    # DDP/FSDP hooks expect one forward per backward, so with several processes it runs whole
    slice_windows = accelerator.num_processes == 1 and not sharded
    # so a text read in windows is planned by its widest window: a batch holds batch_size texts, as the
    # recipe said (planned by its whole length, one long text filled the budget: ~1 text a step); with
    # several processes by its whole length, which bounds a batch's unsliced forward by the budget
    widths = [max(e.windows) if e.windows and slice_windows else len(e) for e in train_enc]
    plans = [plan_batches(widths, t_cfg.batching, t_cfg.batch_size, budget, config.data.max_length, rng)
             for _ in range(n_epochs)]
    steps_per_epoch = [len(p) // t_cfg.grad_accum for p in plans]
    total_steps = max(1, int(sum(steps_per_epoch[:-1]) + steps_per_epoch[-1] * (t_cfg.epochs - n_epochs + 1)))
    if t_cfg.max_steps:
        total_steps = min(total_steps, t_cfg.max_steps)
    echo(recipe.line(total_steps))

    params = [p for p in model.parameters() if p.requires_grad]
    head = [p for p in model.head.parameters() if p.requires_grad]
    head_ids = {id(p) for p in head}
    groups = [{"params": [p for p in params if id(p) not in head_ids]},
              {"params": head, "lr": t_cfg.lr * t_cfg.head_lr_scale}]
    optimizer = torch.optim.AdamW(groups, lr=t_cfg.lr, weight_decay=t_cfg.weight_decay)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(t_cfg.warmup_ratio * total_steps), total_steps)
    # the scheduler is not prepared: Accelerate would step it once per process, while total_steps
    # already counts global steps (--batch-size is the global batch, whatever the number of processes)
    configure_deepspeed(accelerator)
    model, optimizer = accelerator.prepare(model, optimizer)
    raw = accelerator.unwrap_model(model)
    params = [p for p in model.parameters() if p.requires_grad]  # FSDP2 replaces them (DTensors) in prepare
    rank, world = accelerator.process_index, accelerator.num_processes

    # the averaged weights are what is evaluated, chosen as best and saved (weight_average.py)
    if t_cfg.ema_decay and sharded:
        raise ConfigError("train.ema_decay is not supported with sharded parameters (FSDP / ZeRO-3); "
                          "train with DDP or without it")
    from .weight_average import WeightAverage  # torch: not before the data are checked

    average = WeightAverage(params, t_cfg.ema_decay) if t_cfg.ema_decay else None
    metric_name, higher = task.primary_metric(labels)
    best: dict[str, Any] = {"score": None, "state": None, "metrics": None, "epoch": None}
    history, train_log = [], []
    step, t0, tokens, eval_time = 0, time.perf_counter(), 0, 0.0
    # checkpoints: the loop's whole state, so that a resumed run continues as if never stopped
    ckpt = (Checkpoints(checkpoint_folder(output), t_cfg.keep_checkpoints)
            if output is not None and not optimizer_sharded(accelerator) else None)
    fingerprint = json.loads(json.dumps({"config": config.to_dict(), "train": train_name, "eval": eval_name,
                                         "train_examples": len(train_enc)}))
    start_epoch, skip, rng_after_resume, running_at_resume = 0, 0, None, (0.0, 0)
    running, seen = 0.0, 0
    resumed = ckpt.latest() if (resume and ckpt is not None) else None
    if resume and resumed is None:
        echo(f"note: no checkpoint in {ckpt.folder if ckpt else '(no output directory)'}; training from the start")
    if resumed is not None:
        trainable, saved, where = Checkpoints.load(resumed)
        if where["fingerprint"] != fingerprint:
            changed = sorted(k for k in fingerprint if where["fingerprint"].get(k) != fingerprint[k])
            then, now = where["fingerprint"].get("config", {}), fingerprint["config"]
            settings = [f"{section}.{key}: {then.get(section, {}).get(key, '(absent)')!r} -> {value!r}"
                        for section, values in now.items() for key, value in values.items()
                        if then.get(section, {}).get(key, "(absent)") != value]
            detail = f" ({'; '.join(settings)})" if settings else ""
            raise ConfigError(f"{resumed} was written by a run with other {', '.join(changed)}{detail}; resume with "
                              f"the same settings and data (a setting whose default changed between versions: "
                              f"give the old value), or remove {ckpt.folder} to start over")
        raw.load_state_dict(trainable, strict=False)
        optimizer.load_state_dict(saved["optimizer"])
        if average is not None:
            average.load_state_dict(saved["average"])
        scheduler.load_state_dict(saved["scheduler"])
        best, history, train_log = saved["best"], saved["history"], saved["train_log"]
        step, tokens, eval_time = saved["step"], saved["tokens"], saved["eval_time"]
        start_epoch, skip, rng_after_resume = where["epoch"], where["batches_done"], saved["rng"]
        running_at_resume = saved["running"]  # the loss average being logged, mid-epoch
        t0 = time.perf_counter() - where["elapsed_s"]
        echo(f"resuming from {resumed}: step {step} of {total_steps}, epoch {start_epoch + 1}")

    def save_checkpoint(epoch: int, batches_done: int) -> None:
        if ckpt is None or not accelerator.is_main_process:
            return
        saved = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": rng_state(),
                 "best": best, "history": history, "train_log": train_log, "step": step, "tokens": tokens,
                 "eval_time": eval_time, "running": (running, seen),
                 "average": average.state_dict() if average is not None else None}
        ckpt.save(step, raw.trainable_state(), saved, {"step": step, "epoch": epoch, "batches_done": batches_done,
                                                     "elapsed_s": time.perf_counter() - t0, "fingerprint": fingerprint})

    bar = tqdm(total=total_steps, initial=step, disable=not progress or not accelerator.is_local_main_process,
               desc="train", dynamic_ncols=True)
    stop = step >= total_steps
    for epoch in range(start_epoch, n_epochs if not stop else start_epoch):
        first = skip if epoch == start_epoch else 0  # batches of this epoch done before the checkpoint
        # the loader's own generator: its iterator's seed draw must not move the global RNG (dropout), so
        # that a run resumed mid-epoch draws the same dropout masks as one never stopped
        loader = torch.utils.data.DataLoader(_batches(plans[epoch][first:], train_enc, raw.tokenizer.pad_token_id,
                                                      problem, rank, world),
                                             batch_size=None, shuffle=False, num_workers=t_cfg.num_workers,
                                             generator=torch.Generator().manual_seed(t_cfg.seed + epoch))
        model.train()
        running, seen = running_at_resume if first else (0.0, 0)
        if rng_after_resume is not None:
            set_rng_state(rng_after_resume)
            rng_after_resume = None
        done_in_epoch = first
        for batch in loader:
            done_in_epoch += 1
            with accelerator.accumulate(model):
                if slice_windows and uses_memory(raw, batch):  # windows that remember: a round at a time
                    loss = memory_backward(raw, batch, accelerator.backward, batch.get("loss_scale", 1.0),
                                           accelerator.autocast)
                elif slice_windows and over_budget(batch, budget):  # past the budget: a slice at a time
                    loss = sliced_backward(raw, batch, budget, accelerator.backward, batch.get("loss_scale", 1.0),
                                           accelerator.autocast)
                else:
                    loss = model(batch).loss
                    accelerator.backward(loss * batch.get("loss_scale", 1.0))
                if accelerator.sync_gradients and t_cfg.max_grad_norm:
                    accelerator.clip_grad_norm_(params, t_cfg.max_grad_norm)
                optimizer.step()
                if accelerator.sync_gradients:
                    scheduler.step()
                    if average is not None:
                        average.update()
                optimizer.zero_grad(set_to_none=True)
            tokens += batch["real_tokens"] if batch.get("loss_scale", 1.0) else 0
            running, seen = running + loss.item(), seen + 1
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
            out_of_time = bool(t_cfg.time_budget_s) and elapsed > t_cfg.time_budget_s
            if t_cfg.time_budget_s and world > 1:  # the first process out of time stops them all at this step
                if out_of_time:  # (each reads its own clock; one stopping alone would hang the others)
                    accelerator.set_trigger()
                out_of_time = accelerator.check_trigger()
            if step >= total_steps or out_of_time:
                stop = True
                break
            if t_cfg.checkpoint_every and step % t_cfg.checkpoint_every == 0:
                save_checkpoint(epoch, done_in_epoch)
        # the averaged weights, where kept (train.ema_decay), are the ones scored and kept as the best
        with average.applied() if average is not None and eval_enc is not None else nullcontext():
            if eval_enc is not None:
                t_eval = time.perf_counter()
                # every process scores its share; with sharded parameters every process scores all, in step
                logits = raw.logits(eval_enc) if sharded else _sharded_logits(raw, eval_enc, rank, world)
                eval_time += time.perf_counter() - t_eval
            if eval_enc is not None and (accelerator.is_main_process or sharded):
                t_eval = time.perf_counter()
                metrics, _ = task.evaluate(raw, eval_ex, eval_enc, logits)
                eval_time += time.perf_counter() - t_eval
                entry = {"event": "eval", "step": step, "epoch": epoch + 1, metric_name: metrics[metric_name],
                         "eval_loss": metrics.get("loss"), "elapsed_s": time.perf_counter() - t0}
                train_log.append(entry)
                history.append(entry)
                echo(f"epoch {epoch + 1}: eval {metric_name} {metrics[metric_name]:.4f}")
                score = metrics[metric_name]
                improved = best["score"] is None or (score > best["score"] if higher else score < best["score"])
                if sharded and world > 1:  # the main process decides: a last-bit difference must not split them
                    from accelerate.utils import broadcast_object_list

                    improved = broadcast_object_list([improved])[0]
                if improved:
                    best.update(score=score, state=full_trainable_state(raw) if sharded else raw.trainable_state(),
                                metrics=metrics, epoch=epoch + 1)
        if stop:
            break
        save_checkpoint(epoch + 1, 0)
    bar.close()
    train_time = time.perf_counter() - t0 - eval_time  # optimisation only; evaluation reported apart

    if world > 1:  # the throughput of all processes together
        tokens = int(accelerator.reduce(torch.tensor(float(tokens), device=accelerator.device), reduction="sum"))
    if not accelerator.is_main_process and not sharded:
        return raw
    # from here on the main process alone, or (sharded parameters) every process in step
    if best["state"] is not None:  # keep the best epoch, not merely the last
        if sharded:
            load_trainable_state(raw, best["state"])
        else:
            raw.load_state_dict(best["state"], strict=False)
    elif average is not None:  # no evaluation data: the average of the last steps
        average.copy_to_params()
    final = dict(best["metrics"] or {})
    if t_cfg.calibration == "auto":
        final = _calibrate(raw, task, final, cal_ex, eval_ex, eval_enc, train_name, eval_name)
    whole = full_trainable_state(raw) if sharded else None  # what the run directory holds
    if not accelerator.is_main_process:
        return raw
    final.update(best_epoch=best["epoch"], history=history, train_time_s=train_time, eval_time_s=eval_time, steps=step,
                 train_real_tokens_per_s=tokens / max(train_time, 1e-9), eval_data=eval_name,
                 train_examples=len(train_ex), truncated_train_examples=n_cut, recipe=recipe.line(total_steps))
    raw.metrics, raw.train_log = final, train_log
    raw.eval()
    if output is not None:
        raw.save_pretrained(output, overwrite, state=whole)
        if ckpt is not None:
            ckpt.remove()  # the run directory is complete: nothing left to resume
    return raw
