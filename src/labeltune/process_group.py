"""A multi-process run's process group ends before the interpreter does.

Under ``torchrun`` / ``accelerate launch`` Accelerate starts the group (gloo on CPUs, NCCL on GPUs) and
never destroys it; torch asks that it be destroyed before exit (it warns for NCCL), and left to the
interpreter's teardown the backends' threads are torn down with it -- the likely cause of a rare abort
at exit ("terminate called without an active exception") of a two-process run that had succeeded,
seen once under load in the tests. So the first labeltune call that joins a group registers one exit
hook that destroys it if it is still alive then (a script's own use of the group in the same process is
unaffected: the hook runs at exit)."""

from __future__ import annotations

import atexit
import functools

__all__ = ["end_process_group_at_exit"]


def _destroy_if_alive() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


@functools.cache  # once per process
def end_process_group_at_exit() -> None:
    """Register the exit hook that destroys the default process group."""
    atexit.register(_destroy_if_alive)
