"""Training checkpoints, so that a killed run continues where it stopped (``labeltune train ... --resume``).

    OUTPUT.checkpoints/step-00000120/
        trainable.safetensors   LoRA + head parameters (what training changes)
        state.pt                optimizer, scheduler, RNG states, the best epoch's parameters, the loop's
                                position (epoch, batches done in it, step) and record (history, log)
        progress.json           the same position, readable; ``fingerprint`` of settings and data

Written while training (every ``checkpoint_every`` steps, and at each epoch's end) into a temporary
folder renamed into place, so a checkpoint folder is complete or absent; the newest ``keep`` are kept.
A failed write (disk full, no permission) removes its temporary folder, keeps the previous checkpoints
and raises a CheckpointError naming the path and the reason. The folder is removed once the run
directory is written. Only the main process writes.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any

import torch

from .errors import LabeltuneError

__all__ = ["Checkpoints", "CheckpointError", "checkpoint_folder"]

PREFIX = "step-"


class CheckpointError(LabeltuneError, OSError):
    """A checkpoint could not be written or read; names the path and the reason."""


def checkpoint_folder(output: str | Path) -> Path:
    """Where the checkpoints of the run written to ``output`` live (beside it: the run directory itself
    appears only when training ends)."""
    output = Path(output)
    return output.parent / f"{output.name}.checkpoints"


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(_as_tuple(state["python"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuple(x):  # random.setstate wants the nested tuples it gave (a round trip may turn them to lists)
    return tuple(_as_tuple(v) for v in x) if isinstance(x, (list, tuple)) else x


class Checkpoints:
    def __init__(self, folder: Path, keep: int = 2):
        self.folder, self.keep = Path(folder), max(1, keep)

    def all(self) -> list[Path]:
        """Complete checkpoints, oldest first (temporary folders of an interrupted write are skipped)."""
        if not self.folder.is_dir():
            return []
        done = [p for p in self.folder.iterdir() if p.is_dir() and p.name.startswith(PREFIX)
                and p.name[len(PREFIX):].isdigit() and (p / "progress.json").exists()]
        return sorted(done, key=lambda p: int(p.name[len(PREFIX):]))

    def latest(self) -> Path | None:
        found = self.all()
        return found[-1] if found else None

    def save(self, step: int, trainable: dict[str, torch.Tensor], state: dict[str, Any], progress: dict[str, Any]) -> Path:
        """Write checkpoint ``step`` atomically; drop all but the newest ``keep``."""
        from safetensors.torch import save_file

        final = self.folder / f"{PREFIX}{step:08d}"
        tmp = self.folder / f".{final.name}.tmp"
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            if tmp.exists():
                shutil.rmtree(tmp)
            tmp.mkdir()
            save_file({k: v.detach().cpu().contiguous() for k, v in trainable.items()}, tmp / "trainable.safetensors")
            torch.save(state, tmp / "state.pt")
            (tmp / "progress.json").write_text(json.dumps(progress, indent=1, default=str), encoding="utf-8")
            if final.exists():
                shutil.rmtree(final)
            tmp.rename(final)
        except OSError as e:
            shutil.rmtree(tmp, ignore_errors=True)
            previous = self.latest()
            raise CheckpointError(f"could not write the checkpoint {final}: {e.strerror or e}. "
                                  + (f"The previous checkpoint {previous} is intact; " if previous else "")
                                  + "free space or fix permissions, then rerun with --resume") from e
        for old in self.all()[: -self.keep]:
            shutil.rmtree(old, ignore_errors=True)
        return final

    @staticmethod
    def load(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any], dict[str, Any]]:
        from safetensors.torch import load_file

        try:
            trainable = load_file(path / "trainable.safetensors")
            state = torch.load(path / "state.pt", weights_only=False)  # our own file (optimizer, RNG states)
            progress = json.loads((path / "progress.json").read_text(encoding="utf-8"))
        except (OSError, RuntimeError, ValueError) as e:
            raise CheckpointError(f"could not read the checkpoint {path}: {e}; remove it to resume from the one "
                                  "before") from e
        return trainable, state, progress

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
