"""Cluster requests per job (aft.pipeline.cluster) and the multi-node launcher (aft.train.launch)."""

from __future__ import annotations

import pytest

from aft.pipeline.cluster import job_resources
from aft.pipeline.config import JOB_RULES, ResourcesConfig, TrainConfig
from aft.train.launch import torchrun_args, train_launcher
from tests.conftest import load_yaml

RULES = {r: {"cpus": 2, "mem_mb": 4000, "runtime_min": 30} for r in JOB_RULES}


def resources(gpu_model: str | None = None, **rules) -> ResourcesConfig:
    return ResourcesConfig(gpu_model=gpu_model, rules=RULES | rules)


def train(**over) -> TrainConfig:
    return TrainConfig.model_validate(load_yaml("config/paper.yaml")["train"] | over)


@pytest.mark.parametrize(
    ("gpus", "nodes", "model", "expected"),
    [
        pytest.param(0, 1, None, {}, id="cpu"),
        pytest.param(8, 1, None, {"gpu": 8, "tasks_per_gpu": 0}, id="one-node"),
        pytest.param(4, 1, "h100", {"gpu": 4, "tasks_per_gpu": 0, "gpu_model": "h100"}, id="one-node-typed"),
        pytest.param(
            16,
            2,
            "a100",
            {"nodes": 2, "tasks": 2, "mpi": "srun", "tasks_per_gpu": 0, "gres": "gpu:a100:8"},
            id="two-nodes",
        ),
        pytest.param(
            6,
            3,
            None,
            {"nodes": 3, "tasks": 3, "mpi": "srun", "tasks_per_gpu": 0, "gres": "gpu:2"},
            id="three",
        ),
    ],
)
def test_job_resources(gpus, nodes, model, expected):
    res = resources(model, train_model={"cpus": 64, "mem_mb": 480000, "runtime_min": 1440})
    got = job_resources(res, "train_model", gpus, nodes)
    assert got == {"cpus_per_task": 64, "mem_mb": 480000, "runtime": 1440} | expected


def test_gpu_jobs_go_to_the_sites_gpu_partition_and_cpu_jobs_never_do():
    res = resources(train_model={"cpus": 8, "mem_mb": 1000, "runtime_min": 10})
    assert job_resources(res, "train_model", 8, 1, gpu_partition="gpu-h100")["slurm_partition"] == "gpu-h100"
    assert job_resources(res, "train_model", 16, 2, gpu_partition="gpu")["slurm_partition"] == "gpu"
    assert "slurm_partition" not in job_resources(res, "train_model", 0, 1, gpu_partition="gpu")
    assert "slurm_partition" not in job_resources(res, "train_model", 8, 1)  # none named: the profile's


def test_gpus_must_split_evenly_over_nodes():
    with pytest.raises(ValueError, match="train_model: 6 GPUs do not split evenly over 4 nodes"):
        job_resources(resources(), "train_model", 6, 4)


def test_every_rule_needs_resources():
    with pytest.raises(ValueError, match=r"missing \['make_report'\]"):
        ResourcesConfig(gpu_model=None, rules={r: RULES[r] for r in JOB_RULES if r != "make_report"})


def test_unknown_rule_and_bad_gpu_model_are_rejected():
    with pytest.raises(ValueError, match="trainmodel"):
        ResourcesConfig(gpu_model=None, rules=RULES | {"trainmodel": RULES["train_model"]})
    with pytest.raises(ValueError, match="gpu_model"):
        ResourcesConfig(gpu_model="h100; rm -rf /", rules=RULES)


def test_nodes_need_an_even_share_of_gpus():
    with pytest.raises(ValueError, match="num_nodes=2 needs num_gpus to be a positive multiple of it"):
        train(num_gpus=3, num_nodes=2, per_device_batch_size=1, global_batch_size=6)
    with pytest.raises(ValueError, match="got num_gpus=0"):
        train(num_gpus=0, num_nodes=2, bf16=False)
    assert train(num_gpus=16, num_nodes=2).gpus_per_node == 8


@pytest.mark.parametrize(
    ("over", "expected"),
    [
        pytest.param({"num_gpus": 0, "deepspeed": None, "bf16": False}, "python", id="cpu"),
        pytest.param({"num_gpus": 8}, "torchrun --standalone --nproc_per_node=8", id="one-node"),
        pytest.param(
            {"num_gpus": 16, "num_nodes": 2},
            "srun --nodes=2 --ntasks=2 --ntasks-per-node=1 --kill-on-bad-exit=1"
            " python -m aft.train.launch --nproc-per-node=8",
            id="two-nodes",
        ),
    ],
)
def test_train_launcher(over, expected):
    assert train_launcher(train(**over)) == expected


def test_torchrun_rendezvous_from_the_srun_task():
    env = {"SLURM_NODEID": "1", "SLURM_JOB_ID": "123457"}
    assert torchrun_args(env, ["gpu07", "gpu08"], 8) == [
        "--nnodes=2",
        "--node_rank=1",
        "--nproc_per_node=8",
        "--master_addr=gpu07",  # the first node of the allocation
        "--master_port=23457",  # 20000 + job id mod 20000
    ]
    with pytest.raises(RuntimeError, match=r"\['SLURM_NODEID'\] not set"):
        torchrun_args({"SLURM_JOB_ID": "1"}, ["a"], 1)


def test_a_vllm_job_needs_as_many_gpus_as_its_tensor_parallelism(monkeypatch):
    from aft.gen.engine import check_gpus

    check_gpus(4, 4)
    check_gpus(1, 8)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    with pytest.raises(RuntimeError, match=r"tensor_parallel_size=4 but this job sees 2 GPU\(s\).*'0,1'"):
        check_gpus(4, 2)


RAW = {"slurm_account": "'$AFT_SLURM_ACCOUNT'", "slurm_partition": "'$AFT_SLURM_PARTITION'"}


def test_site_settings_resolve_before_anything_is_submitted():
    from aft.pipeline.cluster import site_problems

    ok = {"AFT_SLURM_ACCOUNT": "proj1", "AFT_SLURM_PARTITION": "gpu"}
    assert site_problems(RAW, ok, ["proj1", "proj2"]) == []
    assert site_problems(RAW, ok, None) == []  # no accounting to ask: not checked
    unset = site_problems(RAW, {"AFT_SLURM_PARTITION": "gpu"}, ["proj1"])
    assert unset == [
        "slurm_account = '$AFT_SLURM_ACCOUNT': AFT_SLURM_ACCOUNT not set; expected e.g."
        " `export AFT_SLURM_ACCOUNT=<account>` (see `sacctmgr -n show assoc user=$USER format=account`)"
    ]
    wrong = site_problems(RAW, ok | {"AFT_SLURM_ACCOUNT": "proj9"}, ["proj1", "proj2"])
    assert wrong == [
        "slurm_account = 'proj9': not an account of this user; expected one of ['proj1', 'proj2']"
    ]
    # a site profile that writes the values itself needs no variable
    assert site_problems({"slurm_account": "'proj1'"}, {}, ["proj1"]) == []
