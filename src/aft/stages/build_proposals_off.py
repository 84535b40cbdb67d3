"""Stage `build_proposals_off`: off-policy proposals from the UltraFeedback-schema file.

Usage (what the rule runs; runnable by hand too):
    python -m aft.stages.build_proposals_off --config CFG --ultrafeedback JSONL --out JSONL --metrics FILE
"""

from __future__ import annotations

import time
from pathlib import Path

from aft.method.proposals import normalise_ultrafeedback
from aft.pipeline.config import ProposalsConfig
from aft.pipeline.io import read_jsonl, write_jsonl
from aft.pipeline.stage import finish, parser, sections, setup_logging


def main(argv: list[str] | None = None) -> None:
    setup_logging()
    started = time.time()
    p = parser(__doc__)
    p.add_argument("--ultrafeedback", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    cfg = sections(args.config, proposals=ProposalsConfig)
    pc = cfg["proposals"]
    records, counts = normalise_ultrafeedback(
        read_jsonl(args.ultrafeedback),
        pc.num_proposals,
        pc.rating,
        pc.shuffle_seed,
        pc.drop_duplicate_completions,
    )
    if not records:
        raise SystemExit(f"no query kept from {args.ultrafeedback}: {dict(counts)}")
    write_jsonl(args.out, records)
    finish("build_proposals_off", args, cfg, dict(counts), [args.out], started)


if __name__ == "__main__":
    main()
