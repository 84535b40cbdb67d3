"""Sharded, resumable generation: the items of a stage are split into fixed-size shards, each shard's
result is written atomically (temporary file + os.replace) as soon as it is done, and a rerun after a
killed job reuses every finished shard whose fingerprint still matches. Nothing is lost (every shard
is either reused whole or made again) and nothing is duplicated (shards never overlap, and the output
is assembled in shard order).

A shard file holds {"index", "start", "stop", "fingerprint", "records", "counts"}; its fingerprint
covers the shard's range, its items and a `context` string naming everything else that decides its
content (model, prompt file, sampling settings), so a changed input or setting makes it stale.

Scatter and gather: the shards can be spread over `num_jobs` jobs, job j making the shards i with
i % num_jobs == j, all into the same folder; one gather then assembles them in shard order, making none.
A shard's file and fingerprint do not depend on num_jobs, so the assembled output is the same for every
num_jobs, and a change of num_jobs before the gather keeps every finished shard. Round robin rather than
contiguous ranges: items come grouped by source (UltraFeedback's short FLAN rows, then long ShareGPT
ones), so each job gets a like share of the slow ones, and a job's shards stay its own when items are
added at the end.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from aft.pipeline.io import atomic_write_text

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

    @classmethod
    def summed(cls, parts: Iterable[dict]) -> ShardSummary:
        """The summary of a whole stage from its scatter jobs' summaries (their metrics)."""
        parts = list(parts)
        return cls(**{k: sum(int(p[k]) for p in parts) for k in cls.__dataclass_fields__})


class MissingShards(RuntimeError):
    """The gather found shards absent or made from other inputs: their scatter jobs must run again."""

    def __init__(self, message: str, jobs: Sequence[int] = ()):
        super().__init__(message)
        self.jobs = list(jobs)


def plan(n_items: int, shard_size: int) -> list[Shard]:
    """Consecutive, non-overlapping shards covering items 0..n_items-1."""
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    return [
        Shard(i, start, min(start + shard_size, n_items))
        for i, start in enumerate(range(0, n_items, shard_size))
    ]


def job_of(index: int, num_jobs: int) -> int:
    """The scatter job that makes shard `index` (round robin, see the module docstring)."""
    if num_jobs < 1:
        raise ValueError(f"num_jobs must be >= 1, got {num_jobs}")
    return index % num_jobs


def shard_file(folder: Path, index: int) -> Path:
    return Path(folder) / f"shard-{index:05d}.json"


def work_dir(out: Path) -> Path:
    """Where a stage keeps the shards of output `out` while it runs: beside it, `<out>.shards/`."""
    out = Path(out)
    return out.with_name(out.name + ".shards")


def fingerprint(context: str, shard: Shard, items: Sequence) -> str:
    payload = json.dumps([context, shard.start, shard.stop, list(items)], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()


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
    job: int = 0,
    num_jobs: int = 1,
) -> tuple[list[dict], Counter, ShardSummary]:
    """Process `items` shard by shard; returns the records in order, the summed counts, the summary.

    `process(shard_items)` returns (records, counts) for one shard; it is called only for shards
    without a valid file, so a rerun after a kill does only the missing work. With num_jobs > 1 only
    the shards of scatter job `job` are made and returned (see `job_of`).
    """
    if not 0 <= job < num_jobs:
        raise ValueError(f"job must lie in 0..{num_jobs - 1} (num_jobs={num_jobs}), got {job}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    all_shards = plan(len(items), shard_size)
    shards = [s for s in all_shards if job_of(s.index, num_jobs) == job]
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
            log.info(
                "shard %d/%d done (items %d-%d)", shard.index + 1, len(all_shards), shard.start, shard.stop
            )
        else:
            summary.shards_reused += 1
            log.info("shard %d/%d reused from an earlier run", shard.index + 1, len(all_shards))
        records.extend(done["records"])
        counts.update(done["counts"])
    return records, counts, summary


def gather(
    items: Sequence, shard_size: int, folder: Path, context: str, num_jobs: int
) -> tuple[list[dict], Counter]:
    """Every shard's records in shard order and the summed counts, made by scatter jobs; makes none.

    Raises MissingShards naming the shards (and their jobs) that are absent or stale."""
    records: list[dict] = []
    counts: Counter = Counter()
    missing: list[int] = []
    for shard in plan(len(items), shard_size):
        part = list(items[shard.start : shard.stop])
        done = load_shard(shard_file(folder, shard.index), shard, fingerprint(context, shard, part))
        if done is None:
            missing.append(shard.index)
            continue
        records.extend(done["records"])
        counts.update(done["counts"])
    if missing:
        jobs = sorted({job_of(i, num_jobs) for i in missing})
        raise MissingShards(
            f"{len(missing)} shard(s) absent or stale in {folder}: {missing[:20]}; made by scatter"
            f" job(s) {jobs} of {num_jobs}: run those jobs again",
            jobs,
        )
    return records, counts


def run_stage(
    items: Sequence,
    shard_size: int,
    out: Path,
    context: str,
    process: Callable[[list], ShardResult],
    num_jobs: int,
    job: int | None = None,
    parts: Sequence[Path] | None = None,
) -> tuple[list[dict], Counter, ShardSummary]:
    """A sharded stage's work in `<out>.shards/`: every shard (one job), the shards of scatter job `job`
    (its records only), or the gather of what the scatter jobs whose metrics are `parts` made."""
    folder = work_dir(out)
    if parts:
        summary = read_parts(parts, num_jobs)
        try:
            records, counts = gather(items, shard_size, folder, context, num_jobs)
        except MissingShards as err:  # their metrics say done: Snakemake reruns them once these are gone
            redo = " ".join(str(p) for p in sorted(parts) if job_of_part(p) in err.jobs)
            raise MissingShards(f"{err} (delete {redo} and rerun)", err.jobs) from None
        return records, counts, summary
    scatter = (0, 1) if job is None else (job, num_jobs)  # no job: this one makes every shard
    return run_sharded(items, shard_size, folder, context, process, *scatter)


def job_of_part(path: Path) -> int:
    """The scatter job whose metrics.json this is."""
    return int(json.loads(Path(path).read_text())["metrics"]["job"])


def read_parts(paths: Sequence[Path], num_jobs: int) -> ShardSummary:
    """The summed summary of the scatter jobs' metrics.json files, which must be jobs 0..num_jobs-1."""
    parts = [json.loads(Path(p).read_text())["metrics"] for p in paths]
    got = sorted((int(m["job"]), int(m["num_jobs"])) for m in parts)
    if got != [(j, num_jobs) for j in range(num_jobs)]:
        raise MissingShards(
            f"expected the metrics of scatter jobs 0..{num_jobs - 1} of {num_jobs}, got {got}"
        )
    return ShardSummary.summed(parts)
