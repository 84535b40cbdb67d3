"""The jobs of a config, what each reads, and where each writes: the keyed layout of results/.

Every job's outputs live in a folder named by its key (aft.pipeline.artifacts.artifact_key): a hash of
the rule, its wildcards, the config sections it reads (the settings its rule passes as `--config`) and
the keys of the jobs it reads from. Two experiments that share a job share its folder, so it is made
once; an experiment that changes a setting writes new folders for the jobs that read it, and every
other job's folder stays where it was (docs/experiments.md). Downloads are the exception: one path per
source file, identified by its pinned revision and sha256, and one per hub model at a revision.

The workflow (workflow/rules/common.smk) asks this module for inputs, params and paths; the tests and
tools ask it the same questions without Snakemake.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import cache
from pathlib import Path

from pydantic import BaseModel

from aft.eval.registry import REGISTRY
from aft.pipeline.artifacts import artifact_key
from aft.pipeline.config import Config, HubModel
from aft.pipeline.io import sha256_file

Job = tuple[str, dict[str, str]]  # (rule, wildcards)

JOB_DIRS = {
    "fetch_model": "results/fetch_model/{repo}/{revision}",
    "convert_checkpoint": "results/convert_checkpoint/{base}/{variant}/{key}",
    "prepare_data": "results/prepare_data/{key}",
    "prepare_bench": "results/prepare_bench/{bench}/{key}",
    "build_base": "results/build_base/{base}/{key}",
    "build_proposals_off": "results/build_proposals_off/{key}",
    "build_proposals_on_part": "results/build_proposals_on_part/{base}/{scatteritem}/{key}",
    "build_proposals_on": "results/build_proposals_on/{base}/{key}",
    "build_targets_part": "results/build_targets_part/{pset}/{scatteritem}/{key}",
    "build_targets": "results/build_targets/{pset}/{key}",
    "build_dataset": "results/build_dataset/{base}/{variant}/{key}",
    "train_model": "results/train_model/{base}/{variant}/seed{seed}/{key}",
    "measure_target_loss": "results/measure_target_loss/{base}/{key}",
    "train_reward_model": "results/train_reward_model/{rm}/{key}",
    "generate_answers_part": (
        "results/generate_answers_part/{base}/{variant}/seed{seed}/{mode}/{bench}/{scatteritem}/{key}"
    ),
    "generate_answers": "results/generate_answers/{base}/{variant}/seed{seed}/{mode}/{bench}/{key}",
    "judge_answers": "results/judge_answers/{base}/{variant}/seed{seed}/{mode}/{bench}/{key}",
}


# a topological order of the stages: each reads only from stages before it
STAGES = ("download_source", *JOB_DIRS)


def settings_json(**parts: BaseModel) -> str:
    """The config sections a job reads, as the canonical JSON its rule passes (`--config`)."""
    return json.dumps(
        {k: v.model_dump(mode="json") for k, v in parts.items()}, sort_keys=True, separators=(",", ":")
    )


def pset_of(variant: str, base: str) -> str:
    """The proposal set a training variant learns from (SFT uses the off-policy queries and targets)."""
    return f"on_{base}" if variant == "aft_on" else "off"


def scatter_counts(cfg: Config) -> dict[str, int]:
    """The number of parts of each sharded stage as the config sets them (Snakemake's scattergather)."""
    return {
        "build_proposals_on": cfg.on_policy.num_jobs,
        "build_targets": cfg.targets.num_jobs,
        "generate_answers": cfg.inference.num_jobs,
    }


class JobGraph:
    """The jobs of one config. `scatter`: the number of parts of each sharded stage (Snakemake's
    scattergather counts, which --set-scatter may override; the config's where not given); `root`: the
    working directory the config's file paths are relative to."""

    def __init__(self, cfg: Config, scatter: dict[str, int] | None = None, root: Path = Path(".")):
        self.cfg = cfg
        self.scatter = scatter_counts(cfg) | (scatter or {})
        self.root = root
        self.sources = cfg.sources.named() | cfg.checkpoint_sources()
        self.hub_models = cfg.hub_models()  # once: the rules' input functions ask for each job
        self._specs: dict[str, Callable[..., tuple[str, list[Job], list[str]]]] = {
            "download_source": self._download,
            "fetch_model": self._fetch,
            "convert_checkpoint": self._convert,
            "prepare_data": self._prepare_data,
            "prepare_bench": self._prepare_bench,
            "build_base": self._build_base,
            "build_proposals_off": self._proposals_off,
            "build_proposals_on_part": self._proposals_on_part,
            "build_proposals_on": self._proposals_on,
            "build_targets_part": self._targets_part,
            "build_targets": self._targets,
            "build_dataset": self._dataset,
            "train_model": self._train,
            "measure_target_loss": self._target_loss,
            "train_reward_model": self._reward_model,
            "generate_answers_part": self._answers_part,
            "generate_answers": self._answers,
            "judge_answers": self._judge,
        }
        self._key = cache(self._compute_key)

    # ---------------------------------------------------------------- what each job reads and is
    def source_identity(self, source: str, file: str) -> str:
        """What a downloaded file is (repository, revision, path, checksum). Where it is read from is
        left out, so moving a source to a mirror reruns nothing."""
        src = self.sources[source]
        one = next(f for f in src.files if f.name == file).model_copy(update={"local_path": None})
        return settings_json(source=src.model_copy(update={"files": [one]}))

    def text_identity(self, path: str) -> str:
        """What a template or prompt file is: a downloaded source's pinned identity, else its sha256."""
        parts = Path(path).parts
        if parts[:2] == ("results", "download_source") and len(parts) == 4:
            return self.source_identity(parts[2], parts[3])
        file = self.root / path
        return f"sha256:{sha256_file(file)}" if file.is_file() else path

    def targets_settings(self) -> str:
        """The targets section a target job reads, without the teacher's revision: that keys the teacher's
        fetch_model job, a parent of the jobs that load it, so it reruns them; left out here, it leaves the
        keys of the configs whose teacher is no hub model (oracle, best_rated, an endpoint) as they were."""
        targets = self.cfg.targets.model_dump(mode="json", exclude={"revision"})
        return json.dumps({"targets": targets}, sort_keys=True, separators=(",", ":"))

    def scatter_items(self, rule: str) -> list[str]:
        n = self.scatter[rule]
        return [f"{i}-of-{n}" for i in range(1, n + 1)]

    def target_part_items(self) -> list[str]:
        """build_targets' parts: teacher=model only (oracle and best_rated need no model, no parts)."""
        return self.scatter_items("build_targets") if self.cfg.targets.teacher == "model" else []

    def replica_inference(self, seed: str):
        """The inference section of one replica: the k-th seed of grid.seeds samples with seed + k."""
        k = self.cfg.grid.seeds.index(int(seed))
        return self.cfg.inference.model_copy(update={"seed": self.cfg.inference.seed + k})

    def on_policy_settings(self, base: str) -> str:
        c = self.cfg
        return settings_json(proposals=c.proposals, on_policy=c.on_policy, base=c.bases[base])

    def checkpoint(self, base: str, variant: str):
        """The checkpoint evaluated instead of training (config `checkpoints`), or None."""
        return self.cfg.checkpoints.get(base, {}).get(variant)

    def hub_model(self, key: str) -> HubModel | None:
        """The hub model a config key names (bases.<b>, targets.model, reward_models.<r>,
        checkpoints.<b>.<v>), or None where it names a local path or nothing from the hub."""
        return self.hub_models.get(key)

    def model_parents(self, key: str) -> list[Job]:
        """The fetch_model job of the hub model a config key names (none for a local path)."""
        m = self.hub_model(key)
        return [] if m is None else [("fetch_model", {"repo": m.repo, "revision": m.revision})]

    def model_folder(self, key: str) -> str | None:
        """The folder fetch_model writes for the hub model a config key names, or None."""
        m = self.hub_model(key)
        return None if m is None else f"{self.job_dir('fetch_model', repo=m.repo, revision=m.revision)}/model"

    def fetch_jobs(self) -> list[Job]:
        """One fetch_model job per distinct hub model and revision of the config."""
        models = sorted({(m.repo, m.revision) for m in self.hub_models.values()})
        return [("fetch_model", {"repo": r, "revision": v}) for r, v in models]

    def base_parents(self, base: str) -> list[Job]:
        if self.cfg.bases[base].source == "build":
            return [("build_base", {"base": base})]
        return self.model_parents(f"bases.{base}")

    def source_parents(self, name: str) -> list[Job]:
        return [("download_source", {"source": name, "file": f.name}) for f in self.sources[name].files]

    @staticmethod
    def proposals_job(pset: str) -> Job:
        """The job that makes a proposal set."""
        if pset == "off":
            return "build_proposals_off", {}
        return "build_proposals_on", {"base": pset.removeprefix("on_")}

    # each spec: wildcards -> (settings, the jobs it reads, identities of the other files it reads)
    def _download(self, source: str, file: str):
        return self.source_identity(source, file), [], []

    def _fetch(self, repo: str, revision: str):
        return settings_json(model=HubModel(repo=repo, revision=revision)), [], []

    def _prepare_data(self):
        paper = self.cfg.data.kind == "paper"
        return settings_json(data=self.cfg.data), self.source_parents("ultrafeedback") if paper else [], []

    def _convert(self, base: str, variant: str):
        return settings_json(), self.source_parents(f"checkpoint_{base}_{variant}"), []

    def _prepare_bench(self, bench: str):
        name = REGISTRY[bench].questions_source
        parents = self.source_parents(name) if name else []
        b = self.cfg.benchmarks.get(bench)
        if b is None:  # asked in full, as it is: the settings (and keys) of a config without the section
            return settings_json(data=self.cfg.data), parents, []
        prompt = [self.text_identity(b.prompt_file)] if b.prompt_file else []
        return settings_json(data=self.cfg.data, bench=b), parents, prompt

    def _build_base(self, base: str):
        return settings_json(base=self.cfg.bases[base]), [("prepare_data", {})], []

    def _proposals_off(self):
        return settings_json(proposals=self.cfg.proposals), [("prepare_data", {})], []

    def _proposals_on_part(self, base: str, scatteritem: str):
        parents = [("prepare_data", {}), *self.base_parents(base)]
        return (
            self.on_policy_settings(base),
            parents,
            [self.text_identity(self.cfg.on_policy.icl_prompt_file)],
        )

    def _proposals_on(self, base: str):
        parts = [
            ("build_proposals_on_part", {"base": base, "scatteritem": item})
            for item in self.scatter_items("build_proposals_on")
        ]
        return self.on_policy_settings(base), [("prepare_data", {}), *parts], []

    def _targets_part(self, pset: str, scatteritem: str):
        parents = [self.proposals_job(pset), ("prepare_data", {}), *self.model_parents("targets.model")]
        return (
            self.targets_settings(),
            parents,
            [self.text_identity(self.cfg.targets.template_file)],
        )

    def _targets(self, pset: str):
        parts = [("build_targets_part", {"pset": pset, "scatteritem": i}) for i in self.target_part_items()]
        parents = [self.proposals_job(pset), ("prepare_data", {}), *parts]
        return (
            self.targets_settings(),
            parents,
            [self.text_identity(self.cfg.targets.template_file)],
        )

    def _dataset(self, base: str, variant: str):
        pset = pset_of(variant, base)
        parents = [self.proposals_job(pset), ("build_targets", {"pset": pset}), *self.base_parents(base)]
        settings = settings_json(dataset=self.cfg.dataset, base=self.cfg.bases[base])
        return settings, parents, [self.text_identity(self.cfg.dataset.template_file)]

    def _train(self, base: str, variant: str, seed: str):
        train = self.cfg.train.model_copy(update={"seed": int(seed)})
        parents = [("build_dataset", {"base": base, "variant": variant}), *self.base_parents(base)]
        return settings_json(train=train, base=self.cfg.bases[base]), parents, []

    def trained_variants(self, base: str) -> list[str]:
        """The grid's variants of a base that are trained here (not a configured checkpoint)."""
        return [v for v in self.cfg.grid.variants if self.checkpoint(base, v) is None]

    def target_loss_jobs(self) -> list[Job]:
        """§6.1's measurement, one job per base with a model trained here (none when not configured)."""
        if self.cfg.target_loss is None:
            return []
        return [
            ("measure_target_loss", {"base": b})
            for b in sorted(self.cfg.grid.bases)
            if self.trained_variants(b)
        ]

    def _target_loss(self, base: str):
        # the first replica's models: the analysis compares models, not seeds
        seed = str(self.cfg.grid.seeds[0])
        trained = [
            ("train_model", {"base": base, "variant": v, "seed": seed}) for v in self.trained_variants(base)
        ]
        parents = [
            self.proposals_job("off"),
            ("build_targets", {"pset": "off"}),
            *self.base_parents(base),
            *trained,
        ]
        settings = settings_json(target_loss=self.cfg.target_loss, base=self.cfg.bases[base])
        return settings, parents, [self.text_identity(self.cfg.dataset.template_file)]

    def reward_models_used(self) -> list[str]:
        """The reward models the grid's best-of-N strategies choose with."""
        return sorted(
            {
                s.reward_model
                for m in self.cfg.grid.modes
                if (s := self.cfg.strategy(m)) is not None and s.kind == "best_of_n"
            }
        )

    def reward_model_jobs(self) -> list[Job]:
        """The training jobs of the reward models used that are trained here."""
        used = self.reward_models_used()
        return [("train_reward_model", {"rm": n}) for n in used if self.cfg.reward_models[n].train]

    def _reward_model(self, rm: str):
        # only its training section: how it scores (batch, dtype) does not change the trained model
        train = self.cfg.reward_models[rm].train
        parents = [("prepare_data", {}), *self.base_parents(train.base)]
        return settings_json(reward_train=train, base=self.cfg.bases[train.base]), parents, []

    def answer_part_items(self) -> list[str]:
        """generate_answers' parts: with inference.num_jobs > 1 only (one job answers everything else)."""
        return self.scatter_items("generate_answers") if self.cfg.inference.num_jobs > 1 else []

    def _answers_part(self, base: str, variant: str, seed: str, mode: str, bench: str, scatteritem: str):
        return self._answer_inputs(base, variant, seed, mode, bench)

    def _answers(self, base: str, variant: str, seed: str, mode: str, bench: str):
        settings, parents, identities = self._answer_inputs(base, variant, seed, mode, bench)
        w = {"base": base, "variant": variant, "seed": seed, "mode": mode, "bench": bench}
        parts = [("generate_answers_part", w | {"scatteritem": i}) for i in self.answer_part_items()]
        return settings, [*parents, *parts], identities

    def _answer_inputs(self, base: str, variant: str, seed: str, mode: str, bench: str):
        """What an answer job (one job, or each of its parts) reads: settings, parents, identities."""
        ck = self.checkpoint(base, variant)
        identities = [self.text_identity(self.cfg.inference.template_file)]
        if ck is None:
            model = [("train_model", {"base": base, "variant": variant, "seed": seed})]
        elif ck.gguf is not None:  # the converted folder's key names the file it came from
            model = [("convert_checkpoint", {"base": base, "variant": variant})]
        else:
            model = self.model_parents(f"checkpoints.{base}.{variant}")
            identities.append(settings_json(checkpoint=ck))
        parents = [*model, ("prepare_bench", {"bench": bench})]
        s = self.cfg.strategy(mode)
        if s is not None and s.kind == "best_of_n":
            if self.cfg.reward_models[s.reward_model].train:
                parents.append(("train_reward_model", {"rm": s.reward_model}))
            parents += self.model_parents(f"reward_models.{s.reward_model}")
        return self.strategy_settings(mode, seed), parents, identities

    def strategy_settings(self, mode: str, seed: str) -> str:
        """What an answer job reads: the inference section (the built-in direct and agg, as they always
        have), or for a named strategy that section at the strategy's own width and depth plus the
        strategy without its scope, so neither inference.n nor the scope reruns it."""
        ic = self.replica_inference(seed)
        s = self.cfg.strategy(mode)
        if s is None:
            return settings_json(inference=ic)
        depth = s.num_aggregation if s.kind == "propose_aggregate" else 1
        ic = ic.model_copy(update={"n": s.n, "num_aggregation": depth})
        parts = {"inference": ic, "strategy": s.model_copy(update={"variants": None, "benchmarks": None})}
        if s.kind == "best_of_n":  # how it scores (a trained model's training is its parent's key)
            parts["reward_model"] = self.cfg.reward_models[s.reward_model]
        return settings_json(**parts)

    def _judge(self, base: str, variant: str, seed: str, mode: str, bench: str):
        w = {"base": base, "variant": variant, "seed": seed, "mode": mode, "bench": bench}
        judges = [
            p
            for name in REGISTRY[bench].judge_sources.values()
            if name in self.sources
            for p in self.source_parents(name)
        ]
        parents = [("generate_answers", w), ("prepare_bench", {"bench": bench}), *judges]
        if REGISTRY[bench].judge == "lm_eval":  # scored by lm-eval's code: no judge setting is read
            return settings_json(), parents, []
        return settings_json(judge=self.cfg.judge), parents, []

    # ---------------------------------------------------------------- keys, folders, lineage
    def settings(self, rule: str, **wildcards: str) -> str:
        return self._specs[rule](**wildcards)[0]

    def parents(self, rule: str, **wildcards: str) -> list[Job]:
        return self._specs[rule](**wildcards)[1]

    def _compute_key(self, rule: str, wildcards: tuple[tuple[str, str], ...]) -> str:
        w = dict(wildcards)
        settings, parents, identities = self._specs[rule](**w)
        upstream = [f"{r}:{self.key(r, **pw)}" for r, pw in parents]
        return artifact_key(rule, w, settings, [*upstream, *identities])

    def key(self, rule: str, **wildcards: str) -> str:
        """The key of a job of `rule` under this config (wildcards without `key`)."""
        return self._key(rule, tuple(sorted(wildcards.items())))

    def job_dir(self, rule: str, **wildcards: str) -> str:
        """The folder of a job's outputs under this config."""
        return JOB_DIRS[rule].format(key=self.key(rule, **wildcards), **wildcards)

    def metrics_file(self, rule: str, wildcards: dict[str, str]) -> str:
        if rule == "download_source":
            return f"results/download_source/{wildcards['source']}/{wildcards['file']}.metrics.json"
        return f"{self.job_dir(rule, **wildcards)}/metrics.json"

    def judged(self) -> list[dict[str, str]]:
        """The wildcards of every judge_answers job of the grid (base, variant, seed, mode, bench)."""
        g = self.cfg.grid
        return [
            {"base": base, "variant": variant, "seed": str(seed), "mode": mode, "bench": bench}
            for base in sorted(g.bases)
            for variant in g.variants
            for seed in g.seeds
            for mode in g.modes
            for bench in g.benchmarks
            if self.cfg.answers(mode, variant, bench)
        ]

    def lineage(self, jobs: list[Job]) -> list[Job]:
        """Every job the given jobs read from, and themselves, parents first, each once."""
        order: dict[tuple[str, tuple], None] = {}

        def visit(rule: str, w: dict[str, str]) -> None:
            node = (rule, tuple(sorted(w.items())))
            if node not in order:
                for parent in self.parents(rule, **w):
                    visit(*parent)
                order[node] = None

        for job in jobs:
            visit(*job)
        # stage by stage (still parents first): the order a reader follows the pipeline in
        ordered = sorted(order, key=lambda node: STAGES.index(node[0]))
        return [(rule, dict(w)) for rule, w in ordered]
