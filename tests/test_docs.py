"""The Python code blocks of the README and every docs page run, each page as one script.

A page's ```python blocks are joined in order and run in a fresh interpreter, as a reader
pasting them top to bottom would. Pages whose blocks are signatures rather than programs are
listed in ``SKETCHES`` with the reason; a new page is tested unless it is added there.
"""

import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).parent.parent
SKETCHES = {"docs/architecture.md": "class and function signatures with `...` bodies"}
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def pages() -> list[pathlib.Path]:
    found = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    return [
        page
        for page in found
        if BLOCK.search(page.read_text()) and str(page.relative_to(ROOT)) not in SKETCHES
    ]


PAGES = pages()


def test_pages_found():
    names = {str(page.relative_to(ROOT)) for page in PAGES}
    assert {"README.md", "docs/concepts.md", "docs/langevin.md"} <= names


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_page_code_runs(page, tmp_path):
    script = tmp_path / "page.py"
    script.write_text("\n".join(BLOCK.findall(page.read_text())))
    completed = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "MPLBACKEND": "Agg"},
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
