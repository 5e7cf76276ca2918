"""A multi-process run's process group ends before the interpreter does.

Under ``torchrun`` / ``accelerate launch`` Accelerate starts the group (gloo on CPUs, NCCL on GPUs) and
never destroys it. Left to the interpreter's teardown, the backends' threads can be destroyed while
still joinable: the process aborts ("terminate called without an active exception") after a run that
succeeded, which torchrun reports as a failure. So the first labeltune call that joins a group
registers one exit hook that destroys it, if it is still alive then (a script's own later use of the
group in the same process is unaffected: the hook runs at exit)."""

from __future__ import annotations

import atexit

__all__ = ["end_process_group_at_exit"]

_registered = False


def _destroy_if_alive() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def end_process_group_at_exit() -> None:
    """Register (once per process) the exit hook that destroys the default process group."""
    global _registered
    if not _registered:
        atexit.register(_destroy_if_alive)
        _registered = True
