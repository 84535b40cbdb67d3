"""Sharded, resumable generation: the items of a stage are split into fixed-size shards, each shard's
result is written atomically (temporary file + os.replace) as soon as it is done, and a rerun after a
killed job reuses every finished shard whose fingerprint still matches. Nothing is lost (every shard
is either reused whole or made again) and nothing is duplicated (shards never overlap, and the output
is assembled in shard order).

A shard file holds {"index", "start", "stop", "fingerprint", "records", "counts"}; its fingerprint
covers the shard's range, its items and a `context` string naming everything else that decides its
content (model, prompt file, sampling settings), so a changed input or setting makes it stale.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from aft.io import atomic_write_text

log = logging.getLogger("aft")

ShardResult = tuple[list[dict], Counter]


@dataclass(frozen=True)
class Shard:
    index: int
    start: int
    stop: int


@dataclass
class ShardSummary:
    """How a run got its shards: made now, reused from an earlier (killed) run, or made again."""

    shards_total: int = 0
    shards_reused: int = 0
    shards_run: int = 0
    shards_stale: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def plan(n_items: int, shard_size: int) -> list[Shard]:
    """Consecutive, non-overlapping shards covering items 0..n_items-1."""
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    return [
        Shard(i, start, min(start + shard_size, n_items))
        for i, start in enumerate(range(0, n_items, shard_size))
    ]


def shard_file(folder: Path, index: int) -> Path:
    return Path(folder) / f"shard-{index:05d}.json"


def work_dir(out: Path) -> Path:
    """Where a stage keeps the shards of output `out` while it runs: beside it, `<out>.shards/`."""
    out = Path(out)
    return out.with_name(out.name + ".shards")


def fingerprint(context: str, shard: Shard, items: Sequence) -> str:
    payload = json.dumps([context, shard.start, shard.stop, list(items)], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()


def request_seed(seed: int, key: str, round_: int = 0) -> int:
    """A per-item sampling seed from (seed, item key, round): the same item always draws the same samples,
    whichever shard or run it is generated in."""
    digest = hashlib.sha256(f"{seed}:{key}:{round_}".encode()).hexdigest()
    return int(digest[:8], 16)  # 32 bits: vLLM adds the sample index for n > 1


def load_shard(path: Path, shard: Shard, expected_fingerprint: str) -> dict | None:
    """A finished shard's content, or None when absent, unreadable or made from other inputs."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    same = (data.get("index"), data.get("start"), data.get("stop"), data.get("fingerprint")) == (
        shard.index,
        shard.start,
        shard.stop,
        expected_fingerprint,
    )
    return data if same and isinstance(data.get("records"), list) else None


def run_sharded(
    items: Sequence,
    shard_size: int,
    folder: Path,
    context: str,
    process: Callable[[list], ShardResult],
) -> tuple[list[dict], Counter, ShardSummary]:
    """Process `items` shard by shard; returns all records in order, the summed counts, the summary.

    `process(shard_items)` returns (records, counts) for one shard; it is called only for shards
    without a valid file, so a rerun after a kill does only the missing work.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    shards = plan(len(items), shard_size)
    summary = ShardSummary(shards_total=len(shards))
    records: list[dict] = []
    counts: Counter = Counter()
    for shard in shards:
        part = list(items[shard.start : shard.stop])
        fp = fingerprint(context, shard, part)
        path = shard_file(folder, shard.index)
        done = load_shard(path, shard, fp)
        if done is None:
            summary.shards_stale += path.exists()
            shard_records, shard_counts = process(part)
            done = {
                "index": shard.index,
                "start": shard.start,
                "stop": shard.stop,
                "fingerprint": fp,
                "records": shard_records,
                "counts": dict(shard_counts),
            }
            atomic_write_text(path, json.dumps(done, ensure_ascii=False))
            summary.shards_run += 1
            log.info("shard %d/%d done (items %d-%d)", shard.index + 1, len(shards), shard.start, shard.stop)
        else:
            summary.shards_reused += 1
            log.info("shard %d/%d reused from an earlier run", shard.index + 1, len(shards))
        records.extend(done["records"])
        counts.update(done["counts"])
    return records, counts, summary


def remove(folder: Path) -> None:
    """Drop the shard folder once the assembled output is safely written."""
    shutil.rmtree(folder, ignore_errors=True)
