"""Sharded, resumable generation: a kill mid-way loses and duplicates nothing on the rerun."""

import json
from collections import Counter

import pytest

from aft.gen import shards
from aft.method.interface import request_seed

ITEMS = [{"id": f"q{i}", "text": f"query {i}"} for i in range(23)]


class Killed(Exception):
    """Stands in for SIGKILL: the process stops between two statements."""


def run(*args, **kwargs):
    """run_sharded's finished shards assembled: (records, counts, summary)."""
    finished, summary = shards.run_sharded(*args, **kwargs)
    return (*shards.assemble(finished), summary)


def make_process(calls: list, kill_after: int | None = None):
    def process(part):
        if kill_after is not None and len(calls) == kill_after:
            raise Killed
        calls.append([x["id"] for x in part])
        return [{"id": x["id"], "out": x["text"].upper()} for x in part], Counter(
            items=len(part), tokens_out=3
        )

    return process


def test_plan_covers_every_item_once_in_order():
    plan = shards.plan(23, 5)
    assert [(s.start, s.stop) for s in plan] == [(0, 5), (5, 10), (10, 15), (15, 20), (20, 23)]
    assert [s.index for s in plan] == [0, 1, 2, 3, 4]
    assert shards.plan(0, 5) == []
    with pytest.raises(ValueError, match="shard_size must be >= 1"):
        shards.plan(3, 0)


def test_uninterrupted_run_assembles_in_order_and_sums_counts(tmp_path):
    calls = []
    records, counts, summary = run(ITEMS, 5, tmp_path / "s", "ctx", make_process(calls))
    assert [r["id"] for r in records] == [x["id"] for x in ITEMS]
    assert counts == Counter(items=23, tokens_out=15)
    assert summary.as_dict() == {"shards_total": 5, "shards_reused": 0, "shards_run": 5, "shards_stale": 0}
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == [f"shard-0000{i}.json" for i in range(5)]


def test_kill_midway_then_rerun_loses_and_duplicates_nothing(tmp_path):
    folder = tmp_path / "s"
    reference, ref_counts, _ = run(ITEMS, 5, tmp_path / "ref", "ctx", make_process([]))

    first = []
    with pytest.raises(Killed):
        shards.run_sharded(ITEMS, 5, folder, "ctx", make_process(first, kill_after=3))
    assert len(first) == 3 and len(list(folder.glob("shard-*.json"))) == 3
    # a kill during a write leaves only a temporary file behind, never a half shard
    (folder / ".shard-00003.json.abc.tmp").write_text('{"index": 3, "records": [')

    second = []
    records, counts, summary = run(ITEMS, 5, folder, "ctx", make_process(second))
    assert records == reference and counts == ref_counts
    assert second == [["q15", "q16", "q17", "q18", "q19"], ["q20", "q21", "q22"]]  # only the missing work
    assert summary.shards_reused == 3 and summary.shards_run == 2 and summary.shards_stale == 0
    ids = [r["id"] for r in records]
    assert len(ids) == len(set(ids)) == len(ITEMS)


def test_a_finished_run_is_all_reused(tmp_path):
    shards.run_sharded(ITEMS, 5, tmp_path, "ctx", make_process([]))
    calls = []
    _, _, summary = run(ITEMS, 5, tmp_path, "ctx", make_process(calls))
    assert calls == [] and summary.shards_reused == 5


@pytest.mark.parametrize(
    ("change", "redone"),
    [
        pytest.param("context", 5, id="settings-changed"),
        pytest.param("item", 1, id="one-query-changed"),
        pytest.param("shard-size", 4, id="shard-size-changed"),
        pytest.param("corrupt", 1, id="unreadable-shard-file"),
    ],
)
def test_stale_shards_are_made_again(tmp_path, change, redone):
    shards.run_sharded(ITEMS, 5, tmp_path, "ctx", make_process([]))
    items, ctx, size = [dict(x) for x in ITEMS], "ctx", 5
    if change == "context":
        ctx = "ctx2"
    elif change == "item":
        items[7]["text"] = "changed"
    elif change == "shard-size":
        size = 6
    else:
        (tmp_path / "shard-00002.json").write_text("{not json")
    calls = []
    records, _, summary = run(items, size, tmp_path, ctx, make_process(calls))
    assert len(calls) == redone
    assert [r["out"] for r in records] == [x["text"].upper() for x in items]


def test_shard_file_holds_range_fingerprint_records_and_counts(tmp_path):
    shards.run_sharded(ITEMS[:4], 3, tmp_path, "ctx", make_process([]))
    data = json.loads((tmp_path / "shard-00001.json").read_text())
    assert (data["index"], data["start"], data["stop"]) == (1, 3, 4)
    assert data["fingerprint"] == shards.fingerprint("ctx", shards.Shard(1, 3, 4), ITEMS[3:4])
    assert data["records"] == [{"id": "q3", "out": "QUERY 3"}] and data["counts"]["items"] == 1


def test_work_dir_lies_beside_the_output(tmp_path):
    # removing it is the stage runner's job, once metrics.json is written (tests/unit/test_stage_runner.py)
    out = tmp_path / "proposals.jsonl"
    work = shards.work_dir(out)
    assert work == tmp_path / "proposals.jsonl.shards"
    shards.run_sharded(ITEMS[:2], 1, work, "ctx", make_process([]))
    assert len(list(work.glob("*.json"))) == 2


def test_request_seed_depends_on_seed_key_and_round_only():
    a = request_seed(0, "q1")
    assert a == request_seed(0, "q1", 0)
    assert len({a, request_seed(1, "q1"), request_seed(0, "q2"), request_seed(0, "q1", 1)}) == 4
    assert 0 <= a < 2**32


# ------------------------------------------------------- scatter (parts I-of-N) and gather (the part files)
@pytest.mark.parametrize(
    ("n_shards", "num_jobs"),
    [(1, 1), (5, 1), (5, 2), (5, 5), (3, 8), (32, 4), (65, 8), (0, 3)],
    ids=lambda v: str(v),
)
def test_scatter_partition_covers_every_shard_exactly_once(n_shards, num_jobs, tmp_path):
    items = [{"id": f"q{i}", "text": str(i)} for i in range(n_shards * 2)]
    made: dict[int, list[list[str]]] = {}
    for job in range(num_jobs):
        made[job] = []
        shards.run_sharded(items, 2, tmp_path, "ctx", make_process(made[job]), job, num_jobs)
    index = [int(c[0][1:]) // 2 for calls in made.values() for c in calls]  # shard of each process call
    assert sorted(index) == list(range(n_shards))  # each shard made once, by one job
    for job, calls in made.items():
        assert all(shards.job_of(int(c[0][1:]) // 2, num_jobs) == job for c in calls)
        assert len(calls) in (n_shards // num_jobs, -(-n_shards // num_jobs))  # balanced: within one


def test_job_outside_the_scatter_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"job must lie in 0..2"):
        shards.run_sharded(ITEMS, 5, tmp_path, "ctx", make_process([]), job=3, num_jobs=3)
    with pytest.raises(ValueError, match="num_jobs must be >= 1"):
        shards.job_of(0, 0)


def scatter(tmp_path, num_jobs: int, order=None) -> list:
    """Every scatter job's part file (shards.sharded with part I-of-N), in `order` of the jobs."""
    parts = []
    for job in order or range(num_jobs):
        out = tmp_path / f"{job + 1}-of-{num_jobs}" / "part.json"
        records, _, _ = shards.sharded(
            ITEMS, 5, out, "ctx", make_process([]), part=f"{job + 1}-of-{num_jobs}"
        )
        assert records is None and out.is_file()  # a scatter job writes its part file, not the output
        parts.append(out)
    return parts


@pytest.mark.parametrize("num_jobs", [1, 2, 3, 5, 7])
def test_gathering_the_parts_equals_one_job(tmp_path, num_jobs):
    one, one_counts, one_summary = shards.sharded(
        ITEMS, 5, tmp_path / "one/out.jsonl", "ctx", make_process([])
    )
    parts = scatter(
        tmp_path, num_jobs, reversed(range(num_jobs))
    )  # the order the jobs run in does not matter
    calls = []
    records, counts, summary = shards.sharded(
        ITEMS, 5, tmp_path / "out.jsonl", "ctx", make_process(calls), parts=parts
    )
    assert calls == []  # the gather makes nothing
    assert json.dumps(records) == json.dumps(one) and counts == one_counts
    assert summary == one_summary == shards.ShardSummary(shards_total=5, shards_run=5)
    # each part holds the shards its job made, whole: the same shards, whichever the number of parts
    first = json.loads(parts[-1].read_text())
    assert first["part"] == f"1-of-{num_jobs}" and [s["index"] for s in first["shards"]] == list(
        range(0, 5, num_jobs)
    )
    assert first["shards"][0] == json.loads((tmp_path / "one/out.jsonl.shards/shard-00000.json").read_text())


def test_gather_names_shards_absent_repeated_or_stale(tmp_path):
    parts = scatter(tmp_path, 3)
    with pytest.raises(ValueError, match=r"absent or made from other inputs in 2 part file\(s\): \[1, 4\]"):
        shards.gather(ITEMS, 5, "ctx", [parts[0], parts[2]])
    with pytest.raises(ValueError, match="shard 0 is in two part files"):
        shards.gather(ITEMS, 5, "ctx", [parts[0], *parts])
    with pytest.raises(ValueError, match=r"\[0, 1, 2, 3, 4\]"):  # another context: every shard stale
        shards.gather(ITEMS, 5, "other ctx", parts)


@pytest.mark.parametrize("bad", ["3", "0-of-2", "3-of-2", "a-of-b", "1-of-"])
def test_a_part_is_snakemakes_scatteritem(bad):
    assert shards.parse_part("2-of-8") == (1, 8)
    with pytest.raises(ValueError, match="I-of-N|1..N"):
        shards.parse_part(bad)


def test_killed_scatter_job_reruns_only_its_missing_shards(tmp_path):
    items = [{"id": f"q{i}", "text": str(i)} for i in range(40)]  # 8 shards of 5; job 1 of 3: 1, 4, 7
    folder = tmp_path / "s"
    first = []
    with pytest.raises(Killed):
        shards.run_sharded(items, 5, folder, "ctx", make_process(first, kill_after=2), job=1, num_jobs=3)
    assert [c[0] for c in first] == ["q5", "q20"]  # shards 1 and 4 written, 7 lost in flight
    other = []
    shards.run_sharded(items, 5, folder, "ctx", make_process(other), job=0, num_jobs=3)
    assert [c[0] for c in other] == ["q0", "q15", "q30"]  # another job's shards are not its business

    again = []
    records, _, summary = run(items, 5, folder, "ctx", make_process(again), job=1, num_jobs=3)
    assert again == [[f"q{i}" for i in range(35, 40)]]  # only shard 7
    assert summary.as_dict() == {"shards_total": 3, "shards_reused": 2, "shards_run": 1, "shards_stale": 0}
    assert [r["id"] for r in records] == [f"q{i}" for s in (1, 4, 7) for i in range(5 * s, 5 * s + 5)]
