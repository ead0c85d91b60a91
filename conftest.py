"""Test-session plumbing for the whole tree (the tests and the docstring examples)."""

import gc
import os


# XLA's CPU compiler with its older (non-MLIR) fusion emitters. The suite's time is mostly
# compilation (about two thirds of its CPU time on 2 cores), much of it small programs. The
# older emitters compile faster (481 small eager ops: 22 s -> 16 s; the cold suite's backend
# compile time 2100 s -> 1380 s, its wall time 29 -> 22 min) and run a long loop slower (a
# MALA loop about 1.3x per step), which the tests' short runs do not feel. Set before JAX
# starts its CPU backend, and inherited by the scripts the tests start (so their programs,
# and their draws, are compiled the same way). Only for the jaxlib versions the project
# pins: XLA aborts on a flag it does not know.
def _use_older_cpu_emitters() -> None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        known = version("jaxlib").startswith("0.10.")
    except PackageNotFoundError:
        known = False
    flags = os.environ.get("XLA_FLAGS", "")
    if known and "xla_cpu_use_fusion_emitters" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} --xla_cpu_use_fusion_emitters=false".strip()


_use_older_cpu_emitters()

# Every compiled CPU program JAX keeps holds about three memory mappings, and Linux allows a
# process 65,530 (vm.max_map_count). A test worker that runs half the suite keeps tens of
# thousands of programs in JAX's caches (each test builds new closures, so little is shared):
# logged per test, one worker reached 65,362 mappings at 85 % of a run and segfaulted in the
# next compile (a failed mmap inside XLA's compiler; other runs saw aborts, always in
# whichever compile came next). One module adds at most about 13,000 (tests/models/test_pde),
# so when a worker moves to another module holding more than MAX_MAPPINGS, it drops its
# compiled programs; those worth keeping come back from the persistent compilation cache.
MAX_MAPPINGS = 30_000


def _mappings() -> int:
    try:
        with open("/proc/self/maps", "rb") as maps:
            return sum(1 for _ in maps)
    except OSError:  # not Linux: no such limit to stay under
        return 0


def pytest_runtest_teardown(item, nextitem):
    if nextitem is not None and nextitem.path == item.path:
        return
    if _mappings() > MAX_MAPPINGS:
        import jax

        jax.clear_caches()
        gc.collect()
