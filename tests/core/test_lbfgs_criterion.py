"""``minimise_lbfgs`` with a selection criterion: the returned iterate is the best-scoring one."""

import logging

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bayescore.core.errors import ArgumentError
from bayescore.core.optimise import minimise_lbfgs


def quadratic(p):
    return jnp.sum((p - jnp.arange(1.0, 4.0)) ** 2 * jnp.array([1.0, 10.0, 100.0]))


def test_criterion_returns_the_best_scored_iterate():
    start = jnp.zeros(3)
    last, losses = minimise_lbfgs(quadratic, start, 30, progress=False)
    assert float(quadratic(last)) < 1e-10
    # the negated loss ranks the start best: every iterate lowers the loss
    first, _ = minimise_lbfgs(quadratic, start, 30, criterion=lambda p: -quadratic(p),
                              progress=False)  # fmt: skip
    assert jnp.array_equal(first, start)
    # the loss itself as the criterion keeps the lowest iterate, here the last
    best, _ = minimise_lbfgs(quadratic, start, 30, criterion=quadratic, progress=False)
    assert float(quadratic(best)) == pytest.approx(float(quadratic(last)), abs=1e-12)


def test_criterion_checked_every_k_scores_only_those_iterates():
    start = jnp.zeros(3)
    # distance to a point on the path scored only at iterations 5, 10, ...: the returned
    # iterate is one of the scored ones, never the start (scored too, but farther)
    target, _ = minimise_lbfgs(quadratic, start, 5, progress=False)
    chosen, _ = minimise_lbfgs(quadratic, start, 20, criterion=lambda p: jnp.sum((p - target) ** 2),
                               check_every=5, progress=False)  # fmt: skip
    assert jnp.allclose(chosen, target)


def test_bad_check_every_raises():
    with pytest.raises(ArgumentError, match="check_every"):
        minimise_lbfgs(quadratic, jnp.zeros(3), 3, criterion=quadratic, check_every=0,
                       progress=False)  # fmt: skip


def test_a_longer_loop_runs_the_same_iterations_and_compiles_once(caplog):
    rosenbrock = eqx.Partial(lambda p: (1 - p[0]) ** 2 + 100 * (p[1] - p[0] ** 2) ** 2)
    start = jnp.array([-1.2, 1.0])
    exact, exact_losses = minimise_lbfgs(rosenbrock, start, 12, progress=False)
    chosen, _ = minimise_lbfgs(rosenbrock, start, 12, criterion=rosenbrock, check_every=5,
                               progress=False)  # fmt: skip
    with jax.log_compiles(True), caplog.at_level(logging.WARNING):
        (loop, loop_losses), (_, short_losses) = (
            minimise_lbfgs(rosenbrock, start, n, loop_steps=20, progress=False) for n in (12, 7)
        )
    compiled = [r for r in caplog.records if "compilation of jit(_lbfgs_scan)" in r.getMessage()]
    assert len(compiled) == 1  # both calls ran one compiled loop
    np.testing.assert_array_equal(loop, exact)
    np.testing.assert_array_equal(loop_losses, exact_losses)
    np.testing.assert_array_equal(short_losses, exact_losses[:7])
    looped, _ = minimise_lbfgs(rosenbrock, start, 12, criterion=rosenbrock, check_every=5,
                               loop_steps=20, progress=False)  # fmt: skip
    np.testing.assert_array_equal(looped, chosen)  # the last iterate (12) is still scored
    with pytest.raises(ArgumentError, match="at least num_steps"):
        minimise_lbfgs(rosenbrock, start, 12, loop_steps=5, progress=False)


def test_stop_on_stall_ends_at_the_first_iteration_without_decrease():
    # a loss with a floor it cannot go below in float64: L-BFGS reaches it, its line search
    # then finds no decrease; with stop_on_stall the rest are skipped, the point stays
    rosenbrock = eqx.Partial(lambda p: (1 - p[0]) ** 2 + 100 * (p[1] - p[0] ** 2) ** 2)
    start = jnp.array([-1.2, 1.0])
    full, full_losses = minimise_lbfgs(rosenbrock, start, 80, progress=False)
    stopped, losses = minimise_lbfgs(rosenbrock, start, 80, stop_on_stall=True, progress=False)
    decreasing = np.flatnonzero(np.diff(np.asarray(losses)) < 0)
    last = int(decreasing[-1]) + 1  # the loss before the stalled iteration
    assert last < 79  # it stalled before the end
    np.testing.assert_array_equal(losses[: last + 1], full_losses[: last + 1])
    np.testing.assert_array_equal(losses[last:], np.full(80 - last, losses[last]))
    assert float(rosenbrock(stopped)) == pytest.approx(float(losses[last]), abs=0)
    assert float(rosenbrock(stopped)) < 1e-20
    # with a criterion the stalled point is scored, so the best-scoring point can be it
    chosen, _ = minimise_lbfgs(rosenbrock, start, 80, criterion=rosenbrock, check_every=50,
                               stop_on_stall=True, progress=False)  # fmt: skip
    np.testing.assert_array_equal(chosen, stopped)
