"""experiments/reproduce_math.py: the table, report.md with working figure links, bad input."""
import os
import re
import subprocess
import sys

import pytest

from experiments import reproduce_math
from tests.conftest import REPO


def test_report_of_item_1(tmp_path):
    out = str(tmp_path / "math")
    reports = reproduce_math.run_items(out, ["1"], echo=lambda *_: None)
    path = reproduce_math.write_report(out, reports, "python -m experiments.reproduce_math --items=1", 1.0)
    text = open(path).read()
    assert "**5 of 5 checks pass.**" in text
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert links and all(os.path.exists(os.path.join(out, link)) for link in links)
    table = reproduce_math.format_table(reports)
    assert table.splitlines()[0].split() == ["item", "formula", "measured", "expected", "tolerance", "result"]
    assert [line.split()[-1] for line in table.splitlines()[1:]] == ["pass"] * 5


def test_unknown_item_is_named(tmp_path):
    with pytest.raises(ValueError, match="unknown item"):
        reproduce_math.run_items(str(tmp_path), ["7"])


def test_missing_out_is_a_one_line_error():
    result = subprocess.run([sys.executable, "-m", "experiments.reproduce_math"], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == "error: --out is required, e.g. --out=runs/math"
