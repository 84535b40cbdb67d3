"""Stage `build_proposals_off`: off-policy proposals from the UltraFeedback-schema file.

Usage (what the rule runs; runnable by hand too):
    python -m aft.stages.build_proposals_off --config CFG --ultrafeedback JSONL --out JSONL --metrics FILE
"""

from __future__ import annotations

import argparse
from pathlib import Path

from aft.method.proposals import normalise_ultrafeedback
from aft.pipeline.config import ProposalsConfig
from aft.pipeline.io import read_jsonl, write_jsonl
from aft.pipeline.stage import Outcome, run_stage


def arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ultrafeedback", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)


def run(pc: ProposalsConfig, ultrafeedback: Path, out: Path) -> dict:
    """Normalise the UltraFeedback rows into proposal records; returns the counts (every drop named)."""
    records, counts = normalise_ultrafeedback(
        read_jsonl(ultrafeedback),
        pc.num_proposals,
        pc.rating,
        pc.shuffle_seed,
        pc.drop_duplicate_completions,
    )
    if not records:
        raise SystemExit(f"no query kept from {ultrafeedback}: {dict(counts)}")
    write_jsonl(out, records)
    return dict(counts)


def main(argv: list[str] | None = None) -> None:
    def body(a: argparse.Namespace, cfg: dict) -> Outcome:
        return Outcome(run(cfg["proposals"], a.ultrafeedback, a.out), [a.out])

    run_stage("build_proposals_off", __doc__, argv, arguments, {"proposals": ProposalsConfig}, body)


if __name__ == "__main__":
    main()
