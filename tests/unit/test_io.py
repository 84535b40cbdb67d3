"""Reading and writing records: a bad line is named by file and line; writes are atomic, UTF-8 and
honour the umask."""

from __future__ import annotations

import json
import os
import stat

import pytest

from aft.pipeline.io import UMASK, BadRecord, atomic_write_text, read_jsonl
from aft.pipeline.sources import read_records

GOOD = b'{"instruction": "q1"}\n\n{"instruction": "q2 \xc3\xa9"}\n'
BAD_LINES = [
    ("not-utf8", GOOD + b'{"instruction": "\xff"}\n', "rows.jsonl:4: not UTF-8 (byte 17)"),
    ("invalid-json", GOOD + b'{"instruction": q3}\n', "rows.jsonl:4: not valid JSON (Expecting value"),
    ("truncated", GOOD + b'{"instruction": "q3", "compl', "rows.jsonl:4: not valid JSON"),
    ("not-an-object", GOOD + b'["q3"]\n', "rows.jsonl:4: a record must be a JSON object, got list"),
]


def test_good_lines_are_read_as_utf8_whatever_the_locale(tmp_path):
    (tmp_path / "rows.jsonl").write_bytes(GOOD)
    assert read_jsonl(tmp_path / "rows.jsonl") == [{"instruction": "q1"}, {"instruction": "q2 é"}]


@pytest.mark.parametrize(("case", "data", "expected"), BAD_LINES, ids=[b[0] for b in BAD_LINES])
def test_a_bad_line_is_named_by_file_and_line(tmp_path, case, data, expected):
    path = tmp_path / "rows.jsonl"
    path.write_bytes(data)
    for reader in (read_jsonl, read_records):
        with pytest.raises(BadRecord) as err:
            reader(path)
        assert expected in str(err.value)


def test_a_json_file_must_be_a_list_of_objects(tmp_path):
    (tmp_path / "a.json").write_text('{"not": "a list"}')
    (tmp_path / "b.json").write_text('[{"ok": 1}, 2]')
    with pytest.raises(BadRecord, match="expected a JSON list of records, got dict"):
        read_records(tmp_path / "a.json")
    with pytest.raises(BadRecord, match="record 1 must be a JSON object, got int"):
        read_records(tmp_path / "b.json")


def test_atomic_writes_are_utf8_and_take_the_umask_mode(tmp_path):
    path = tmp_path / "out.json"
    atomic_write_text(path, json.dumps({"a": "é"}, ensure_ascii=False))
    assert path.read_bytes() == '{"a": "é"}'.encode()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o666 & ~UMASK  # not mkstemp's 0600
    assert not list(tmp_path.glob(".*.tmp"))
