"""Sharded, resumable generation: the items of a stage are split into fixed-size shards, each shard's
result is written atomically (temporary file + os.replace) as soon as it is done, and a rerun after a
killed job reuses every finished shard whose fingerprint still matches. Nothing is lost (every shard
is either reused whole or made again) and nothing is duplicated (shards never overlap, and the output
is assembled in shard order).

A shard file holds {"index", "start", "stop", "fingerprint", "records", "counts"}; its fingerprint
covers the shard's range, its items and a `context` string naming everything else that decides its
content (model, prompt file, sampling settings), so a changed input or setting makes it stale.

Scatter and gather (Snakemake's `scattergather:`): scatter job `I-of-N` makes the shards i with
i % N == I - 1 in its own work folder and writes them, whole, to its declared part file; the gather
reads the N part files and assembles every shard in order, making none. A shard's content and
fingerprint do not depend on N, so the assembled output is the same for every N. Round robin rather
than contiguous ranges: items come grouped by source (UltraFeedback's short FLAN rows, then long
ShareGPT ones), so each job gets a like share of the slow ones.
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
# the engine settings that decide what is generated, for a shard's context: throughput knobs
# (gpu_memory_utilization, max_num_seqs, ...) are left out, so lowering them after an out-of-memory keeps
# the finished shards
ENGINE_CONTENT_KEYS = ("dtype", "max_model_len")


def engine_content(engine: object) -> dict:
    """The content-deciding settings of an engine section (ENGINE_CONTENT_KEYS)."""
    return {k: getattr(engine, k) for k in ENGINE_CONTENT_KEYS}


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
        """The summary of a whole stage from its scatter jobs' summaries (their part files)."""
        parts = list(parts)
        return cls(**{k: sum(int(p[k]) for p in parts) for k in cls.__dataclass_fields__})


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


def parse_part(part: str) -> tuple[int, int]:
    """Snakemake's scatter item `I-of-N` as (job, num_jobs) with job = I - 1."""
    try:
        i, n = (int(x) for x in part.split("-of-"))
    except ValueError:
        raise ValueError(f"a scatter part is 'I-of-N' (Snakemake's {{scatteritem}}), got {part!r}") from None
    if not 1 <= i <= n:
        raise ValueError(f"scatter part {part!r}: I must lie in 1..N")
    return i - 1, n


def run_sharded(
    items: Sequence,
    shard_size: int,
    folder: Path,
    context: str,
    process: Callable[[list], ShardResult],
    job: int = 0,
    num_jobs: int = 1,
) -> tuple[list[dict], ShardSummary]:
    """Process `items` shard by shard; returns the finished shards (see the module docstring) in order
    and the summary.

    `process(shard_items)` returns (records, counts) for one shard; it is called only for shards
    without a valid file, so a rerun after a kill does only the missing work. With num_jobs > 1 only
    the shards of scatter job `job` are made and returned (see `job_of`).
    """
    if not 0 <= job < num_jobs:
        raise ValueError(f"job must lie in 0..{num_jobs - 1} (num_jobs={num_jobs}), got {job}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    all_shards = plan(len(items), shard_size)
    mine = [s for s in all_shards if job_of(s.index, num_jobs) == job]
    summary = ShardSummary(shards_total=len(mine))
    finished: list[dict] = []
    for shard in mine:
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
        finished.append(done)
    return finished, summary


def assemble(finished: Sequence[dict]) -> tuple[list[dict], Counter]:
    """The records of finished shards in their order, and their summed counts."""
    records: list[dict] = []
    counts: Counter = Counter()
    for done in finished:
        records.extend(done["records"])
        counts.update(done["counts"])
    return records, counts


def write_part(path: Path, part: str, finished: Sequence[dict], summary: ShardSummary) -> None:
    """A scatter job's declared output: its finished shards, whole, and how it got them."""
    body = {"part": part, "summary": summary.as_dict(), "shards": list(finished)}
    atomic_write_text(path, json.dumps(body, ensure_ascii=False))


def gather(
    items: Sequence, shard_size: int, context: str, part_files: Sequence[Path]
) -> tuple[list[dict], Counter, ShardSummary]:
    """Every shard's records in shard order, the summed counts and summaries, from the scatter jobs'
    part files; makes none. A shard absent, repeated or made from other inputs is an error naming it
    (Snakemake reruns a part whose inputs or params changed, so this guards hand-made parts)."""
    parts = [json.loads(Path(f).read_text()) for f in part_files]
    by_index: dict[int, dict] = {}
    for f, body in zip(part_files, parts, strict=True):
        for done in body["shards"]:
            if done["index"] in by_index:
                raise ValueError(f"shard {done['index']} is in two part files (one of them {f})")
            by_index[done["index"]] = done
    finished, bad = [], []
    for shard in plan(len(items), shard_size):
        done = by_index.get(shard.index)
        fp = fingerprint(context, shard, list(items[shard.start : shard.stop]))
        if done is None or (done["start"], done["stop"], done["fingerprint"]) != (
            shard.start,
            shard.stop,
            fp,
        ):
            bad.append(shard.index)
        else:
            finished.append(done)
    if bad:
        raise ValueError(
            f"{len(bad)} shard(s) absent or made from other inputs in {len(parts)} part file(s): {bad[:20]}"
        )
    records, counts = assemble(finished)
    return records, counts, ShardSummary.summed(body["summary"] for body in parts)


def sharded(
    items: Sequence,
    shard_size: int,
    out: Path,
    context: str,
    process: Callable[[list], ShardResult],
    part: str | None = None,
    parts: Sequence[Path] | None = None,
) -> tuple[list[dict] | None, Counter, ShardSummary]:
    """A sharded stage's work, its shards kept in `<out>.shards/` while it runs. One of:
    scatter job `part` (`I-of-N`): its shards, written whole to the part file `out` (records: None);
    the gather of `parts` (the part files): every record, making nothing;
    neither: one job makes every shard."""
    if parts:
        return gather(items, shard_size, context, parts)
    job, num_jobs = parse_part(part) if part else (0, 1)
    finished, summary = run_sharded(items, shard_size, work_dir(out), context, process, job, num_jobs)
    records, counts = assemble(finished)
    if part:
        write_part(out, part, finished, summary)
        return None, counts, summary
    return records, counts, summary
