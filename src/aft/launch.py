"""How a training job is launched: plain python on CPU, torchrun over the GPUs otherwise."""

from __future__ import annotations

from aft.config import TrainConfig


def train_launcher(cfg: TrainConfig) -> str:
    """The command prefix for `-m aft.stages.train_model` (DeepSpeed needs a distributed launcher)."""
    if cfg.num_gpus == 0 and cfg.deepspeed is None:
        return "python"
    return f"torchrun --standalone --nproc_per_node={max(cfg.num_gpus, 1)}"
