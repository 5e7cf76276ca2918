"""`labeltune demo`: fine-tune the embedded SmolLM2-135M on the bundled financial-tweet sample."""

from __future__ import annotations

import os
import time
from pathlib import Path

from .config import RunConfig
from .errors import ConfigError

__all__ = ["run_demo", "examples_dir"]


def examples_dir() -> Path:
    """examples/ of the source checkout (the demo data is not part of the wheel)."""
    path = Path(os.environ.get("LABELTUNE_EXAMPLES", Path(__file__).resolve().parents[2] / "examples"))
    if not (path / "twitter_fin" / "train.csv").exists():
        raise ConfigError(f"demo data not found under {path}; run from a clone of the labeltune repository "
                          "or set LABELTUNE_EXAMPLES to its examples/ folder")
    return path


def run_demo(output: Path, epochs: float | None = None, model: str = "default", progress: bool = True) -> dict:
    from rich.console import Console
    from rich.table import Table

    from .training import fit

    data = examples_dir() / "twitter_fin"
    console = Console()
    console.print(f"[bold]labeltune demo[/]: SmolLM2-135M-Instruct (embedded) + LoRA + label head on "
                  f"{data}/train.csv (800 tweets: bearish / bullish / neutral)")
    cfg = RunConfig.from_dict({"model": {"name": model}, "train": {"epochs": epochs}})
    t0 = time.perf_counter()
    metrics = fit(cfg, str(data / "train.csv"), str(data / "dev.csv"), output, overwrite=True, progress=progress,
                  echo=lambda s: console.print(s)).metrics
    table = Table(title=f"dev set ({metrics['n']} tweets), best epoch {metrics['best_epoch']}")
    for col in ("label", "precision", "recall", "f1", "support"):
        table.add_column(col, justify="right")
    for name, row in metrics["per_class"].items():
        table.add_row(name, f"{row['precision']:.3f}", f"{row['recall']:.3f}", f"{row['f1']:.3f}", str(row["support"]))
    table.add_row("[bold]accuracy", "", "", f"[bold]{metrics['accuracy']:.3f}", "")
    table.add_row("[bold]macro F1", "", "", f"[bold]{metrics['macro_f1']:.3f}", "")
    console.print(table)
    console.print(f"trained in {metrics['train_time_s']:.0f} s ({metrics['train_real_tokens_per_s']:.0f} real tokens/s), "
                  f"total {time.perf_counter() - t0:.0f} s")
    console.print(f"run directory: {output}\nplots: {output / 'plots' / 'learning_curves.png'}, "
                  f"{output / 'plots' / 'confusion_matrix.png'}")
    console.print(f"next: labeltune predict {output} --text \"$TSLA beats estimates, shares jump\"")
    return metrics
