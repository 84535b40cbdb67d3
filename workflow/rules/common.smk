# Config validation (before any job runs) and the helpers every rule uses.
import json
import os
import re
import shlex

from snakemake.utils import validate

from aft.eval.registry import REGISTRY
from aft.pipeline.artifacts import KEY_PATTERN
from aft.pipeline.jobs import JobGraph, pset_of, settings_json
from aft.pipeline.cluster import (
    GPU_PARTITION_ENV,
    job_resources,
    site_problems,
    slurm_accounts,
)
from aft.pipeline.config import config_hash, load_config, results_hash
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
EXPERIMENT = CFG.experiment


wildcard_constraints:
    base="|".join(BASES),
    variant="sft|aft_off|aft_on",
    mode="|".join(re.escape(m) for m in GRID.modes),
    bench="|".join(REGISTRY),
    pset="off|" + "|".join(f"on_{b}" for b in BASES),
    scatteritem=r"\d+-of-\d+",
    seed=r"\d+",
    key=KEY_PATTERN,
    experiment=EXPERIMENT,
    rm="|".join(re.escape(r) for r in CFG.reward_models) or "(?!)",


def section(**parts):
    """Params holding only the config sections a stage reads: a change elsewhere reruns nothing."""
    return settings_json(**parts)


def wildcard_tags(wildcards):
    return ",".join(f"{k}={v}" for k, v in wildcards.items())


def base_model(base):
    """A base's folder: built, fetched from the hub (both DAG inputs), or a local path (not an input)."""
    b = CFG.bases[base]
    if b.source == "build":
        return f"{job_dir('build_base', base=base)}/model"
    return GRAPH.model_folder(f"bases.{base}") or b.model


def gpus(engine):
    """GPUs an in-process vLLM engine takes on a cluster (configs with num_gpus=0 run on CPU)."""
    return engine.tensor_parallel_size if CFG.train.num_gpus else 0


TEACHER_IN_PROCESS = CFG.targets.teacher == "model" and CFG.targets.endpoint is None


# the sharded stages' scatter jobs (their `_part` rules); `--set-scatter build_targets=N` overrides
scattergather:
    build_proposals_on=CFG.on_policy.num_jobs,
    build_targets=CFG.targets.num_jobs,
    generate_answers=CFG.inference.num_jobs,


def target_parts(wildcards):
    """The part files build_targets gathers: teacher=model only (oracle and best_rated have none)."""
    return [
        f"{job_dir('build_targets_part', pset=wildcards.pset, scatteritem=item)}/part.json"
        for item in GRAPH.target_part_items()
    ]


def answer_parts(wildcards):
    """The part files a generate_answers job gathers (inference.num_jobs > 1), none otherwise."""
    w = judged_job(wildcards)
    return [
        f"{job_dir('generate_answers_part', **w, scatteritem=item)}/part.json"
        for item in GRAPH.answer_part_items()
    ]


def proposal_parts(wildcards):
    """The part files build_proposals_on gathers."""
    return [
        f"{job_dir('build_proposals_on_part', base=wildcards.base, scatteritem=item)}/part.json"
        for item in GRAPH.scatter_items("build_proposals_on")
    ]


def threads_of(rule_name):
    """CPU cores a job of `rule` uses (config resources.rules; Snakemake caps it at --cores locally)."""
    return CFG.resources.rules[rule_name].cpus


def resources_of(rule_name, gpus=0, nodes=1):
    """What a job of `rule` asks the cluster for: config resources.rules + its GPUs (slurm/ profile),
    and for a GPU job the site's GPU partition when it names one."""
    gpu_partition = os.environ.get(GPU_PARTITION_ENV) or None
    return job_resources(CFG.resources, rule_name, gpus, nodes, gpu_partition)


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


def base_folder(base):
    """A built or fetched base's folder as a DAG input; a local path is none."""
    fetched = GRAPH.hub_model(f"bases.{base}") is not None
    return [base_model(base)] if CFG.bases[base].source == "build" or fetched else []


def teacher_model():
    """The in-process teacher's folder (fetched from the hub, or a local path)."""
    return GRAPH.model_folder("targets.model") or CFG.targets.model


def teacher_input(wildcards):
    """The fetched teacher as a DAG input of the jobs that load it."""
    folder = GRAPH.model_folder("targets.model")
    return [folder] if folder and TEACHER_IN_PROCESS else []


def teacher_arg(wildcards):
    return (
        f"--teacher-model {shlex.quote(teacher_model())}" if TEACHER_IN_PROCESS else ""
    )


def base_model_input(wildcards):
    return base_folder(wildcards.base)


def proposals_file(pset):
    rule_name, w = GRAPH.proposals_job(pset)
    return f"{job_dir(rule_name, **w)}/proposals.jsonl"


def source_files(name):
    """The files `download_source` writes for a configured source, in the source's order."""
    return [f"results/download_source/{name}/{f.name}" for f in SOURCES[name].files]


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


# the configured sources and the GGUF checkpoints' files (checkpoint_<base>_<variant>)
SOURCES = CFG.sources.named() | CFG.checkpoint_sources()
SOURCE_FILES = [path for name in SOURCES for path in source_files(name)]
REPORT = [
    f"reports/{EXPERIMENT}/{name}"
    for name in (
        "results.md",
        "results.html",
        "results.png",
        "loss_curves.png",
        "results.json",
        "artifacts.json",
    )
]


def checkpoint_of(w):
    """The checkpoint evaluated instead of training (config `checkpoints`, e.g. a released model), or None."""
    return GRAPH.checkpoint(w.base, w.variant)


def answer_model(w):
    """The model that answers: a configured checkpoint (the folder fetched from the hub, a local path, or
    the folder converted from its GGUF file), else the trained model folder."""
    ck = checkpoint_of(w)
    if ck and ck.gguf is not None:
        return f"{job_dir('convert_checkpoint', base=w.base, variant=w.variant)}/model"
    if ck:
        return GRAPH.model_folder(f"checkpoints.{w.base}.{w.variant}") or ck.model
    return (
        f"{job_dir('train_model', base=w.base, variant=w.variant, seed=w.seed)}/model"
    )


def answer_model_input(w):
    """The model folder as a DAG input (trained, fetched, converted, or a checkpoint's local path)."""
    return [answer_model(w)]


def answer_reward_model(w):
    """Best-of-N's reward model: (its name, the folder to load), or None for other modes."""
    s = CFG.strategy(w.mode)
    if s is None or s.kind != "best_of_n":
        return None
    rc = CFG.reward_models[s.reward_model]
    if rc.source == "hub":
        return (
            s.reward_model,
            GRAPH.model_folder(f"reward_models.{s.reward_model}") or rc.model,
        )
    return s.reward_model, f"{job_dir('train_reward_model', rm=s.reward_model)}/model"


def answer_reward_input(w):
    """The reward model's folder (trained or fetched here; a local path is none), as a DAG input."""
    rm = answer_reward_model(w)
    made_here = rm and (
        CFG.reward_models[rm[0]].source == "train"
        or GRAPH.hub_model(f"reward_models.{rm[0]}") is not None
    )
    return [rm[1]] if made_here else []


def answer_reward_arg(w):
    rm = answer_reward_model(w)
    return f"--reward-model {shlex.quote(rm[1])}" if rm else ""


def bench_file(bench):
    """A benchmark's prepared questions."""
    return f"{job_dir('prepare_bench', bench=bench)}/bench.jsonl"


def judged_job(w):
    """The wildcards of the answers a judge_answers job reads: its own, without its key."""
    return {k: w[k] for k in ("base", "variant", "seed", "mode", "bench")}


def bench_files(bench):
    """A benchmark's question files (aft.eval.registry: its questions source), none for the miniature's."""
    name = REGISTRY[bench].questions_source
    return source_files(name) if name else []


def bench_prompt(bench):
    """A benchmark's prompt file (config benchmarks.<bench>.prompt_file), if it has one."""
    prompt = CFG.bench_settings(bench).prompt_file
    return [prompt] if prompt else []


def judge_files(role, bench):
    """A benchmark's judge files of one role (`reference`, `judge_prompts`), from its registry entry."""
    name = REGISTRY[bench].judge_sources.get(role)
    # an optional role's source may be null (aft.eval.registry: optional_roles)
    return source_files(name) if name in SOURCES else []


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
        "queries": "results/prepare_data/{key}/queries.jsonl",
        "ultrafeedback": "results/prepare_data/{key}/ultrafeedback.jsonl",
    }
    if CFG.data.kind == "miniature":
        out["corpus"] = "results/prepare_data/{key}/corpus.txt"
    return out


def data_file(name):
    """A file prepare_data writes (queries.jsonl, ultrafeedback.jsonl, corpus.txt)."""
    return f"{job_dir('prepare_data')}/{name}"


# Keyed artifacts: every job's folder holds its key (aft.pipeline.jobs; docs/experiments.md).
GRAPH = JobGraph(
    CFG,
    {
        name: len(getattr(gather, name)("{scatteritem}"))
        for name in ("build_proposals_on", "build_targets", "generate_answers")
    },
)


def job_dir(rule_name, **wildcards):
    """The folder of a job's outputs under this config."""
    return GRAPH.job_dir(rule_name, **wildcards)


def settings_of(rule_name):
    """A rule's `cfg` param: the config sections its job reads. A path whose key is not this config's
    (typed by hand, or from an earlier config) is refused: its outputs would not be what it names.
    """

    def settings(w):
        given = {k: v for k, v in w.items() if k != "key"}
        expected = GRAPH.key(rule_name, **given)
        if w.key != expected:
            raise WorkflowError(
                f"{rule_name} {wildcard_tags(w)}: key {w.key} is not what this config makes"
                f" ({expected}); ask for the outputs of the current config (e.g. the report), or see"
                " `python -m aft.tools.paths`"
            )
        return GRAPH.settings(rule_name, **given)

    return settings


JUDGED_JOBS = GRAPH.judged()
JUDGED = [f"{job_dir('judge_answers', **w)}/result.json" for w in JUDGED_JOBS]
# every job of this experiment, parents first: its metrics files feed the report's costs and lineage
TARGET_LOSS_JOBS = GRAPH.target_loss_jobs()
EXPERIMENT_JOBS = GRAPH.lineage(
    [*(("judge_answers", w) for w in JUDGED_JOBS), *TARGET_LOSS_JOBS]
)
# best-of-N's reward models: trained here (their held-out pairs feed the report) or from the hub
REWARD_HELDOUT = {
    w["rm"]: f"{job_dir(rule, **w)}/heldout.jsonl"
    for rule, w in GRAPH.reward_model_jobs()
}
# every hub model the config's jobs load, fetched once each (rule fetch_model)
FETCHED_MODELS = [f"{job_dir(rule, **w)}/model" for rule, w in GRAPH.fetch_jobs()]
REWARD_HUB = {
    name: CFG.reward_models[name].model
    for name in GRAPH.reward_models_used()
    if CFG.reward_models[name].source == "hub"
}


def experiment_info():
    """What the report says this experiment is (its provenance beside the job's commit and host)."""
    return {
        "name": EXPERIMENT,
        "description": CFG.description,
        "config_hash": results_hash(CFG),
        "seeds": GRID.seeds,
    }
