"""The training schedule sized to the data, for every value the user did not fix.

A fixed schedule (the 0.2 default: batch 32, 2.5 epochs) gives 300 examples ~25 optimiser steps, too
few to learn a tagging task (F1 0.00 where 100 steps reach 0.98), and 100,000 examples hours of
passes they do not need. The recipe plans optimiser steps first, then the passes that give them:

    steps       2.5 passes at batch 32 (the schedule measured on SST-2 at 2,000 examples,
                docs/BENCHMARKS.md), but at least MIN_STEPS and at most MAX_STEPS
    batch       8 below 250 examples, 16 below 1,500, else 32 (halved, down to 4, while examples
                average more than 256 tokens: the token budget, not the count, bounds memory)
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

    def line(self, steps: int | None = None) -> str:
        """``300 examples (mean 24 tokens) -> batch 16 (recipe), 8 epochs = 150 steps, lr 0.001 (recipe),
        warm-up 10% (recipe)``: what was chosen and whether the user or the recipe chose it."""
        def said(name, text):
            return f"{text} ({'set' if self.fixed[name] else 'recipe'})"

        return (f"{self.n} examples (mean {self.mean_tokens:.0f} tokens) -> {said('batch', f'batch {self.batch_size}')}, "
                f"{said('epochs', f'{self.epochs:g} epochs')} = {steps or self.steps} steps, "
                f"{said('lr', f'lr {self.lr:g}')}, {said('warm-up', f'warm-up {self.warmup_ratio:.0%}')}")


def _batch(n: int, mean_tokens: float) -> int:
    batch = 8 if n < 250 else 16 if n < 1500 else 32
    while mean_tokens > LONG_EXAMPLE and batch > 4:
        batch //= 2
        mean_tokens /= 2
    return batch


def size_recipe(n: int, mean_tokens: float, batch_size: int | None = None, epochs: float | None = None,
                lr: float | None = None, warmup_ratio: float | None = None, grad_accum: int = 1) -> Recipe:
    """The schedule for ``n`` training examples of ``mean_tokens`` tokens; given values are kept."""
    if n < 1:
        raise ValueError("a recipe needs at least one example")
    fixed = {"batch": batch_size is not None, "epochs": epochs is not None, "lr": lr is not None,
             "warm-up": warmup_ratio is not None}
    batch = batch_size if batch_size is not None else _batch(n, mean_tokens)
    per_epoch = n / (batch * grad_accum)  # optimiser steps a pass
    if epochs is None:
        planned = min(MAX_STEPS, max(MIN_STEPS, math.ceil(PASSES_AT_32 * n / 32)))
        epochs = min(MAX_EPOCHS, planned / per_epoch)
        epochs = round(epochs, 1) if epochs >= 10 else round(epochs, 2) if epochs >= 0.1 else round(epochs, 4)
    lr = LR if lr is None else lr
    warmup = WARMUP if warmup_ratio is None else warmup_ratio
    steps = max(1, round(per_epoch * epochs))
    return Recipe(n, mean_tokens, batch, float(epochs), lr, warmup, steps, fixed)
