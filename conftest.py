"""Test-session plumbing for the whole tree (the tests and the docstring examples)."""

import gc

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
