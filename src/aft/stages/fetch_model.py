"""Stage `fetch_model`: one hub model (a base, the teacher, a reward model, a released checkpoint) at its
revision, downloaded once through the Hugging Face cache into a model folder that every job loading it
reads with the hub switched off (a local rule: clusters often have no internet on compute nodes).

HF_ENDPOINT (a hub mirror), HF_TOKEN (gated models such as Llama), HF_HUB_CACHE/HF_HOME (where the cache
is; on a cluster, the shared filesystem) and HF_HUB_OFFLINE=1 (read a cache filled beforehand) apply.

Usage (what the rule runs; runnable by hand too):
    python -m aft.stages.fetch_model --config CFG --out DIR --metrics FILE
"""

from __future__ import annotations

import argparse
from pathlib import Path

from aft.pipeline.config import HubModel
from aft.pipeline.models import fetch
from aft.pipeline.stage import Outcome, run_stage


def arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, required=True, help="the model folder to write")


def main(argv: list[str] | None = None) -> None:
    def body(a: argparse.Namespace, cfg: dict) -> Outcome:
        model: HubModel = cfg["model"]
        record = fetch(model, a.out)
        metrics = {
            "files": len(record["files"]),
            "bytes": record["bytes"],
            "revision_pinned": int(model.pinned),
        }
        return Outcome(metrics, record={"repo": model.repo, "commit": record["commit"]})

    run_stage("fetch_model", __doc__, argv, arguments, {"model": HubModel}, body, network=True)


if __name__ == "__main__":
    main()
