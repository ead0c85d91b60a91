"""``bayescore demo``: one HTML page with a section per area, plots, tables and posteriors.

Each section is a module in this package with ``TITLE`` and ``run(section, quick)``; it adds
paragraphs, tables, figures and netCDF files of its posteriors to the :class:`Section` it is
given. Add a module and list it in :data:`SECTIONS` to add a section.

Example:
    >>> from bayescore.demo import SECTIONS
    >>> SECTIONS[0]
    'foundation'
"""

from __future__ import annotations

import html
import importlib
import time
from pathlib import Path
from typing import Any

SECTIONS = [
    "foundation",
    "langevin",
    "sgmcmc",
    "flows",
    "vi",
    "bridge",
    "tucker",
    "pde",
    "programs",
]

_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; color: #222; }
h1 { border-bottom: 2px solid #345; } h2 { color: #345; margin-top: 2em; }
table { border-collapse: collapse; font-size: 0.85em; margin: 1em 0; }
td, th { border: 1px solid #ccc; padding: 2px 8px; text-align: right; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.5em 0; }
.note { color: #555; font-size: 0.9em; }
"""


class Section:
    """The part of the page one demo module writes.

    Example:
        >>> import tempfile, pathlib
        >>> from bayescore.demo import Section
        >>> section = Section("Test", pathlib.Path(tempfile.mkdtemp()))
        >>> section.text("Hello.")
        >>> "Hello." in section.html()
        True
    """

    def __init__(self, title: str, folder: Path) -> None:
        self.title = title
        self.folder = folder
        self.parts: list[str] = []

    def text(self, paragraph: str) -> None:
        """A paragraph (plain text, escaped)."""
        self.parts.append(f"<p>{html.escape(paragraph)}</p>")

    def table(self, frame: Any, caption: str = "") -> None:
        """A pandas DataFrame (e.g. ``az.summary``) as an HTML table."""
        cap = f"<p class='note'>{html.escape(caption)}</p>" if caption else ""
        self.parts.append(cap + frame.to_html(border=0))

    def figure(self, figure: Any, name: str, caption: str = "") -> Path:
        """A matplotlib Figure or ArviZ PlotCollection, saved as ``name.png``."""
        path = self.folder / f"{name}.png"
        figure.savefig(path, dpi=90, bbox_inches="tight") if hasattr(figure, "dpi") else (
            figure.savefig(path)
        )
        import matplotlib.pyplot as plt

        plt.close("all")
        cap = f"<p class='note'>{html.escape(caption)}</p>" if caption else ""
        self.parts.append(f"<img src='{path.name}' alt='{html.escape(name)}'>{cap}")
        return path

    def netcdf(self, tree: Any, name: str) -> Path:
        """Write a DataTree to ``name.nc`` and link it."""
        path = self.folder / f"{name}.nc"
        tree.to_netcdf(path, engine="h5netcdf")
        self.parts.append(
            f"<p class='note'>Posterior: <a href='{path.name}'>{path.name}</a>"
            " (open with <code>xarray.open_datatree</code>)</p>"
        )
        return path

    def html(self) -> str:
        return f"<h2>{html.escape(self.title)}</h2>\n" + "\n".join(self.parts)


def build_demo(out: Path, *, quick: bool = False, sections: list[str] | None = None) -> Path:
    """Run the demo sections and write ``out/index.html``; return its path.

    Example:
        >>> from bayescore.demo import build_demo
        >>> callable(build_demo)
        True
    """
    import matplotlib

    matplotlib.use("Agg")
    import bayescore

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    names = sections or SECTIONS
    unknown = [name for name in names if name not in SECTIONS]
    if unknown:
        from bayescore.core.errors import ArgumentError

        raise ArgumentError(f"unknown demo section(s) {unknown}; available: {SECTIONS}.")
    body = []
    for name in names:
        module = importlib.import_module(f"bayescore.demo.{name}")
        section = Section(module.TITLE, out)
        start = time.perf_counter()
        module.run(section, quick=quick)
        section.parts.append(
            f"<p class='note'>Section ran in {time.perf_counter() - start:.1f} s"
            f"{' (quick mode)' if quick else ''}.</p>"
        )
        body.append(section.html())
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>bayescore demo</title>"
        f"<style>{_STYLE}</style></head><body><h1>bayescore {bayescore.__version__} demo"
        f"</h1>\n" + "\n".join(body) + "</body></html>"
    )
    index = out / "index.html"
    index.write_text(page)
    return index
