# Config validation (before any job runs) and the helpers every rule uses.
import json

from snakemake.utils import validate

from aft.config import config_hash, load_config
from aft.launch import train_launcher

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
    bench="exact_match|alpaca_eval2|mt_bench",
    pset="off|" + "|".join(f"on_{b}" for b in BASES),


def section(**parts):
    """Params holding only the config sections a stage reads: a change elsewhere reruns nothing."""
    return json.dumps(
        {k: v.model_dump(mode="json") for k, v in parts.items()}, sort_keys=True, separators=(",", ":")
    )


def wildcard_tags(wildcards):
    return ",".join(f"{k}={v}" for k, v in wildcards.items())


def base_model(base):
    """A built base's folder (a DAG input) or a hub id/path (not an input)."""
    b = CFG.bases[base]
    return f"results/build_base/{base}/model" if b.source == "build" else b.model


def base_model_input(wildcards):
    return [base_model(wildcards.base)] if CFG.bases[wildcards.base].source == "build" else []


def proposals_file(pset):
    if pset == "off":
        return "results/build_proposals_off/proposals.jsonl"
    return f"results/build_proposals_on/{pset.removeprefix('on_')}/proposals.jsonl"


def pset_of(variant, base):
    """The proposal set a training variant learns from (SFT uses the off-policy queries and targets)."""
    return f"on_{base}" if variant == "aft_on" else "off"


PSETS = ["off"] + [f"on_{b}" for b in BASES]
JUDGED = expand(
    "results/judge_answers/{base}/{variant}/{mode}/{bench}.json",
    base=BASES,
    variant=GRID.variants,
    mode=GRID.modes,
    bench=GRID.benchmarks,
)
REPORT = ["reports/results.md", "reports/results.png", "reports/results.json"]
