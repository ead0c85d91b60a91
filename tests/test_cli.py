"""The bayescore command: info, demo --quick, bench on a tiny benchmark folder."""

import json
import subprocess
import sys

import pytest

from bayescore.cli import main
from bayescore.demo import SECTIONS


def test_info_lists_versions_devices_and_x64(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    for word in ("bayescore", "jax", "numpyro", "blackjax", "arviz", "devices", "x64"):
        assert word in out


@pytest.mark.parametrize("section", SECTIONS)
def test_demo_quick_writes_each_section(section, tmp_path):
    # One section per test, so the sections spread over the test workers; together they
    # are `make demo --quick`.
    out = tmp_path / "demo"
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "bayescore.cli",
            "demo",
            "--quick",
            "--section",
            section,
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    page = (out / "index.html").read_text()
    assert "<h2>" in page and ("<img" in page or "<table" in page)
    if section == "foundation":
        assert "eight schools" in page and "<table" in page and "r_hat" in page
        assert (out / "eight_schools_trace.png").stat().st_size > 10_000
        assert (out / "eight_schools_posterior.nc").stat().st_size > 10_000


def test_bench_runs_each_module_and_writes_results(tmp_path, capsys):
    (tmp_path / "toy.py").write_text(
        "def run(quick=False):\n"
        "    return {'rows': [{'ratio': 1.0, 'quick': quick}], 'markdown': '| a |\\n|---|'}\n"
    )
    assert main(["bench", "--quick", "--dir", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "results" / "toy.json").read_text())
    assert rows["rows"] == [{"ratio": 1.0, "quick": True}] and rows["area"] == "toy"
    assert (tmp_path / "results" / "toy.md").read_text().startswith("# toy")


def test_bench_unknown_area_is_a_clear_error(tmp_path, capsys):
    assert main(["bench", "nope", "--dir", str(tmp_path)]) == 2
    assert "no benchmark for ['nope']" in capsys.readouterr().err
