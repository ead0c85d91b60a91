"""Every example script runs end to end in its quick mode.

Except the scripts in ``SAME_AS_DEMO``: each is a few lines around one function of
``bayescore.demo`` that the demo section of the same area runs with the same arguments in
``tests/test_cli.py`` (``bayescore demo --quick --section AREA``), so running the script too
would repeat minutes of the same computation.
"""

import pathlib
import subprocess
import sys

import pytest

EXAMPLES = sorted((pathlib.Path(__file__).parent.parent / "examples").glob("*.py"))
SAME_AS_DEMO = {
    "tucker_synthetic": "bayescore.demo.tucker.compare(quick=True), run by the tucker section",
    "pde_gphm": "bayescore.demo.pde.compare(quick=True), run by the pde section",
}


def test_skipped_examples_exist_and_call_the_demo():
    names = {path.stem: path for path in EXAMPLES}
    for name, reason in SAME_AS_DEMO.items():
        module = reason.split(".compare")[0]
        assert f"from {module} import compare" in names[name].read_text()


@pytest.mark.parametrize("script", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_runs_quick(script, tmp_path):
    if script.stem in SAME_AS_DEMO:
        pytest.skip(f"its computation is {SAME_AS_DEMO[script.stem]}")
    completed = subprocess.run(
        [sys.executable, str(script), "--quick"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert any(tmp_path.iterdir())  # it wrote its outputs
