"""The ``bayescore`` command: ``info``, ``demo`` and ``bench``.

Example:
    >>> from bayescore.cli import build_parser
    >>> build_parser().parse_args(["demo", "--quick"]).quick
    True
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

PACKAGES = [
    "bayescore",
    "jax",
    "jaxlib",
    "numpyro",
    "blackjax",
    "gpjax",
    "flowjax",
    "equinox",
    "optax",
    "arviz",
    "xarray",
    "numpy",
]


def info() -> str:
    """Versions, devices and the x64 flag, one per line.

    Example:
        >>> from bayescore.cli import info
        >>> "jax" in info()
        True
    """
    import jax

    lines = [f"python      {platform.python_version()} ({sys.executable})"]
    for package in PACKAGES:
        try:
            lines.append(f"{package:<11} {version(package)}")
        except PackageNotFoundError:
            lines.append(f"{package:<11} not installed")
    lines.append(f"backend     {jax.default_backend()}")
    lines.append(f"devices     {', '.join(str(d) for d in jax.devices())}")
    lines.append(f"x64         {bool(jax.config.read('jax_enable_x64'))}")
    return "\n".join(lines)


def find_benchmarks(directory: str | None) -> Path:
    """The ``benchmarks/`` folder: ``directory``, else ``./benchmarks``, else the source tree's.

    Example:
        >>> from bayescore.cli import find_benchmarks
        >>> find_benchmarks(None).name
        'benchmarks'
    """
    candidates = (
        [Path(directory)]
        if directory
        else [Path.cwd() / "benchmarks", Path(__file__).resolve().parent.parent / "benchmarks"]
    )
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    from bayescore.core.errors import ArgumentError

    raise ArgumentError(
        f"no benchmarks folder at {', '.join(str(c) for c in candidates)}. Run `bayescore "
        "bench` from a checkout of the bayescore repository, or pass --dir."
    )


def bench(areas: list[str], quick: bool, directory: str | None) -> list[Path]:
    """Run ``benchmarks/<area>.py`` (all when ``areas`` is empty), write results, return paths.

    Each module's ``run(quick) -> {"area", "rows", "markdown"}`` is called in this process;
    ``results/<area>.json`` holds the rows and ``results/<area>.md`` the table.
    """
    folder = find_benchmarks(directory)
    modules = sorted(p for p in folder.glob("*.py") if not p.name.startswith("_"))
    if areas:
        wanted = set(areas)
        unknown = wanted - {p.stem for p in modules}
        if unknown:
            from bayescore.core.errors import ArgumentError

            raise ArgumentError(
                f"no benchmark for {sorted(unknown)}; available: {[p.stem for p in modules]}."
            )
        modules = [p for p in modules if p.stem in wanted]
    results = folder / "results"
    results.mkdir(exist_ok=True)
    # The modules share benchmarks/core.py as `import core`, as when run as scripts.
    sys.path.insert(0, str(folder))
    try:
        return _run_benchmarks(modules, results, quick)
    finally:
        sys.path.remove(str(folder))


def _run_benchmarks(modules: list[Path], results: Path, quick: bool) -> list[Path]:
    written = []
    for path in modules:
        spec = importlib.util.spec_from_file_location(f"bayescore_bench_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        if not hasattr(module, "run"):
            continue
        print(f"== {path.stem} ==", flush=True)
        outcome = module.run(quick=quick)
        outcome.setdefault("area", path.stem)
        outcome["quick"] = quick
        # Results are committed: the interpreter's path names the machine, so it is dropped.
        outcome["environment"] = [
            f"python      {platform.python_version()}" if line.startswith("python ") else line
            for line in info().splitlines()
        ]
        json_path = results / f"{path.stem}.json"
        json_path.write_text(json.dumps(outcome, indent=2, default=str))
        md_path = results / f"{path.stem}.md"
        md_path.write_text(f"# {path.stem}\n\n{outcome.get('markdown', '')}\n")
        print(outcome.get("markdown", ""), flush=True)
        written += [json_path, md_path]
    return written


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``bayescore`` command."""
    parser = argparse.ArgumentParser(prog="bayescore", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("info", help="versions, devices and the x64 flag")
    demo = commands.add_parser("demo", help="write bayescore-demo/index.html")
    demo.add_argument("--out", default="bayescore-demo", help="output folder")
    demo.add_argument("--quick", action="store_true", help="small runs (CI smoke test)")
    demo.add_argument(
        "--section", action="append", default=[], help="run only this section (repeatable)"
    )
    bench_parser = commands.add_parser("bench", help="run benchmarks/ and write results/")
    bench_parser.add_argument("areas", nargs="*", help="benchmark modules to run (default all)")
    bench_parser.add_argument("--quick", action="store_true", help="small sizes")
    bench_parser.add_argument("--dir", default=None, help="the benchmarks folder")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``bayescore`` command."""
    from bayescore.core.errors import BayescoreError

    args = build_parser().parse_args(argv)
    try:
        if args.command == "info":
            print(info())
        elif args.command == "demo":
            from bayescore.demo import build_demo

            index = build_demo(Path(args.out), quick=args.quick, sections=args.section)
            print(f"wrote {index}")
        elif args.command == "bench":
            for path in bench(args.areas, args.quick, args.dir):
                print(f"wrote {path}")
    except BayescoreError as error:
        print(f"bayescore {args.command}: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
