"""aft.tools.compare on two runs written the way the stage runner writes them (metrics.json with its
outputs' fingerprints): the first differing job along the DAG, and why it differs."""

from __future__ import annotations

import json
from pathlib import Path

from aft.tools import compare

SECTIONS = {"config_hash.data": "d0", "config_hash.base": "b0"}


def write_job(tree: Path, folder: str, stage: str, outputs: dict, metrics: dict, hashes: dict | None = None):
    wildcards = dict(kv.split("=") for kv in folder.split("/")[2:-1] if "=" in kv)
    path = tree / folder / "metrics.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {
        "stage": stage,
        "wildcards": wildcards,
        "metrics": metrics,
        "provenance": hashes or SECTIONS,
        "outputs": outputs,
    }
    path.write_text(json.dumps(body))


def make_run(tree: Path, base_sha: str, accuracy: float, train_key: str = "bbbbbbbbbb") -> None:
    write_job(
        tree, "results/prepare_data/aaaaaaaaaa", "prepare_data", {"q.jsonl": {"q.jsonl": "11"}}, {"n": 5}
    )
    write_job(
        tree,
        "results/build_base/base=mini/cccccccccc",
        "build_base",
        {"model": {"w": base_sha}},
        {"loss": 1.0},
    )
    write_job(
        tree,
        f"results/train_model/base=mini/{train_key}",
        "train_model",
        {"model": {"w": base_sha + "t"}},
        {"final_loss": 0.5 if base_sha == "fc79" else 0.51, "wall_time_s": 3.0},
        {"config_hash.train": train_key[:2]},
    )
    write_job(
        tree,
        "results/judge_answers/base=mini/dddddddddd",
        "judge_answers",
        {"r.json": {"r.json": str(accuracy)}},
        {"accuracy": accuracy},
    )


def test_the_first_difference_is_the_earliest_stage_that_wrote_other_bytes(tmp_path, capsys):
    make_run(tmp_path / "a", "fc79", 47.7)
    make_run(tmp_path / "b", "d336", 46.1)
    code = compare.main([str(tmp_path / "a"), str(tmp_path / "b")])
    out = capsys.readouterr().out
    assert code == 1
    assert "4 jobs paired: 1 the same." in out
    assert "First difference along the DAG: build_base[base=mini]: bytes: same job (key cccccccccc)" in out
    assert "model/w" in out
    assert "| judge_answers[base=mini] | bytes |" in out and "accuracy: 47.7 -> 46.1" in out
    assert "wall_time_s" not in out  # noise left out


def test_identical_runs_compare_equal(tmp_path, capsys):
    make_run(tmp_path / "a", "fc79", 47.7)
    make_run(tmp_path / "b", "fc79", 47.7)
    assert compare.main([str(tmp_path / "a"), str(tmp_path / "b")]) == 0
    assert "No job differs." in capsys.readouterr().out


def test_two_experiments_differ_by_their_settings_and_share_the_rest(tmp_path):
    tree = tmp_path / "t"
    make_run(tree, "fc79", 47.7, train_key="bbbbbbbbbb")
    make_run(tree, "fc79", 47.7, train_key="eeeeeeeeee")
    files = sorted(str(p.relative_to(tree)) for p in (tree / "results").rglob("metrics.json"))
    for name, key in (("one", "bbbbbbbbbb"), ("two", "eeeeeeeeee")):
        listed = [f for f in files if "train_model" not in f or key in f]
        (tree / "reports" / name).mkdir(parents=True)
        (tree / "reports" / name / "artifacts.json").write_text(
            json.dumps({"experiment": name, "jobs": [{"metrics_file": f} for f in listed]})
        )
    a, tree_a = compare.load_run(tree / "reports" / "one")
    b, _ = compare.load_run(tree / "reports" / "two")
    assert not tree_a
    pairs = compare.pair_runs(a, b)
    kinds = {p.a.stage: (p.kind, p.detail) for p in pairs}
    assert kinds["prepare_data"][0] == "same" and kinds["build_base"][0] == "same"
    assert kinds["train_model"] == (
        "settings",
        "keys bbbbbbbbbb and eeeeeeeeee: config sections train differ",
    )


def test_the_claims_of_two_reports_side_by_side():
    claim = {"base": "mini", "bench": "exact_match", "claim": "AFT-off-policy > SFT"}
    a = {"claims": [claim | {"difference": 4.0, "lo": 1.9, "hi": 6.2, "verdict": "reproduced"}]}
    b = {"claims": [claim | {"difference": 1.0, "lo": -1.5, "hi": 3.5, "verdict": "inconclusive"}]}
    table = compare.claims_side_by_side(a, b, ("miniature", "agg_depth3"))
    assert "| mini | exact_match | AFT-off-policy > SFT | +4.0 [+1.9, +6.2] reproduced |" in table
    assert "+1.0 [-1.5, +3.5] inconclusive |" in table
