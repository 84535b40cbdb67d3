"""The docs' numbers come from commands: each generated page is what its command writes today, and the
README stays a newcomer's page."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT


def test_the_paper_cost_page_is_what_the_cost_command_prints():
    page = (ROOT / "docs/results/paper_costs.md").read_text()
    header, _, body = page.partition("\n\n")
    assert "python -m aft.tools.costs --configfile config/paper.yaml" in header and "make docs" in header
    out = subprocess.run(
        [sys.executable, "-m", "aft.tools.costs", "--configfile", "config/paper.yaml"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert body == out, "docs/results/paper_costs.md is stale: run `make docs`"


def test_the_readme_is_at_most_150_lines_and_starts_with_the_two_commands():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 150
    block = lines[lines.index("```bash") + 1 : lines.index("```")]
    assert [x.split()[:2] for x in block] == [["make", "run"], ["make", "test"]]


def test_every_doc_the_readme_links_exists():
    import re

    text = (ROOT / "README.md").read_text()
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text)
    assert links and [x for x in links if not (ROOT / x).exists()] == []
