"""Every example script runs end to end in its quick mode.

Except the scripts in ``SAME_AS_DEMO``: each is a few lines around one function of
``bayescore.demo`` that the demo section of the same area runs with the same arguments in
``tests/test_cli.py`` (``bayescore demo --quick --section AREA``), so running the script too
would repeat minutes of the same computation.
"""

import pathlib
import re
import subprocess
import sys

import pytest

DEMO = pathlib.Path(__file__).parent.parent / "bayescore" / "demo"
DEMO_SOURCES = {path.stem: path.read_text() for path in DEMO.glob("*.py")}
EXAMPLES = sorted((pathlib.Path(__file__).parent.parent / "examples").glob("*.py"))
SAME_AS_DEMO = {  # script: (demo section, its function the script calls, with the arguments)
    "tucker_synthetic": ("tucker", "compare", "quick"),
    "flows_energies": ("flows", "energy_comparison", "quick"),
    "pde_gphm": ("pde", "compare", "quick"),
    "bridge_follmer_logistic": ("bridge", "follmer_comparison", "250 if quick else 1000"),
    "programs_gp_regression": ("programs", "regression_posterior", "1500 if quick else 6000"),
    "programs_dp_mixture": ("programs", "cluster_posterior", "100 if quick else 1000"),
    "programs_changepoint": ("programs", "changepoint_posterior", "800 if quick else 5000"),
}


def test_skipped_examples_exist_and_call_the_demo():
    names = {path.stem: path for path in EXAMPLES}
    for name, (section, function, arguments) in SAME_AS_DEMO.items():
        text = names[name].read_text()
        assert re.search(rf"from bayescore.demo.{section} import .*\b{function}\b", text)
        assert f"{function}({arguments})" in text
        assert f"{function}({arguments})" in DEMO_SOURCES[section]


@pytest.mark.parametrize("script", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_runs_quick(script, tmp_path):
    if script.stem in SAME_AS_DEMO:
        section, function, arguments = SAME_AS_DEMO[script.stem]
        pytest.skip(
            f"its computation is bayescore.demo.{section}.{function}({arguments}) with "
            f"quick=True, run by the {section} section"
        )
    completed = subprocess.run(
        [sys.executable, str(script), "--quick"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert any(tmp_path.iterdir())  # it wrote its outputs
