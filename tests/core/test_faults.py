"""Numerical faults: a NaN or inf in a chain's state is detected, recorded and handled by
``bc.sample(on_fault=...)``, never passed on into the posterior."""

import jax.numpy as jnp
import numpy as np
import pytest

import bayescore as bc
from bayescore.core.errors import ArgumentError, NumericalError


def nan_above_two(params):
    """A standard normal whose log density and gradient are NaN for x > 2."""
    x = params["x"]
    return -0.5 * x**2 + jnp.where(x > 2.0, jnp.sqrt(2.0 - x), 0.0)


TARGET = bc.Target.from_logdensity(nan_above_two, {"x": 0.0})
# Unadjusted Langevin has no accept step to reject a NaN proposal: with h = 0.5 a chain
# steps past x = 2 every few dozen steps, so some of the 8 chains do within 60 draws.
ULA = bc.inference.ula(step_size=0.5, adapt_step_size=False, adapt_mass_matrix=False)
RUN = dict(num_samples=60, num_warmup=0, num_chains=8, key=3, progress=False)


@pytest.fixture(scope="module")
def restarted():
    return bc.sample(ULA, TARGET, on_fault="restart_from_last_good", **RUN)


def test_restart_rejects_the_faulty_steps(restarted):
    x = np.asarray(restarted.positions["x"])
    faults = np.asarray(restarted.stats["nonfinite"])
    faulty_chains = np.flatnonzero(faults.any(axis=1))
    assert 0 < len(faulty_chains) < RUN["num_chains"]  # the seed gives both kinds
    assert np.isfinite(x).all() and (x <= 2.0).all()
    chain, draw = np.argwhere(faults[:, 1:])[0]
    assert x[chain, draw + 1] == x[chain, draw]  # the rejected step left the chain in place


def test_drop_chain_leaves_out_exactly_the_faulty_chains(restarted):
    faults = np.asarray(restarted.stats["nonfinite"]).any(axis=1)
    dropped = bc.sample(ULA, TARGET, on_fault="drop_chain", **RUN)
    assert dropped.dropped_chains == tuple(np.flatnonzero(faults))
    kept = np.flatnonzero(~faults)
    # The kept chains never faulted, so they are the same computation under both policies.
    np.testing.assert_array_equal(
        dropped.positions["x"], np.asarray(restarted.positions["x"])[kept]
    )
    tree = dropped.to_arviz()
    assert tree.posterior["chain"].values.tolist() == kept.tolist()
    assert tree.sample_stats.attrs["dropped_chains"] == list(np.flatnonzero(faults))
    assert not tree.sample_stats["nonfinite"].values.any()


def test_raise_names_the_chain_and_step_and_keeps_earlier_chunks(restarted, tmp_path):
    faults = np.asarray(restarted.stats["nonfinite"])
    chain = int(np.flatnonzero(faults.any(axis=1))[0])
    step = int(np.argmax(faults[chain]))
    with pytest.raises(NumericalError, match=f"chain {chain} at sampling step {step}"):
        bc.sample(ULA, TARGET, **RUN)  # "raise" is the default

    # Checkpointed in chunks of 10: the chunks before the fault's are kept, and resuming
    # them with another policy gives the draws of a run that had that policy throughout.
    folder = tmp_path / "run"
    first_fault = int(np.argmax(faults.any(axis=0)))
    with pytest.raises(NumericalError):
        bc.sample(ULA, TARGET, checkpoint=folder, checkpoint_every=10, **RUN)
    resumed = bc.sample(
        ULA, TARGET, resume=folder, on_fault="restart_from_last_good", checkpoint_every=10, **RUN
    )
    assert first_fault >= 10  # so a chunk was kept
    np.testing.assert_array_equal(resumed.positions["x"], restarted.positions["x"])
    np.testing.assert_array_equal(resumed.stats["nonfinite"], faults)


def test_faults_in_warmup_are_caught_too():
    # ULA's warmup is Metropolis-adjusted (it rejects NaN proposals); SGLD's is not.
    sgld = bc.inference.sgld(0.5)
    with pytest.raises(NumericalError, match="at warmup step"):
        bc.sample(sgld, TARGET, **(RUN | {"num_warmup": 60, "num_samples": 1}))


def test_bad_policy_names_the_argument():
    with pytest.raises(ArgumentError, match="on_fault"):
        bc.sample(ULA, TARGET, on_fault="ignore", **RUN)
