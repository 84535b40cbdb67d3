# Config validation (before any job runs) and the helpers every rule uses.
import json
import os
import re
import shlex

from snakemake.utils import validate

from aft.eval.registry import REGISTRY
from aft.pipeline.cluster import job_resources, site_problems, slurm_accounts
from aft.pipeline.config import config_hash, load_config
from aft.train.launch import train_launcher

try:
    # the pydantic models: every key, type and range, and the cross-field rules (batch math, kinds),
    # with messages naming the key, the value and what was expected
    CFG = load_config(config)
except ValueError as err:
    raise WorkflowError(str(err)) from None
# the committed JSON schema generated from those models (Snakemake's convention; defaults not applied)
validate(config, "../schemas/config.schema.json", set_default=False)

BASES = sorted(CFG.bases)
GRID = CFG.grid


wildcard_constraints:
    base="|".join(BASES),
    variant="sft|aft_off|aft_on",
    mode="direct|agg",
    bench="|".join(REGISTRY),
    pset="off|" + "|".join(f"on_{b}" for b in BASES),
    scatteritem=r"\d+-of-\d+",


def section(**parts):
    """Params holding only the config sections a stage reads: a change elsewhere reruns nothing."""
    return json.dumps(
        {k: v.model_dump(mode="json") for k, v in parts.items()},
        sort_keys=True,
        separators=(",", ":"),
    )


def wildcard_tags(wildcards):
    return ",".join(f"{k}={v}" for k, v in wildcards.items())


def base_model(base):
    """A built base's folder (a DAG input) or a hub id/path (not an input)."""
    b = CFG.bases[base]
    return f"results/build_base/{base}/model" if b.source == "build" else b.model


def gpus(engine):
    """GPUs an in-process vLLM engine takes on a cluster (configs with num_gpus=0 run on CPU)."""
    return engine.tensor_parallel_size if CFG.train.num_gpus else 0


TEACHER_IN_PROCESS = CFG.targets.teacher == "model" and CFG.targets.endpoint is None


# the sharded stages' scatter jobs (their `_part` rules); `--set-scatter build_targets=N` overrides
scattergather:
    build_proposals_on=CFG.on_policy.num_jobs,
    build_targets=CFG.targets.num_jobs,


def target_parts(wildcards):
    """The part files build_targets gathers: teacher=model only (oracle and best_rated have none)."""
    if CFG.targets.teacher != "model":
        return []
    return gather.build_targets(
        f"results/build_targets_part/{wildcards.pset}/{{scatteritem}}/part.json"
    )


def threads_of(rule):
    """CPU cores a job of `rule` uses (config resources.rules; Snakemake caps it at --cores locally)."""
    return CFG.resources.rules[rule].cpus


def resources_of(rule, gpus=0, nodes=1):
    """What a job of `rule` asks the cluster for: config resources.rules + its GPUs (slurm/ profile)."""
    return job_resources(CFG.resources, rule, gpus, nodes)


def check_cluster_site():
    """Under the slurm executor: the profile's account and partition resolve, before any submission."""
    import getpass

    if workflow.executor_plugin is None or workflow.executor_plugin.name != "slurm":
        return
    defaults = workflow.resource_settings.default_resources
    raw = {
        k: str(defaults[k].raw)
        for k in ("slurm_account", "slurm_partition")
        if k in defaults
    }
    problems = site_problems(raw, dict(os.environ), slurm_accounts(getpass.getuser()))
    if problems:
        raise WorkflowError(
            "slurm profile (slurm/config.yaml):\n  " + "\n  ".join(problems)
        )


def base_model_input(wildcards):
    return (
        [base_model(wildcards.base)]
        if CFG.bases[wildcards.base].source == "build"
        else []
    )


def proposals_file(pset):
    if pset == "off":
        return "results/build_proposals_off/proposals.jsonl"
    return f"results/build_proposals_on/{pset.removeprefix('on_')}/proposals.jsonl"


def pset_of(variant, base):
    """The proposal set a training variant learns from (SFT uses the off-policy queries and targets)."""
    return f"on_{base}" if variant == "aft_on" else "off"


def source_files(name):
    """The files `download_source` writes for a configured source, in the source's order."""
    return [f"results/download_source/{name}/{f.name}" for f in SOURCES[name].files]


def source_identity(source, file):
    """What a downloaded file is (repository, revision, path, checksum): the download's rerun trigger.
    Where it is read from is left out, so moving a source to a mirror reruns nothing."""
    src = SOURCES[source]
    one = next(f for f in src.files if f.name == file).model_copy(
        update={"local_path": None}
    )
    return section(source=src.model_copy(update={"files": [one]}))


def source_location(source, file):
    """Where to read a file instead of the network: '--local COPY', '--mirror UPSTREAM_COPY' or ''."""
    from aft.pipeline.sources import local_copy

    src = SOURCES[source]
    local, mirror = local_copy(
        src, next(f for f in src.files if f.name == file), CFG.sources.mirror_dir
    )
    if local is not None:
        return f"--local {shlex.quote(str(local))}"
    return "" if mirror is None else f"--mirror {shlex.quote(str(mirror))}"


SOURCES = CFG.sources.named()
SOURCE_FILES = [path for name in SOURCES for path in source_files(name)]
PSETS = ["off"] + [f"on_{b}" for b in BASES]
JUDGED = expand(
    "results/judge_answers/{base}/{variant}/{mode}/{bench}.json",
    base=BASES,
    variant=GRID.variants,
    mode=GRID.modes,
    bench=GRID.benchmarks,
)
REPORT = ["reports/results.md", "reports/results.png", "reports/results.json"]


def checkpoint_of(w):
    """The checkpoint evaluated instead of training (config `checkpoints`, e.g. a released model), or None."""
    return CFG.checkpoints.get(w.base, {}).get(w.variant)


def answer_model(w):
    """The model that answers: a configured checkpoint (hub id or path), else the trained model folder."""
    ck = checkpoint_of(w)
    return ck.model if ck else f"results/train_model/{w.base}/{w.variant}/model"


def answer_model_input(w):
    """The model folder as a DAG input: the trained one, or a checkpoint's local path; a hub id is none."""
    ck = checkpoint_of(w)
    return [answer_model(w)] if ck is None or ck.is_local else []


def answer_revision(w):
    ck = checkpoint_of(w)
    return f"--revision {ck.revision}" if ck and ck.revision else ""


def bench_files(bench):
    """A benchmark's question files (aft.eval.registry: its questions source), none for the miniature's."""
    name = REGISTRY[bench].questions_source
    return source_files(name) if name else []


def judge_files(role, bench):
    """A benchmark's judge files of one role (`reference`, `judge_prompts`), from its registry entry."""
    name = REGISTRY[bench].judge_sources.get(role)
    return source_files(name) if name else []


def judge_requests(bench):
    endpoint = CFG.judge.endpoint
    return (
        endpoint.concurrency
        if REGISTRY[bench].llm_judged and endpoint is not None
        else 0
    )


def prepare_data_outputs():
    """What prepare_data writes: the miniature also writes the base model's corpus."""
    out = {
        "queries": "results/prepare_data/queries.jsonl",
        "ultrafeedback": "results/prepare_data/ultrafeedback.jsonl",
    }
    if CFG.data.kind == "miniature":
        out["corpus"] = "results/prepare_data/corpus.txt"
    return out


def on_policy_cfg(w):
    """The sections on-policy sampling reads: the scatter jobs and the gather share them."""
    return section(
        proposals=CFG.proposals, on_policy=CFG.on_policy, base=CFG.bases[w.base]
    )
