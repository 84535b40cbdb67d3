"""Sharded, resumable generation: a kill mid-way loses and duplicates nothing on the rerun."""

import json
from collections import Counter

import pytest

from aft import shards

ITEMS = [{"id": f"q{i}", "text": f"query {i}"} for i in range(23)]


class Killed(Exception):
    """Stands in for SIGKILL: the process stops between two statements."""


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
    records, counts, summary = shards.run_sharded(ITEMS, 5, tmp_path / "s", "ctx", make_process(calls))
    assert [r["id"] for r in records] == [x["id"] for x in ITEMS]
    assert counts == Counter(items=23, tokens_out=15)
    assert summary.as_dict() == {"shards_total": 5, "shards_reused": 0, "shards_run": 5, "shards_stale": 0}
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == [f"shard-0000{i}.json" for i in range(5)]


def test_kill_midway_then_rerun_loses_and_duplicates_nothing(tmp_path):
    folder = tmp_path / "s"
    reference, ref_counts, _ = shards.run_sharded(ITEMS, 5, tmp_path / "ref", "ctx", make_process([]))

    first = []
    with pytest.raises(Killed):
        shards.run_sharded(ITEMS, 5, folder, "ctx", make_process(first, kill_after=3))
    assert len(first) == 3 and len(list(folder.glob("shard-*.json"))) == 3
    # a kill during a write leaves only a temporary file behind, never a half shard
    (folder / ".shard-00003.json.abc.tmp").write_text('{"index": 3, "records": [')

    second = []
    records, counts, summary = shards.run_sharded(ITEMS, 5, folder, "ctx", make_process(second))
    assert records == reference and counts == ref_counts
    assert second == [["q15", "q16", "q17", "q18", "q19"], ["q20", "q21", "q22"]]  # only the missing work
    assert summary.shards_reused == 3 and summary.shards_run == 2 and summary.shards_stale == 0
    ids = [r["id"] for r in records]
    assert len(ids) == len(set(ids)) == len(ITEMS)


def test_a_finished_run_is_all_reused(tmp_path):
    shards.run_sharded(ITEMS, 5, tmp_path, "ctx", make_process([]))
    calls = []
    _, _, summary = shards.run_sharded(ITEMS, 5, tmp_path, "ctx", make_process(calls))
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
    records, _, summary = shards.run_sharded(items, size, tmp_path, ctx, make_process(calls))
    assert len(calls) == redone
    assert [r["out"] for r in records] == [x["text"].upper() for x in items]


def test_shard_file_holds_range_fingerprint_records_and_counts(tmp_path):
    shards.run_sharded(ITEMS[:4], 3, tmp_path, "ctx", make_process([]))
    data = json.loads((tmp_path / "shard-00001.json").read_text())
    assert (data["index"], data["start"], data["stop"]) == (1, 3, 4)
    assert data["fingerprint"] == shards.fingerprint("ctx", shards.Shard(1, 3, 4), ITEMS[3:4])
    assert data["records"] == [{"id": "q3", "out": "QUERY 3"}] and data["counts"]["items"] == 1


def test_work_dir_and_remove(tmp_path):
    out = tmp_path / "proposals.jsonl"
    work = shards.work_dir(out)
    assert work == tmp_path / "proposals.jsonl.shards"
    shards.run_sharded(ITEMS[:2], 1, work, "ctx", make_process([]))
    shards.remove(work)
    assert not work.exists()


def test_request_seed_depends_on_seed_key_and_round_only():
    a = shards.request_seed(0, "q1")
    assert a == shards.request_seed(0, "q1", 0)
    assert (
        len({a, shards.request_seed(1, "q1"), shards.request_seed(0, "q2"), shards.request_seed(0, "q1", 1)})
        == 4
    )
    assert 0 <= a < 2**32
