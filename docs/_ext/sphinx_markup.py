"""Griffe extension for the docs build: render the Sphinx markup bayescore docstrings use.

The docstrings are Google-style, with a little reStructuredText inside: roles such as
``:class:`~bayescore.core.target.Target``` or ``:math:`\\bar\\epsilon``` and ``.. math::``
blocks. mkdocstrings renders docstrings as Markdown, so this rewrites them, before parsing,
into what the site understands:

* ``:class:`~a.b.C``` -> ```C``` (the ``~`` keeps the last name only, as in Sphinx),
  ``:meth:`Target.init``` -> ```Target.init```; the same for ``func``, ``mod``, ``attr``,
  ``data``, ``exc``, ``obj``;
* ``:math:`x``` -> ``\\(x\\)`` and a ``.. math::`` block -> ``\\[ ... \\]``, typeset by
  ``pymdownx.arithmatex`` and MathJax.

It changes only the rendered text: no docstring in bayescore/ is edited and no warning is
silenced.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(?:class|meth|func|mod|attr|data|exc|obj):`(~?)([^`]+)`")
_MATH_ROLE = re.compile(r":math:`([^`]+)`")


def _role(match: re.Match) -> str:
    tilde, target = match.groups()
    return f"`{target.rsplit('.', 1)[-1] if tilde else target}`"


def _math_blocks(text: str) -> str:
    lines = text.split("\n")
    out: list[str] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        stripped = line.lstrip()
        if stripped.startswith(".. math::"):
            indent = line[: len(line) - len(stripped)]
            body: list[str] = []
            first = stripped[len(".. math::") :].strip()
            if first:
                body.append(first)
            index += 1
            while index < len(lines) and (
                not lines[index].strip() or lines[index].startswith(indent + " ")
            ):
                body.append(lines[index].strip())
                index += 1
            while body and not body[-1]:
                body.pop()
            equation = " ".join(part for part in body if part)
            if out and out[-1].strip():
                out.append("")
            out += [f"{indent}\\[", f"{indent}{equation}", f"{indent}\\]", ""]
            continue
        out.append(line)
        index += 1
    return "\n".join(out)


def to_markdown(text: str) -> str:
    """The docstring ``text`` with its Sphinx roles and math blocks rewritten as Markdown."""
    text = _math_blocks(text)
    text = _MATH_ROLE.sub(lambda match: f"\\({match.group(1)}\\)", text)
    return _ROLE.sub(_role, text)


class SphinxMarkup(griffe.Extension):
    """Rewrite every loaded object's docstring with :func:`to_markdown`."""

    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = to_markdown(obj.docstring.value)
