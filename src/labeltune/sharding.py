"""Training with sharded parameters: FSDP2 and DeepSpeed ZeRO-3 (through ``accelerate launch``).

What differs from one process or DDP, where every process holds every parameter:

- a forward pass is a collective (each layer's parameters are gathered from all processes), so every
  process scores every evaluation example, in the same batches (``raw.logits`` on all of them)
  instead of a share each — the metrics, and so the choice of the best epoch, are then the same on
  every process without a broadcast;
- the trainable parameters (LoRA + head, small) are gathered whole, one by one, on every process
  (``full_trainable_state``) to keep the best epoch and to write the run directory: what peers get
  wrong (peft#310, DeepSpeed#4295) is saving a process's shard as if it were the whole;
- loading them back scatters each to its shards (``load_trainable_state``).

Checkpoints (``--checkpoint-every`` / ``--resume``) are written by the main process from its own
optimizer state, which these setups shard too: they are refused there (``check_supported``).
"""

from __future__ import annotations

from typing import Any

import torch

from .errors import ConfigError

__all__ = ["params_sharded", "optimizer_sharded", "check_supported", "configure_deepspeed", "full_trainable_state",
           "load_trainable_state"]


def params_sharded(accelerator) -> bool:
    """Whether parameters are split across processes (FSDP, DeepSpeed ZeRO stage 3)."""
    from accelerate.utils import DistributedType

    kind = accelerator.distributed_type
    if kind == DistributedType.FSDP:
        return True
    if kind == DistributedType.DEEPSPEED:
        return int(accelerator.state.deepspeed_plugin.zero_stage or 0) == 3
    return False


def optimizer_sharded(accelerator) -> bool:
    """Whether the optimizer's state is split across processes (FSDP, any DeepSpeed ZeRO stage)."""
    from accelerate.utils import DistributedType

    return accelerator.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED)


def check_supported(accelerator, checkpoint_every: int, resume: bool) -> None:
    from accelerate.utils import DistributedType

    if accelerator.distributed_type == DistributedType.FSDP and getattr(accelerator.state.fsdp_plugin,
                                                                         "fsdp_version", 1) != 2:
        raise ConfigError("labeltune trains with FSDP version 2 (fully_shard: each parameter gathered on its own); "
                          "set fsdp_version: 2 in the accelerate config (examples/distributed/fsdp.yaml)")
    if optimizer_sharded(accelerator) and (checkpoint_every or resume):
        raise ConfigError(f"--checkpoint-every / --resume are not supported under {accelerator.distributed_type.value}"
                          " (the optimizer state is sharded); train with DDP (accelerate launch --multi_gpu) to "
                          "checkpoint, or without them")


def configure_deepspeed(accelerator) -> None:
    """labeltune plans its own batches (no DataLoader reaches ``prepare``), so DeepSpeed cannot infer a
    micro-batch size: one planned batch a step on each process."""
    from accelerate.utils import DistributedType

    if accelerator.distributed_type == DistributedType.DEEPSPEED:
        config = accelerator.state.deepspeed_plugin.deepspeed_config
        if config.get("train_micro_batch_size_per_gpu", "auto") == "auto":
            config["train_micro_batch_size_per_gpu"] = 1


def _whole(param: torch.Tensor) -> torch.Tensor:
    """The whole value of one parameter on this process (a collective under sharding)."""
    if hasattr(param, "ds_id"):  # DeepSpeed ZeRO-3: partitioned; gather this one parameter
        import deepspeed

        with deepspeed.zero.GatheredParameters([param], modifier_rank=None):
            return param.detach().cpu().clone()
    value = param.detach()
    if hasattr(value, "full_tensor"):  # FSDP2: a DTensor sharded over the mesh
        value = value.full_tensor()
    return value.cpu().clone()


def _resharded(model: torch.nn.Module) -> None:
    """FSDP2 leaves the root module's parameters gathered after a forward without backward (evaluation);
    shard them again, so each parameter is a DTensor and every process takes the same path."""
    for module in model.modules():
        if hasattr(module, "reshard") and type(module).__name__.startswith("FSDP"):
            module.reshard()


def full_trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """LoRA + head parameters, whole, on every process. Every process must call it (same order)."""
    _resharded(model)
    return {name: _whole(p) for name, p in model.named_parameters() if p.requires_grad}


def load_trainable_state(model: torch.nn.Module, state: dict[str, Any]) -> None:
    """Set the trainable parameters from whole values (``full_trainable_state``); each process keeps its
    shard. Every process must call it with the same ``state``."""
    _resharded(model)
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in state.items():
            p = params[name]
            if hasattr(p, "ds_id"):
                import deepspeed

                with deepspeed.zero.GatheredParameters([p], modifier_rank=0):
                    p.data.copy_(value.to(p.device, p.dtype))
            elif hasattr(p, "device_mesh"):  # DTensor: this process's shard, cut from its own copy (no messages)
                from torch.distributed.tensor import distribute_tensor

                shard = distribute_tensor(value.to(p.device, p.dtype), p.device_mesh, p.placements, src_data_rank=None)
                p.to_local().copy_(shard.to_local())  # local to local: no DTensor dispatch, no collective
            else:
                p.copy_(value.to(p.device, p.dtype))
