"""The stage runner (aft.pipeline.stage.run_stage): parses, validates the sections, writes metrics.json
with provenance, logs under the outcome's name, and removes work folders only after metrics.json."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict, Field

from aft.pipeline.config import config_hash
from aft.pipeline.stage import Outcome, run_stage


class Toy(BaseModel):
    model_config = ConfigDict(extra="forbid")
    size: int = Field(gt=0)


def arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--work", type=Path, required=True)


def toy_stage(argv: list[str], seen: list, stage_name: str | None = None) -> None:
    def body(a: argparse.Namespace, cfg: dict) -> Outcome:
        # the work folder still exists while the body runs and when metrics.json is written
        seen.append((cfg["toy"], a.work.is_dir()))
        return Outcome({"items": 3 * cfg["toy"].size}, stage=stage_name, cleanup=[a.work])

    run_stage("toy", "Stage `toy`.", argv, arguments, {"toy": Toy}, body)


def argv_of(tmp_path: Path, size: int) -> list[str]:
    (tmp_path / "work").mkdir(exist_ok=True)
    cfg = json.dumps({"toy": {"size": size}, "other": {"ignored": True}})
    return [
        "--config",
        cfg,
        "--work",
        str(tmp_path / "work"),
        "--metrics",
        str(tmp_path / "metrics.json"),
        "--wildcards",
        "base=mini,variant=sft",
    ]


def test_runner_validates_runs_and_writes_metrics_with_provenance(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    seen: list = []
    toy_stage(argv_of(tmp_path, 2), seen)
    assert seen == [(Toy(size=2), True)]
    out = json.loads((tmp_path / "metrics.json").read_text())
    assert out["stage"] == "toy"
    assert out["metrics"]["items"] == 6
    assert out["metrics"]["wall_time_s"] >= 0.0
    assert out["provenance"]["config_hash.toy"] == config_hash(Toy(size=2))
    assert not (tmp_path / "work").exists()  # cleaned up after metrics.json


def test_outcome_names_the_logged_stage(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    toy_stage(argv_of(tmp_path, 1), [], stage_name="toy_part")
    assert json.loads((tmp_path / "metrics.json").read_text())["stage"] == "toy_part"


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        ({"toy": {"size": 0}}, "toy.size"),
        ({"toy": {"size": 1, "typo": 2}}, "toy.typo"),
        ({"other": {}}, "lacks section(s) ['toy']"),
    ],
    ids=["out-of-range", "unknown-key", "missing-section"],
)
def test_bad_sections_stop_before_the_body_naming_the_key(tmp_path, cfg, message):
    seen: list = []
    argv = argv_of(tmp_path, 1)
    argv[1] = json.dumps(cfg)
    with pytest.raises(SystemExit) as err:
        toy_stage(argv, seen)
    assert message in str(err.value)
    assert seen == [] and not (tmp_path / "metrics.json").exists()


def test_no_outcome_records_nothing(tmp_path):
    """A non-zero rank of a training job: the body runs, nothing is written."""
    ran = []

    def body(a: argparse.Namespace, cfg: dict) -> None:
        ran.append(True)

    run_stage("toy", None, argv_of(tmp_path, 1), arguments, {"toy": Toy}, body)
    assert ran == [True] and not (tmp_path / "metrics.json").exists()


def test_a_bad_input_line_stops_the_stage_naming_file_and_line(tmp_path):
    from aft.pipeline.io import read_jsonl

    (tmp_path / "in.jsonl").write_text('{"ok": 1}\n{"broken": \n')

    def body(a: argparse.Namespace, cfg: dict) -> Outcome:
        return Outcome({"rows": len(read_jsonl(tmp_path / "in.jsonl"))})

    with pytest.raises(SystemExit, match=r"^toy: .*in.jsonl:2: not valid JSON"):
        run_stage("toy", None, argv_of(tmp_path, 1), arguments, {"toy": Toy}, body)
    assert not (tmp_path / "metrics.json").exists()


def test_prepare_data_counts_every_row_it_skips():
    from aft.stages.prepare_data import training_queries

    rows = [{"instruction": "a"}, {"instruction": " a "}, {"instruction": ""}, {}, {"instruction": 3}]
    queries, drops = training_queries(rows)
    assert [q["messages"][0]["content"] for q in queries] == ["a"]
    assert drops == {
        "dropped_duplicate_instruction": 1,
        "dropped_empty_instruction": 2,
        "dropped_schema_instruction_not_string": 1,
    }
