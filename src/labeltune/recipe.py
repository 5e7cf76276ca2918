"""The training schedule sized to the data, for every value the user did not fix.

A fixed schedule (the 0.2 default: batch 32, 2.5 epochs) gives 300 examples ~25 optimiser steps, too
few to learn a tagging task (F1 0.00 where 100 steps reach 0.98), and 100,000 examples hours of
passes they do not need. The recipe plans optimiser steps first, then the passes that give them:

    steps       2.5 passes at batch 32 (the schedule measured on SST-2 at 2,000 examples,
                docs/BENCHMARKS.md), but at least MIN_STEPS and at most MAX_STEPS
    batch       8 below 250 examples, 16 below 1,500, else 32 (halved, down to 4, while examples
                average more than 256 tokens: the token budget, not the count, bounds memory)
    floor       a task may ask for at least ``min_passes`` passes (the token task: 10 passes of 16
                sentences, at most PASS_FLOOR_STEPS steps; CoNLL-2003 at 1,000 sentences: 75.3 entity
                F1 with 150 steps, 84.1 with 625, docs/RESULTS.md)
    epochs      steps x batch / examples, at most MAX_EPOCHS (fractions of an epoch allowed)
    lr          1e-3 (LoRA; the head gets lr x head_lr_scale), warm-up 10% of the steps

So 100 examples get 12 passes of 13 steps (150 steps), 300 get 8 passes at batch 16, 2,000 get 2.5
passes of 63 steps (as in 0.2), 1,000,000 get 0.32 passes (10,000 steps). Steps never fall as the
data grow (monotone) and never exceed MAX_STEPS; explicit values always win. The resolved values are
saved in the run's config.json; ``Recipe.line()`` says what was chosen and why.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["Recipe", "size_recipe", "MIN_STEPS", "MAX_STEPS"]

MIN_STEPS, MAX_STEPS = 150, 10_000
BATCH_THRESHOLDS = (250, 1500)  # batch 8 below the first, 16 below the second, else 32
PASS_FLOOR_STEPS = 640  # a task's min_passes floor never asks for more steps than this
FLOOR_BATCH = 16  # min_passes counts passes of this many examples a step (the recipe's batch at 250-1,499)
PASSES_AT_32 = 2.5
MAX_EPOCHS = 30.0
LR, WARMUP = 1e-3, 0.1
LONG_EXAMPLE = 256  # mean tokens above which the batch is halved


@dataclass
class Recipe:
    n: int
    mean_tokens: float
    batch_size: int
    epochs: float
    lr: float
    warmup_ratio: float
    steps: int  # optimiser steps planned (the training loop counts its batches exactly)
    fixed: dict  # which values the user set
    min_passes: float = 0.0  # the task's floor on passes (said in the line where it decided the epochs)
    floor_applied: bool = False

    def line(self, steps: int | None = None) -> str:
        """``300 examples (mean 24 tokens) -> batch 16 (recipe), 8 epochs = 150 steps, lr 0.001 (recipe),
        warm-up 10% (recipe)``: what was chosen and whether the user or the recipe chose it."""
        def said(name, text):
            return f"{text} ({'set' if self.fixed[name] else 'recipe'})"

        epochs = said("epochs", f"{self.epochs:.3g} epochs")
        if self.floor_applied:  # the task's floor decided them: say which
            epochs = epochs[:-1] + (f": this task's floor, {self.min_passes:g} passes of {FLOOR_BATCH}, "
                                    f"at most {PASS_FLOOR_STEPS} steps)")
        return (f"{self.n} examples (mean {self.mean_tokens:.0f} tokens) -> {said('batch', f'batch {self.batch_size}')}, "
                f"{epochs} = {steps or self.steps} steps, "
                f"{said('lr', f'lr {self.lr:g}')}, {said('warm-up', f'warm-up {self.warmup_ratio:.0%}')}")


def _batch(n: int, mean_tokens: float) -> int:
    batch = 8 if n < BATCH_THRESHOLDS[0] else 16 if n < BATCH_THRESHOLDS[1] else 32
    while mean_tokens > LONG_EXAMPLE and batch > 4:
        batch //= 2
        mean_tokens /= 2
    return batch


def _planned_steps(n: int, per_step: int, min_passes: float) -> int:
    """Optimiser steps for ``n`` examples: 2.5 passes at batch 32, at least MIN_STEPS, at least
    ``min_passes`` passes of ``per_step`` examples a step (that floor at most PASS_FLOOR_STEPS), at most
    MAX_STEPS. Each term grows with ``n``, so more data never means fewer steps."""
    floor = min(PASS_FLOOR_STEPS, math.ceil(min_passes * n / per_step)) if min_passes else 0
    return min(MAX_STEPS, max(MIN_STEPS, math.ceil(PASSES_AT_32 * n / 32), floor))


def size_recipe(n: int, mean_tokens: float, batch_size: int | None = None, epochs: float | None = None,
                lr: float | None = None, warmup_ratio: float | None = None, grad_accum: int = 1,
                min_passes: float = 0.0) -> Recipe:
    """The schedule for ``n`` training examples of ``mean_tokens`` tokens; given values are kept.
    ``min_passes``: the task's floor on passes over the data (the token task's; module doc)."""
    if n < 1:
        raise ValueError("a recipe needs at least one example")
    fixed = {"batch": batch_size is not None, "epochs": epochs is not None, "lr": lr is not None,
             "warm-up": warmup_ratio is not None}
    batch = batch_size if batch_size is not None else _batch(n, mean_tokens)
    per_epoch = n / (batch * grad_accum)  # optimiser steps a pass
    floor_applied = False
    if epochs is None:
        # the passes floor counts steps of a fixed size (the batch set, else FLOOR_BATCH): were it the
        # recipe's batch, steps would fall where that batch doubles (249 -> 250, 1,499 -> 1,500 examples)
        per_step = (batch_size or FLOOR_BATCH) * grad_accum
        planned = _planned_steps(n, per_step, min_passes)
        floor_applied = planned > _planned_steps(n, per_step, 0.0)
        epochs = min(MAX_EPOCHS, planned / per_epoch)  # not rounded: rounding would move the steps off the plan
    lr = LR if lr is None else lr
    warmup = WARMUP if warmup_ratio is None else warmup_ratio
    steps = max(1, round(per_epoch * epochs))
    return Recipe(n, mean_tokens, batch, float(epochs), lr, warmup, steps, fixed, min_passes, floor_applied)
