"""What a job asks a SLURM cluster for, in the resource names of snakemake-executor-plugin-slurm.

GPU counts come from the config sections that change the math (train.num_gpus/num_nodes, an engine's
tensor_parallel_size); CPUs, memory and runtime from `resources.rules`. Account and partitions are site
settings from the environment: the profile's (slurm/config.yaml) for every job, and a GPU partition, when
the site has one, for the jobs that use GPUs.
"""

from __future__ import annotations

import re
import subprocess

from aft.pipeline.config import ResourcesConfig


def job_resources(
    res: ResourcesConfig, rule: str, gpus: int = 0, nodes: int = 1, gpu_partition: str | None = None
) -> dict[str, object]:
    """Snakemake `resources:` of one job of `rule` using `gpus` GPUs in all over `nodes` nodes. A GPU job
    goes to `gpu_partition` when the site names one (AFT_SLURM_GPU_PARTITION); every other job to the
    profile's partition (AFT_SLURM_PARTITION), so no CPU job waits in, or holds, the GPU queue."""
    r = res.rules[rule]
    out: dict[str, object] = {"cpus_per_task": r.cpus, "mem_mb": r.mem_mb, "runtime": r.runtime_min}
    if gpus and gpu_partition:
        out["slurm_partition"] = gpu_partition
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


GPU_PARTITION_ENV = "AFT_SLURM_GPU_PARTITION"  # optional: unset, GPU jobs use the profile's partition

SITE_KEYS = {  # profile key -> where a user finds the value
    "slurm_account": "sacctmgr -n show assoc user=$USER format=account",
    "slurm_partition": "sinfo -s",
}
_VAR = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?")


def site_problems(raw: dict[str, str], environ: dict[str, str], accounts: list[str] | None) -> list[str]:
    """What is wrong with the profile's account and partition before anything is submitted.

    `raw` holds the profile's default-resources expressions (e.g. "'$AFT_SLURM_ACCOUNT'"), `accounts`
    the user's SLURM accounts (None: unknown, not checked). The executor plugin (2.6.1) waits forever
    when its own account check fails, so the workflow checks first."""
    problems = []
    for key, hint in SITE_KEYS.items():
        if key not in raw:
            continue
        unset = [v for v in _VAR.findall(raw[key]) if not environ.get(v)]
        if unset:
            problems.append(
                f"{key} = {raw[key]}: {', '.join(unset)} not set; expected e.g."
                f" `export {unset[0]}=<{key.removeprefix('slurm_')}>` (see `{hint}`)"
            )
    if accounts is not None and "slurm_account" in raw and not problems:
        resolved = _VAR.sub(lambda m: environ.get(m.group(1), m.group(0)), raw["slurm_account"])
        account = resolved.strip("'\"")
        if account and account not in accounts:
            problems.append(
                f"slurm_account = {account!r}: not an account of this user; expected one of {accounts}"
            )
    return problems


def slurm_accounts(user: str) -> list[str] | None:
    """The user's SLURM accounts from sacctmgr, or None where there is no accounting to ask."""
    try:
        out = subprocess.run(
            ["sacctmgr", "-n", "-P", "show", "assoc", f"user={user}", "format=account"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    return sorted({line.strip() for line in out.stdout.splitlines() if line.strip()})
