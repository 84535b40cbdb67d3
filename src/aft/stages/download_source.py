"""Stage `download_source`: one file of a configured source, fetched, checked against its sha256 and
written atomically (a local rule: clusters often have no internet on compute nodes).

--config carries what the file is (repository, revision, path, checksum); --local and --mirror where
to read it instead of the network (a copy of the file as written here, or a mirror's copy of the
upstream file; both empty = download). The two are kept apart so that moving a source to a mirror
reruns nothing.

Usage (what the rule runs; runnable by hand too):
    python -m aft.stages.download_source --config CFG --source NAME --file NAME [--local PATH] \
        [--mirror PATH] --out FILE --metrics FILE
"""

from __future__ import annotations

import time
from pathlib import Path

from aft.pipeline.config import Source
from aft.pipeline.sources import materialise
from aft.pipeline.stage import finish, parser, sections, setup_logging


def main(argv: list[str] | None = None) -> None:
    setup_logging()
    started = time.time()
    p = parser(__doc__)
    p.add_argument("--source", required=True, help="the source's name in the config's sources section")
    p.add_argument("--file", required=True, help="the file's name within the source")
    p.add_argument("--local", default="", help="a copy of the file as written here ('' = none)")
    p.add_argument("--mirror", default="", help="a mirror's copy of the upstream file ('' = none)")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    cfg = sections(args.config, source=Source)
    src = cfg["source"]
    matches = [f for f in src.files if f.name == args.file]
    if not matches:
        raise SystemExit(
            f"source {args.source!r} has no file {args.file!r}; it has {[f.name for f in src.files]}"
        )
    local = Path(args.local) if args.local else None
    mirror = Path(args.mirror) if args.mirror else None
    record = materialise(args.source, src, matches[0], args.out, local, mirror)
    metrics = {
        "bytes": record["bytes"],
        "sha256_pinned": int(record["sha256_pinned"]),
        "revision_pinned": int(record["revision_pinned"]),
    }
    facts = {k: record[k] for k in ("origin", "sha256", "resolved_revision")}
    finish("download_source", args, cfg, metrics, [], started, record={"source": args.source} | facts)


if __name__ == "__main__":
    main()
