"""What a job asks a SLURM cluster for, in the resource names of snakemake-executor-plugin-slurm.

GPU counts come from the config sections that change the math (train.num_gpus/num_nodes, an engine's
tensor_parallel_size); CPUs, memory and runtime from `resources.rules`. Account and partition are not
here: they are site settings of the profile (slurm/config.yaml).
"""

from __future__ import annotations

from aft.config import ResourcesConfig


def job_resources(res: ResourcesConfig, rule: str, gpus: int = 0, nodes: int = 1) -> dict[str, object]:
    """Snakemake `resources:` of one job of `rule` using `gpus` GPUs in all over `nodes` nodes."""
    r = res.rules[rule]
    out: dict[str, object] = {"cpus_per_task": r.cpus, "mem_mb": r.mem_mb, "runtime": r.runtime_min}
    if gpus and gpus % nodes:
        raise ValueError(f"{rule}: {gpus} GPUs do not split evenly over {nodes} nodes")
    if nodes > 1:
        # one task per node, started by the rule's own `srun` (plugin: mpi jobs run the command as it
        # is); GPUs per node as gres, since --gpus=N would let SLURM place them unevenly
        model = f"{res.gpu_model}:" if res.gpu_model else ""
        out |= {"nodes": nodes, "tasks": nodes, "mpi": "srun", "tasks_per_gpu": 0}
        if gpus:
            out["gres"] = f"gpu:{model}{gpus // nodes}"
    elif gpus:
        # one launcher process per job (torchrun / vLLM spawn their own workers): no --ntasks-per-gpu
        out |= {"gpu": gpus, "tasks_per_gpu": 0}
        if res.gpu_model:
            out["gpu_model"] = res.gpu_model
    return out
