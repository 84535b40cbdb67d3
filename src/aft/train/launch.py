"""How a training job is launched: plain python on CPU, torchrun over one node's GPUs, and under
`srun` one torchrun per node with the rendezvous taken from the SLURM allocation.

Usage (what a multi-node train_model job runs inside each srun task; runnable by hand in an allocation):
    python -m aft.train.launch --nproc-per-node G -m aft.stages.train_model ARGS...
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

from aft.pipeline.config import TrainConfig

PORT_BASE = 20000  # master port = PORT_BASE + job id mod PORT_SPAN: jobs sharing a node do not collide
PORT_SPAN = 20000


def train_launcher(cfg: TrainConfig) -> str:
    """The command prefix for `-m aft.stages.train_model` (DeepSpeed needs a distributed launcher)."""
    if cfg.num_gpus == 0 and cfg.deepspeed is None:
        return "python"
    if cfg.num_nodes == 1:
        return f"torchrun --standalone --nproc_per_node={max(cfg.num_gpus, 1)}"
    n = cfg.num_nodes
    return (
        f"srun --nodes={n} --ntasks={n} --ntasks-per-node=1 --kill-on-bad-exit=1"
        f" python -m aft.train.launch --nproc-per-node={cfg.gpus_per_node}"
    )


def expand_nodelist(nodelist: str) -> list[str]:
    """SLURM's compact node list ('gpu[01-03,07],login1') as host names, through `scontrol`."""
    out = subprocess.run(
        ["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True, check=True
    )
    return out.stdout.split()


def torchrun_args(env: dict[str, str], hosts: list[str], nproc_per_node: int) -> list[str]:
    """torchrun's static rendezvous for this srun task: node rank from SLURM, master on the first node."""
    missing = [k for k in ("SLURM_NODEID", "SLURM_JOB_ID") if k not in env]
    if missing:
        raise RuntimeError(f"aft.train.launch runs inside an srun task; {missing} not set in the environment")
    port = PORT_BASE + int(env["SLURM_JOB_ID"]) % PORT_SPAN
    return [
        f"--nnodes={len(hosts)}",
        f"--node_rank={env['SLURM_NODEID']}",
        f"--nproc_per_node={nproc_per_node}",
        f"--master_addr={hosts[0]}",
        f"--master_port={port}",
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--nproc-per-node", type=int, required=True)
    args, rest = parser.parse_known_args(argv)
    nodelist = os.environ.get("SLURM_STEP_NODELIST") or os.environ.get("SLURM_JOB_NODELIST")
    if not nodelist:
        parser.error("no SLURM_STEP_NODELIST / SLURM_JOB_NODELIST: run under srun inside an allocation")
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        *torchrun_args(dict(os.environ), expand_nodelist(nodelist), args.nproc_per_node),
        *rest,
    ]
    os.execv(sys.executable, cmd)


if __name__ == "__main__":
    main()
