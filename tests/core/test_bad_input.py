"""Bad input to any public entry point raises a BayescoreError that names the argument.

Each row of ``CASES`` is one bad-input case: an entry point, the argument it spoils, a
hypothesis strategy drawing bad values for it (wrong sizes, non-finite numbers, arrays holding
NaN/inf, wrong ranks, empty arrays, wrong dtypes, mismatched plates, discrete sites given to a
continuous-only backend, invalid hyperparameters) and a pattern the error message must
contain. ``len(CASES)`` is the number of distinct cases covered. Every bad value must be
rejected before anything compiles, so each call returns at once; a call that runs past
``SECONDS_PER_CALL`` fails its case (a hang, or validation that came after compiling).
"""

from __future__ import annotations

import contextlib
import math
import signal
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import gpjax as gpx
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from flowjax.bijections import TriangularAffine
from flowjax.distributions import StandardNormal, Transformed
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bayescore as bc
from bayescore.core.errors import BayescoreError
from bayescore.inference import bridge, sgmcmc, vi
from bayescore.metrics import bures, eot
from bayescore.models import flows, pde, tucker
from bayescore.models import statespace as ss

EXAMPLES = 6  # hypothesis draws per case; the cases, not the draws, give the coverage
SECONDS_PER_CALL = 10.0  # validation is host-side work, well under a second per call

# ---------------------------------------------------------------------- bad values


def _non_integral(value: float) -> bool:
    return not float(value).is_integer()


NON_FINITE = st.sampled_from([math.nan, math.inf, -math.inf])
WRONG_TYPES = st.one_of(
    st.text(max_size=3), st.complex_numbers(allow_nan=False), st.just(object()), st.just([1])
)
NON_INTEGERS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).filter(_non_integral),
    st.booleans(),
    WRONG_TYPES,
)
NON_POSITIVE_INTS = st.integers(max_value=0)
NEGATIVE_INTS = st.integers(max_value=-1)
BAD_COUNTS = st.one_of(NON_POSITIVE_INTS, NON_INTEGERS)  # for sizes that must be >= 1
BAD_NON_NEGATIVE_COUNTS = st.one_of(NEGATIVE_INTS, NON_INTEGERS)  # for sizes that may be 0
BAD_POSITIVE = st.one_of(st.floats(max_value=0.0), NON_FINITE, WRONG_TYPES, st.booleans())
BAD_NON_NEGATIVE = st.one_of(st.floats(max_value=-1e-300), NON_FINITE, WRONG_TYPES, st.booleans())
BAD_FINITE = st.one_of(NON_FINITE, WRONG_TYPES)  # any real number would do
# for arguments that also take one value per level as a list ([1] is valid there)
BAD_COUNTS_PER_LEVEL = st.one_of(BAD_NON_NEGATIVE_COUNTS.filter(lambda v: v != [1]),
                                 st.just([1, -1]), st.just([1.5]))  # fmt: skip
BAD_POSITIVE_PER_LEVEL = st.one_of(BAD_POSITIVE.filter(lambda v: v != [1]),
                                   st.just([1e-6, 1e-4]), st.just([]), st.just([-1.0]))  # fmt: skip
BAD_OPEN_UNIT = st.one_of(  # must lie in (0, 1)
    st.floats(min_value=1.0), st.floats(max_value=0.0), NON_FINITE, WRONG_TYPES
)
BAD_HALF_OPEN_UNIT = st.one_of(  # must lie in [0, 1)
    st.floats(min_value=1.0), st.floats(max_value=-1e-300), NON_FINITE, WRONG_TYPES
)
BAD_UNIT_RIGHT_CLOSED = st.one_of(  # must lie in (0, 1]
    st.floats(min_value=1.0, exclude_min=True), st.floats(max_value=0.0), NON_FINITE, WRONG_TYPES
)
BAD_STRINGS = st.text(max_size=8).filter(lambda s: s.strip() == s)


def with_non_finite(array: Any) -> st.SearchStrategy:
    """``array`` with one entry, drawn anywhere, replaced by NaN, inf or -inf."""
    array = np.asarray(array, dtype=np.float64)
    return st.tuples(st.integers(0, array.size - 1), NON_FINITE).map(
        lambda drawn: np.where(
            np.arange(array.size).reshape(array.shape) == drawn[0], drawn[1], array
        )
    )


def wrong_dtype(array: Any) -> st.SearchStrategy:
    """``array`` as strings, complex numbers with a non-zero imaginary part, or objects."""
    array = np.asarray(array, dtype=np.float64)
    return st.sampled_from(
        [
            array.astype(str),
            array + 1j,
            np.full(array.shape, None, dtype=object),
        ]
    )


def wrong_rank(array: Any) -> st.SearchStrategy:
    """``array`` with a unit axis added, or flattened to a scalar-like shape."""
    array = np.asarray(array, dtype=np.float64)
    options = [array[..., None], np.asarray(array.ravel()[0])]
    if array.ndim >= 2:
        options.append(array.ravel())
    return st.sampled_from(options)


def empty_like(array: Any) -> st.SearchStrategy:
    """``array`` with no rows."""
    array = np.asarray(array, dtype=np.float64)
    return st.just(np.zeros((0, *array.shape[1:])))


def other_lengths(length: int, low: int = 1, high: int = 12) -> st.SearchStrategy:
    return st.integers(low, high).filter(lambda n: n != length)


# ---------------------------------------------------------------------- valid fixtures

KEY = jax.random.key(0)
X = np.linspace(-1.0, 1.0, 6)
Y = 0.5 * X + 0.1


def regression(x, y):
    w = numpyro.sample("w", dist.Normal(0.0, 1.0))
    with numpyro.plate("data", len(y)):
        numpyro.sample("y", dist.Normal(w * x, 1.0), obs=y)


def mixture(y):
    locs = numpyro.sample("locs", dist.Normal(0.0, 5.0).expand([2]).to_event(1))
    with numpyro.plate("data", len(y)):
        component = numpyro.sample("component", dist.Bernoulli(0.5))
        numpyro.sample("y", dist.Normal(locs[component], 1.0), obs=y)


def subsampled(y, size=None):
    mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
    with numpyro.plate("data", len(y) if size is None else size, subsample_size=2):
        numpyro.sample("y", dist.Normal(mu, 1.0), obs=numpyro.subsample(y, event_dim=0))


TARGET = bc.Target.from_numpyro(regression, X, Y)
DISCRETE = bc.Target.from_numpyro(mixture, np.array([-1.0, 0.5, 3.0]))
SUBSAMPLED = bc.Target.from_numpyro(subsampled, np.arange(4.0))
GAUSSIAN = bc.Target.from_logdensity(lambda p: -0.5 * jnp.sum(p["x"] ** 2), {"x": jnp.zeros(2)})
NUTS = bc.inference.nuts()
SGLD = bc.inference.sgld(1e-3)
MEAN_FIELD = vi.mean_field(TARGET)
FLOW = Transformed(StandardNormal((2,)), TriangularAffine(jnp.zeros(2), jnp.eye(2)))
DATA_2D = np.random.default_rng(0).normal(size=(12, 2))
EYE = np.eye(2)

MATERN = gpx.kernels.Matern32()
SDE = ss.state_space(MATERN)
GRID = np.array([0.0, 1.0, 2.0])
SITES = ss.gaussian_observations(np.zeros(3), np.ones(3))
POSTERIOR = ss.smooth(SDE, GRID, SITES)
TUCKER = tucker.FunctionalTucker(2, [MATERN, MATERN])
TUCKER_X = np.random.default_rng(1).uniform(size=(10, 2))
TUCKER_Y = np.zeros(10)


def laplace(u, d, x):
    return d["xx"] - 1.0


PROBLEM = pde.Problem(laplace, (0.0, 1.0), 8, boundary=[pde.Dirichlet(0.0)])
SE = pde.squared_exponential()
BENCHMARK = eot.eot_gaussian_benchmark(2, 1.0)

DRAWS = np.random.default_rng(2).normal(size=(2, 20, 2))
PROBABILITIES = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
LABELS = np.array([0, 1, 1])


def sample(method=NUTS, target=TARGET, **kwargs):
    arguments = dict(num_samples=2, num_warmup=2, num_chains=1, key=0, progress=False)
    return bc.sample(method, target, **{**arguments, **kwargs})


def fit(target=TARGET, family=MEAN_FIELD, **kwargs):
    return bc.fit(target, family, **{"num_steps": 2, "key": 0, "progress": False, **kwargs})


def lightsb(x0=DATA_2D, x1=DATA_2D, **kwargs):
    arguments = dict(epsilon=1.0, num_components=2, key=0, num_steps=2, batch_size=4)
    arguments.update(final_batch_size=4, progress=False)
    return bridge.fit_lightsb(x0, x1, **{**arguments, **kwargs})


def follmer(target=GAUSSIAN, **kwargs):
    arguments = dict(num_samples=2, num_chains=1, num_steps=2, num_inner=2, key=0)
    return bridge.schrodinger_follmer(target, **{**arguments, "progress": False, **kwargs})


def tucker_fit(x=TUCKER_X, y=TUCKER_Y, **kwargs):
    return TUCKER.fit(x, y, **{"num_epochs": 1, "progress": False, **kwargs})


def pde_solve(problem=PROBLEM, kernel=SE, **kwargs):
    return pde.solve(problem, kernel, **{"num_lbfgs_steps": 1, "progress": False, **kwargs})


def pinn(problem=PROBLEM, **kwargs):
    arguments = dict(key=KEY, width=4, depth=1, num_adam_steps=1, num_lbfgs_steps=0)
    return pde.solve_pinn(problem, **{**arguments, "progress": False, **kwargs})


def flow_fit_to_data(data=DATA_2D, **kwargs):
    return flows.fit_to_data(KEY, FLOW, data, **{"max_epochs": 1, "progress": False, **kwargs})


def flow_fit_to_density(log_density=GAUSSIAN, **kwargs):
    return flows.fit_to_density(
        KEY, FLOW, log_density, **{"steps": 1, "num_samples": 2, "progress": False, **kwargs}
    )


# ---------------------------------------------------------------------- the cases


class Case(NamedTuple):
    """One bad-input case: ``call(value)`` must raise a BayescoreError matching ``names``."""

    entry: str
    argument: str
    call: Callable[[Any], Any]
    values: st.SearchStrategy
    names: str
    xfail: str = ""


def sizes(entry: str, call: Callable, arguments: dict[str, Any]) -> list[Case]:
    """One case per keyword argument of ``call``, each named in its own error.

    A value is the strategy of bad values, or ``(strategy, pattern)`` when the message names
    the argument by something other than its keyword.
    """
    cases = []
    for name, values in arguments.items():
        values, names = values if isinstance(values, tuple) else (values, name)
        cases.append(
            Case(entry, name, lambda value, name=name: call(**{name: value}), values, names)
        )
    return cases


def sampler_cases(entry: str, constructor: Callable, extra: dict) -> list[Case]:
    common = {
        "step_size": BAD_POSITIVE,
        "target_acceptance_rate": BAD_OPEN_UNIT,
        "divergence_threshold": BAD_POSITIVE,
    }
    cases = sizes(entry, constructor, {**common, **extra})
    cases += [
        Case(
            entry,
            "inverse_mass_matrix",
            lambda value: constructor(inverse_mass_matrix=value),
            st.one_of(
                with_non_finite(np.ones(2)),
                st.just(-np.ones(2)),
                st.just(np.array([[1.0, 2.0], [2.0, 1.0]])),
                st.just(np.array([[1.0, 0.5], [0.0, 1.0]])),
                st.just(np.ones((2, 2, 2))),
                st.just(np.ones((2, 3))),
            ),
            "inverse_mass_matrix",
        ),
        Case(
            entry,
            "inverse_mass_matrix (dtype)",
            lambda value: constructor(inverse_mass_matrix=value),
            wrong_dtype(np.ones(2)),
            "inverse_mass_matrix",
        ),
        Case(
            f"bc.sample({entry}(), discrete target)",
            "target",
            lambda value: sample(constructor(), DISCRETE),
            st.none(),
            "'component'",
        ),
    ]
    return cases


CASES: list[Case] = [
    # ------------------------------------------------------------------ bc.sample
    *sizes(
        "bc.sample",
        sample,
        {
            "num_samples": BAD_COUNTS,
            "num_warmup": BAD_NON_NEGATIVE_COUNTS,
            "num_chains": BAD_COUNTS,
            "thin": BAD_COUNTS,
            "checkpoint_every": BAD_COUNTS,
        },
    ),
    Case("bc.sample", "key", lambda value: sample(key=value), WRONG_TYPES, "key"),
    Case("bc.sample", "method", lambda value: sample(method=value), WRONG_TYPES, "method"),
    Case(
        "bc.sample",
        "target",
        lambda value: sample(target=value),
        st.one_of(WRONG_TYPES, st.just(regression)),
        "target",
    ),
    Case(
        "bc.sample",
        "devices",
        lambda value: sample(devices=value),
        st.one_of(st.integers(len(jax.devices()) + 1, 10**6), NEGATIVE_INTS),
        "devices",
    ),
    Case("bc.sample", "shard", lambda value: sample(shard=value), BAD_STRINGS, "shard"),
    Case(
        "bc.sample",
        "init_params",
        lambda value: sample(init_params={"w": value}, num_chains=2),
        st.sampled_from([np.zeros(3), np.zeros((2, 2)), np.zeros((3, 1))]),
        "init_params|num_chains|'w'",
    ),
    Case(
        "bc.sample",
        "init_params",
        lambda value: sample(init_params={value: 0.0}),
        st.text(min_size=1, max_size=5).filter(lambda name: name != "w"),
        "init_params",
    ),
    Case(
        "bc.sample",
        "init_params",
        lambda value: sample(init_params={"w": value}),
        NON_FINITE,
        "'w'",
    ),
    # ------------------------------------------------------------------ bc.fit
    *sizes(
        "bc.fit",
        fit,
        {
            "num_steps": BAD_COUNTS,
            "learning_rate": BAD_POSITIVE,
            "checkpoint_every": BAD_COUNTS,
        },
    ),
    Case("bc.fit", "key", lambda value: fit(key=value), WRONG_TYPES, "key"),
    Case("bc.fit", "target", lambda value: fit(target=value), WRONG_TYPES, "target"),
    Case(
        "bc.fit",
        "family",
        lambda value: fit(family=value),
        st.one_of(WRONG_TYPES, st.sampled_from([vi.mean_field(3), vi.full_rank(5)])),
        "family|shape",
    ),
    Case("bc.fit", "objective", lambda value: fit(objective=value), WRONG_TYPES, "objective"),
    Case("bc.fit", "estimator", lambda value: fit(estimator=value), WRONG_TYPES, "estimator"),
    Case(
        "bc.fit",
        "num_groups",
        lambda value: fit(estimator=vi.score_function(), num_groups=value),
        st.one_of(st.integers(max_value=1), NON_INTEGERS),
        "num_groups",
    ),
    Case(
        "bc.fit",
        "target",
        lambda value: fit(DISCRETE, vi.mean_field(3)),
        st.none(),
        "'component'",
    ),
    # ------------------------------------------------------------------ Target
    Case(
        "Target.from_numpyro",
        "model",
        lambda value: bc.Target.from_numpyro(value, X, Y),
        WRONG_TYPES,
        "model",
    ),
    Case(
        "Target.from_numpyro",
        "x (NaN/inf)",
        lambda value: bc.Target.from_numpyro(regression, value, Y),
        with_non_finite(X),
        "`x`",
    ),
    Case(
        "Target.from_numpyro",
        "y (NaN/inf)",
        lambda value: bc.Target.from_numpyro(regression, X, y=value),
        with_non_finite(Y),
        "`y`",
    ),
    Case(
        "Target.from_numpyro",
        "x (plate size)",
        lambda value: bc.Target.from_numpyro(regression, np.zeros(value), Y),
        other_lengths(len(Y), low=2),
        "plate|shape",
    ),
    Case(
        "Target.from_numpyro",
        "y (dtype)",
        lambda value: bc.Target.from_numpyro(regression, X, value),
        wrong_dtype(Y),
        "`y`",
    ),
    Case(
        "Target.from_numpyro",
        "x (dtype)",
        lambda value: bc.Target.from_numpyro(regression, value, Y),
        wrong_dtype(X),
        "`x`",
    ),
    Case(
        "Target.from_numpyro",
        "y (subsampled plate size)",
        lambda value: bc.Target.from_numpyro(subsampled, np.arange(4.0), value),
        st.integers(5, 50),
        "plate",
    ),
    Case(
        "Target.from_numpyro",
        "y (subsample larger than data)",
        lambda value: bc.Target.from_numpyro(subsampled, np.zeros(value)),
        st.just(1),
        "subsample_size",
    ),
    Case(
        "Target.from_numpyro",
        "y (empty data)",
        lambda value: bc.Target.from_numpyro(subsampled, value),
        empty_like(Y),
        "plate",
    ),
    Case(
        "Target.from_logdensity",
        "fn",
        lambda value: bc.Target.from_logdensity(value, {"x": 0.0}),
        WRONG_TYPES,
        "fn",
    ),
    Case(
        "Target.from_logdensity",
        "example_params",
        lambda value: bc.Target.from_logdensity(lambda p: 0.0, value),
        st.sampled_from([{}, [], (), None, {"x": "abc"}, {"x": np.array(["a"])}, {"x": 1j}]),
        "example_params",
    ),
    Case(
        "Target.from_logdensity",
        "fn (non-scalar)",
        lambda value: bc.Target.from_logdensity(lambda p: p["x"], {"x": np.zeros(value)}),
        st.integers(2, 5),
        "scalar",
    ),
    # ------------------------------------------------------------------ gradient samplers
    *sampler_cases("nuts", bc.inference.nuts, {"max_num_doublings": BAD_COUNTS}),
    *sampler_cases("mala", bc.inference.mala, {}),
    *sampler_cases("ula", bc.inference.ula, {}),
    *sampler_cases(
        "underdamped",
        bc.inference.underdamped,
        {"friction": BAD_POSITIVE, "splitting": BAD_STRINGS},
    ),
    *sampler_cases(  # friction 0 is HMC: MALT's momentum is never refreshed
        "malt", bc.inference.malt, {"friction": BAD_NON_NEGATIVE, "num_steps": BAD_COUNTS}
    ),
    # ------------------------------------------------------------------ SG-MCMC
    *[
        case
        for name, constructor, extra in [
            ("sgld", bc.inference.sgld, {}),
            ("psgld", bc.inference.psgld, {"alpha": BAD_OPEN_UNIT, "epsilon": BAD_POSITIVE}),
            ("sghmc", bc.inference.sghmc, {"friction": BAD_UNIT_RIGHT_CLOSED}),
            ("sgnht", bc.inference.sgnht, {"diffusion": BAD_POSITIVE}),
        ]
        for case in [
            Case(name, "step_size", constructor, BAD_POSITIVE, "step_size"),
            *sizes(
                name,
                lambda constructor=constructor, **kwargs: constructor(1e-3, **kwargs),
                {
                    "temperature": BAD_NON_NEGATIVE,
                    "num_shards": BAD_COUNTS,
                    "estimator": WRONG_TYPES,
                    **extra,
                },
            ),
            Case(
                f"bc.sample({name}, discrete target)",
                "target",
                lambda value, constructor=constructor: sample(constructor(1e-3), DISCRETE),
                st.none(),
                "'component'",
            ),
        ]
    ],
    Case(
        "bc.sample(sgld)",
        "num_shards",
        lambda value: sample(bc.inference.sgld(1e-3, num_shards=value), SUBSAMPLED),
        st.integers(3, 64),
        "num_shards",
    ),
    *sizes(
        "sgmcmc.cyclical",
        lambda **kwargs: sgmcmc.cyclical(
            **{"step_size": 0.1, "num_steps": 10, "num_cycles": 2, **kwargs}
        ),
        {
            "step_size": BAD_POSITIVE,
            "num_steps": BAD_COUNTS,
            "num_cycles": BAD_COUNTS,
            "exploration": BAD_HALF_OPEN_UNIT,
        },
    ),
    Case(
        "sgmcmc.cyclical",
        "num_cycles",
        lambda value: sgmcmc.cyclical(0.1, 4, value),
        st.integers(5, 10**6),
        "num_cycles",
    ),
    *sizes(
        "sgmcmc.polynomial_decay",
        lambda **kwargs: sgmcmc.polynomial_decay(**{"a": 0.1, **kwargs}),
        {"a": BAD_POSITIVE, "b": BAD_POSITIVE, "gamma": BAD_POSITIVE},
    ),
    *sizes(
        "sgmcmc.Structured",
        sgmcmc.Structured,
        {
            "buffer_size": BAD_COUNTS,
            "thinning": BAD_COUNTS,
            "num_copies": BAD_COUNTS,
            "dropout": BAD_UNIT_RIGHT_CLOSED,
        },
    ),
    Case(
        "sgmcmc.Structured.group_ids",
        "groups",
        lambda value: sgmcmc.Structured(groups=value).group_ids(GAUSSIAN.example_params.tree),
        st.one_of(st.integers(3, 10**6), NON_POSITIVE_INTS, st.just(["nope"]), WRONG_TYPES),
        "groups|parameter",
    ),
    *sizes(
        "sgmcmc.ControlVariates",
        sgmcmc.ControlVariates,
        {"num_steps": BAD_NON_NEGATIVE_COUNTS, "optimizer": WRONG_TYPES},
    ),
    # ------------------------------------------------------------------ bridges
    Case("fit_lightsb", "x0", lambda value: lightsb(x0=value), with_non_finite(DATA_2D), "x0"),
    Case("fit_lightsb", "x1", lambda value: lightsb(x1=value), with_non_finite(DATA_2D), "x1"),
    Case("fit_lightsb", "x0", lambda value: lightsb(x0=value), wrong_rank(DATA_2D), "x0"),
    Case("fit_lightsb", "x1", lambda value: lightsb(x1=value), empty_like(DATA_2D), "x1"),
    Case("fit_lightsb", "x0", lambda value: lightsb(x0=value), wrong_dtype(DATA_2D), "x0"),
    Case(
        "fit_lightsb",
        "x1 (dimension)",
        lambda value: lightsb(x1=np.zeros((12, value))),
        other_lengths(2),
        "x0 and x1",
    ),
    *sizes(
        "fit_lightsb",
        lightsb,
        {
            "epsilon": BAD_POSITIVE,
            "num_components": st.one_of(BAD_COUNTS, st.integers(13, 10**6)),
            "num_steps": BAD_COUNTS,
            "batch_size": st.one_of(BAD_COUNTS, st.integers(13, 10**6)),
            "learning_rate": BAD_POSITIVE,
            "average": BAD_HALF_OPEN_UNIT,
            "final_batch_size": BAD_COUNTS,
            "s_init": BAD_POSITIVE,
            "polish_steps": BAD_NON_NEGATIVE_COUNTS,
            "key": WRONG_TYPES,
        },
    ),
    *sizes(
        "init_lightsb",
        lambda **kwargs: bridge.init_lightsb(
            **{"key": 0, "x1": DATA_2D, "epsilon": 1.0, "num_components": 2, **kwargs}
        ),
        {
            "x1": st.one_of(with_non_finite(DATA_2D), wrong_rank(DATA_2D), wrong_dtype(DATA_2D)),
            "epsilon": BAD_POSITIVE,
            "num_components": st.one_of(BAD_COUNTS, st.integers(13, 10**6)),
            "s_init": BAD_POSITIVE,
        },
    ),
    *sizes(
        "gaussian_bridge",
        lambda **kwargs: bridge.gaussian_bridge(
            **{"mean0": np.zeros(2), "cov0": EYE, "mean1": np.ones(2), "cov1": EYE, "epsilon": 1.0}
            | kwargs
        ),
        {
            "mean0": st.one_of(with_non_finite(np.zeros(2)), wrong_dtype(np.zeros(2))),
            "cov0": st.one_of(
                with_non_finite(EYE), st.just(-EYE), st.just(np.ones((2, 3))), wrong_dtype(EYE)
            ),
            "mean1": st.one_of(st.just(np.zeros(3)), st.just(np.zeros((2, 2)))),
            "cov1": st.one_of(st.just(np.array([[1.0, 0.5], [0.0, 1.0]])), st.just(np.eye(3))),
            "epsilon": BAD_POSITIVE,
        },
    ),
    *sizes(
        "schrodinger_follmer",
        follmer,
        {
            "num_samples": BAD_COUNTS,
            "num_chains": BAD_COUNTS,
            "num_steps": BAD_COUNTS,
            "num_inner": BAD_COUNTS,
            "chunk_size": BAD_COUNTS,
            "estimator": BAD_STRINGS,
            "loc": st.one_of(NON_FINITE, st.just(np.array([0.0, np.nan]))),
            "scale": st.one_of(BAD_POSITIVE, st.just(np.ones(3)), st.just(np.array([1.0, -1.0]))),
            "key": WRONG_TYPES,
        },
    ),
    Case("schrodinger_follmer", "target", lambda value: follmer(value), WRONG_TYPES, "target"),
    Case(
        "schrodinger_follmer",
        "target (discrete)",
        lambda value: follmer(DISCRETE, estimator=value),
        st.sampled_from(["score", "stein"]),
        "'component'",
    ),
    # ------------------------------------------------------------------ VI
    *[
        Case(f"vi.{name}", "target", lambda value, family=family: family(value), BAD_COUNTS, "dim")
        for name, family in [("mean_field", vi.mean_field), ("full_rank", vi.full_rank)]
    ],
    *[
        Case(
            f"vi.{name}",
            "init_scale",
            lambda value, family=family: family(2, init_scale=value),
            BAD_POSITIVE,
            "init_scale",
        )
        for name, family in [
            ("mean_field", vi.mean_field),
            ("full_rank", vi.full_rank),
            ("low_rank", lambda dim, **kw: vi.low_rank(dim, 1, **kw)),
        ]
    ],
    Case("vi.low_rank", "rank", lambda value: vi.low_rank(3, value), BAD_COUNTS, "rank"),
    Case("vi.low_rank", "rank", lambda value: vi.low_rank(3, value), st.integers(4, 10**6), "rank"),
    Case("vi.iwelbo", "num_particles", vi.iwelbo, BAD_COUNTS, "num_particles"),
    Case("vi.forward_kl", "num_particles", vi.forward_kl, BAD_COUNTS, "num_particles"),
    Case(
        "vi.renyi", "num_particles", lambda value: vi.renyi(0.5, value), BAD_COUNTS, "num_particles"
    ),
    Case(
        "vi.renyi",
        "alpha",
        lambda value: vi.renyi(value, 4),
        st.one_of(st.just(1.0), NON_FINITE, WRONG_TYPES),
        "alpha",
    ),
    Case("vi.as_objective", "objective", vi.as_objective, WRONG_TYPES, "objective"),
    Case(
        "vi.check_family",
        "family",
        lambda value: vi.check_family(value, 2),
        st.one_of(WRONG_TYPES, st.just(vi.mean_field(3))),
        "family|shape",
    ),
    *sizes(
        "vi.LangevinBlock",
        lambda **kwargs: vi.LangevinBlock(**{"step_size": 0.1, **kwargs}),
        {"step_size": BAD_POSITIVE, "num_steps": BAD_COUNTS, "lam": BAD_FINITE},
    ),
    Case(
        "vi.LangevinBlock",
        "lam",
        lambda value: vi.LangevinBlock(0.1, lam=value),
        st.one_of(st.floats(min_value=1.0, exclude_min=True), st.floats(max_value=-1e-300)),
        "lam",
    ),
    Case(
        "vi.stochastic_flow",
        "target",
        lambda value: vi.stochastic_flow(value, StandardNormal((2,)), []),
        WRONG_TYPES,
        "target",
    ),
    Case(
        "vi.stochastic_flow",
        "base_dist",
        lambda value: vi.stochastic_flow(GAUSSIAN, value, []),
        st.one_of(WRONG_TYPES, st.just(StandardNormal((3,)))),
        "base_dist",
    ),
    Case(
        "vi.stochastic_flow",
        "blocks",
        lambda value: vi.stochastic_flow(GAUSSIAN, StandardNormal((2,)), value),
        st.one_of(WRONG_TYPES.map(lambda block: [block]), st.just(None)),
        "blocks",
    ),
    # ------------------------------------------------------------------ flows
    *[
        case
        for name, constructor in [
            ("planar", flows.planar),
            ("radial", flows.radial),
            ("smooth_mixture", flows.smooth_mixture),
        ]
        for case in [
            Case(name, "dim", lambda value, c=constructor: c(KEY, value), BAD_COUNTS, "dim"),
            Case(
                name,
                "init_scale",
                lambda value, c=constructor: c(KEY, 2, init_scale=value),
                BAD_NON_NEGATIVE,
                "init_scale",
            ),
        ]
    ],
    *sizes(
        "smooth_mixture",
        lambda **kwargs: flows.smooth_mixture(KEY, 2, **kwargs),
        {"num_components": BAD_COUNTS, "power": BAD_COUNTS, "circular": WRONG_TYPES},
    ),
    *[
        Case(
            name,
            "flow_layers",
            lambda value, c=constructor: c(KEY, base_dist=StandardNormal((2,)), flow_layers=value),
            BAD_COUNTS,
            "flow_layers",
        )
        for name, constructor in [
            ("planar_flow", flows.planar_flow),
            ("radial_flow", flows.radial_flow),
            ("inverse_autoregressive_flow", flows.inverse_autoregressive_flow),
        ]
    ],
    *[
        Case(
            name,
            "base_dist",
            lambda value, c=constructor: c(KEY, base_dist=value),
            st.one_of(WRONG_TYPES, st.just(StandardNormal((2, 2))), st.just(StandardNormal(()))),
            "base_dist",
        )
        for name, constructor in [
            ("planar_flow", flows.planar_flow),
            ("radial_flow", flows.radial_flow),
            ("inverse_autoregressive_flow", flows.inverse_autoregressive_flow),
        ]
    ],
    *sizes(
        "inverse_autoregressive_flow",
        lambda **kwargs: flows.inverse_autoregressive_flow(
            KEY, **{"base_dist": StandardNormal((2,)), **kwargs}
        ),
        {
            "base_dist": st.just(StandardNormal((1,))),
            "nn_width": BAD_COUNTS,
            "nn_depth": BAD_NON_NEGATIVE_COUNTS,
            "nn_activation": st.one_of(st.just(1.0), st.just(None)),
            "log_scale_range": st.one_of(
                WRONG_TYPES,
                st.just((1.0, 3.0)),
                st.just((-5.0, 0.0)),
                st.just((float("nan"), 3.0)),
                st.just((-5.0, float("inf"))),
                st.just((-5.0, 3.0, 1.0)),
            ),
        },
    ),
    *sizes(
        "smooth_flow",
        lambda **kwargs: flows.smooth_flow(KEY, **{"dim": 2, **kwargs}),
        {
            "dim": BAD_COUNTS,
            "flow_layers": BAD_COUNTS,
            "num_components": BAD_COUNTS,
            "power": BAD_COUNTS,
            "nn_width": BAD_COUNTS,
            "nn_depth": BAD_NON_NEGATIVE_COUNTS,
            "cond_dim": BAD_COUNTS,
            "circular": WRONG_TYPES,
            "low": st.one_of(NON_FINITE, st.just(np.zeros(3)), st.just(2.0)),
            "high": st.one_of(NON_FINITE, st.just(np.ones(3)), st.just(-1.0)),
        },
    ),
    *sizes(
        "SmoothCoupling",
        lambda **kwargs: flows.SmoothCoupling(KEY, **{"dim": 3, "untransformed_dim": 1, **kwargs}),
        {"dim": BAD_COUNTS, "untransformed_dim": st.one_of(BAD_COUNTS, st.integers(3, 10**6))},
    ),
    *sizes(
        "fit_to_data",
        flow_fit_to_data,
        {
            "data": st.one_of(
                with_non_finite(DATA_2D),
                wrong_rank(DATA_2D),
                empty_like(DATA_2D),
                wrong_dtype(DATA_2D),
                st.just(np.zeros((12, 3))),
            ),
            "learning_rate": BAD_POSITIVE,
            "max_epochs": BAD_COUNTS,
            "max_patience": BAD_COUNTS,
            "batch_size": BAD_COUNTS,
            "val_prop": BAD_OPEN_UNIT,
            "condition": st.one_of(st.just(np.zeros((12, 1))), with_non_finite(np.zeros(12))),
        },
    ),
    Case(
        "fit_to_data",
        "flow",
        lambda value: flows.fit_to_data(KEY, value, DATA_2D, progress=False),
        WRONG_TYPES,
        "flow",
    ),
    *sizes(
        "fit_to_density",
        flow_fit_to_density,
        {
            "log_density": (st.one_of(WRONG_TYPES, st.just(TARGET)), "log_density|target"),
            "steps": BAD_COUNTS,
            "num_samples": BAD_COUNTS,
            "learning_rate": BAD_POSITIVE,
        },
    ),
    Case(
        "sample_with_score",
        "flow",
        lambda value: flows.sample_with_score(value, KEY),
        WRONG_TYPES,
        "flow",
    ),
    Case(
        "sample_with_score",
        "sample_shape",
        lambda value: flows.sample_with_score(FLOW, KEY, value),
        st.one_of(
            st.tuples(NEGATIVE_INTS),
            st.tuples(NON_INTEGERS),
            WRONG_TYPES.filter(lambda v: v != [1]),
        ),
        "sample_shape",
    ),
    Case(
        "sample_with_score",
        "condition",
        lambda value: flows.sample_with_score(FLOW, KEY, (2,), value),
        st.sampled_from([np.zeros(1), np.zeros((2, 3))]),
        "condition",
    ),
    Case("to_numpyro", "flow", flows.to_numpyro, WRONG_TYPES, "flow"),
    # ------------------------------------------------------------------ Tucker
    *sizes(
        "FunctionalTucker",
        lambda **kwargs: tucker.FunctionalTucker(**{"ranks": 2, "kernels": [MATERN] * 2, **kwargs}),
        {
            "ranks": st.one_of(BAD_COUNTS, st.tuples(NON_POSITIVE_INTS, st.just(1))),
            "kernels": st.one_of(WRONG_TYPES, st.just([gpx.kernels.RBF()] * 2), st.just([])),
            "noise_shape": BAD_POSITIVE,
            "noise_rate": BAD_POSITIVE,
            "core_scale": BAD_POSITIVE,
        },
    ),
    *sizes(
        "FunctionalTucker.fit",
        tucker_fit,
        {
            "x": st.one_of(with_non_finite(TUCKER_X), wrong_rank(TUCKER_X), wrong_dtype(TUCKER_X)),
            "y": st.one_of(with_non_finite(TUCKER_Y), wrong_dtype(TUCKER_Y)),
            "num_epochs": BAD_COUNTS,
            "tol": BAD_NON_NEGATIVE,
            "damping": BAD_HALF_OPEN_UNIT,
            "hyperparameter_steps": BAD_COUNTS,
            "hyperparameter_learning_rate": BAD_POSITIVE,
            "initial_noise_variance": BAD_POSITIVE,
            "chunk_size": BAD_COUNTS,
            "key": WRONG_TYPES,
        },
    ),
    Case(
        "FunctionalTucker.fit",
        "y (plate size)",
        lambda value: tucker_fit(y=np.zeros(value)),
        other_lengths(10, high=30),
        "y",
    ),
    Case(
        "FunctionalTucker.fit",
        "indexes",
        lambda value: tucker_fit(value, np.zeros(0)),
        empty_like(TUCKER_X),
        "indexes",
    ),
    *sizes(
        "synthetic_cp",
        tucker.synthetic_cp,
        {"num_grids": BAD_COUNTS, "grid_size": BAD_COUNTS, "noise": BAD_NON_NEGATIVE},
    ),
    Case(
        "load_funbat",
        "name",
        lambda value: tucker.load_funbat(value, "/nonexistent"),
        BAD_STRINGS,
        "name",
    ),
    # ------------------------------------------------------------------ state space
    Case(
        "statespace.state_space",
        "kernels",
        ss.state_space,
        st.one_of(WRONG_TYPES, st.just(gpx.kernels.RBF()), st.just([])),
        "kernels",
    ),
    Case(
        "statespace.state_space",
        "num_components",
        lambda value: ss.state_space(MATERN, value),
        BAD_COUNTS,
        "num_components",
    ),
    *[
        case
        for name, entry in [
            ("smooth", ss.smooth),
            ("log_marginal_likelihood", ss.log_marginal_likelihood),
        ]
        for case in [
            Case(
                f"statespace.{name}",
                "grid",
                lambda value, entry=entry: entry(SDE, value, SITES),
                st.one_of(
                    with_non_finite(GRID),
                    wrong_rank(GRID),
                    wrong_dtype(GRID),
                    st.just(np.zeros(0)),
                    st.just(GRID[::-1].copy()),
                ),
                "grid",
            ),
            Case(
                f"statespace.{name}",
                "sites",
                lambda value, entry=entry: entry(SDE, np.arange(float(value)), SITES),
                other_lengths(3, low=1),
                "sites",
            ),
            Case(
                f"statespace.{name}",
                "sde",
                lambda value, entry=entry: entry(value, GRID, SITES),
                st.one_of(WRONG_TYPES, st.just(MATERN)),
                "sde",
            ),
        ]
    ],
    Case(
        "statespace.discretise",
        "grid",
        lambda value: ss.discretise(SDE, value),
        st.one_of(with_non_finite(GRID), wrong_rank(GRID), wrong_dtype(GRID)),
        "grid",
    ),
    *sizes(
        "statespace.gaussian_observations",
        lambda **kwargs: ss.gaussian_observations(
            **{"y": np.zeros(3), "covariance": np.ones(3), **kwargs}
        ),
        {
            "y": st.one_of(with_non_finite(np.zeros(3)), wrong_dtype(np.zeros(3))),
            "covariance": st.one_of(
                with_non_finite(np.ones(3)),
                st.just(-np.ones(3)),
                st.just(np.ones(4)),
                wrong_dtype(np.ones(3)),
            ),
            "mask": st.one_of(st.just(np.ones(3)), st.just(np.ones(4, bool)), WRONG_TYPES),
        },
    ),
    *sizes(
        "statespace.natural_sites",
        lambda **kwargs: ss.natural_sites(
            **{"precision": np.ones((3, 1, 1)), "shift": np.zeros((3, 1)), **kwargs}
        ),
        {
            "precision": st.one_of(  # negative precisions are valid EP messages
                st.just(np.ones((3, 2, 2))),
                with_non_finite(np.ones((3, 1, 1))),
                wrong_dtype(np.ones((3, 1, 1))),
            ),
            "shift": st.one_of(
                st.just(np.zeros((4, 1))),
                with_non_finite(np.zeros((3, 1))),
                wrong_dtype(np.zeros((3, 1))),
            ),
        },
    ),
    Case(
        "statespace.interpolate",
        "query",
        lambda value: ss.interpolate(SDE, POSTERIOR, value),
        st.one_of(
            with_non_finite(np.array([0.5, 1.5])),
            st.just(np.zeros((2, 2))),
            wrong_dtype(np.array([0.5])),
        ),
        "query",
    ),
    # ------------------------------------------------------------------ PDE
    *sizes(
        "pde.Problem",
        lambda **kwargs: pde.Problem(
            **{"residual": laplace, "domain": (0.0, 1.0), "shape": 8} | kwargs
        ),
        {
            "residual": WRONG_TYPES,
            "domain": st.one_of(
                st.tuples(NON_FINITE, st.just(1.0)),
                st.just((1.0, 0.0)),
                st.just([(0.0, 1.0), (0.0, 1.0)]),
                WRONG_TYPES,
            ),
            "shape": st.one_of(st.integers(max_value=2), NON_INTEGERS),
            "boundary": (
                st.one_of(
                    WRONG_TYPES.map(lambda condition: [condition]),
                    st.just([pde.Dirichlet(np.full(8, np.nan))]),
                    st.just([pde.Dirichlet(np.zeros(5))]),
                    st.just([pde.Dirichlet(0.0, faces=("y-",))]),
                ),
                "boundary|Dirichlet|face",
            ),
            "names": st.one_of(st.just("xy"), st.just(""), WRONG_TYPES.filter(lambda v: v != "")),
        },
    ),
    *sizes(
        "pde.solve",
        pde_solve,
        {
            "problem": WRONG_TYPES,
            "kernel": st.one_of(WRONG_TYPES, st.just([SE, SE]), st.just(pde.matern(nu=0.5))),
            "num_adam_steps": BAD_NON_NEGATIVE_COUNTS,
            "learning_rate": BAD_POSITIVE,
            "num_lbfgs_steps": BAD_COUNTS_PER_LEVEL,
            "method": BAD_STRINGS,
            "log_precision": st.one_of(
                st.tuples(NON_FINITE, st.just(0.0)), st.just((1.0,)), WRONG_TYPES
            ),
            "relative_noise": BAD_POSITIVE_PER_LEVEL,
            "num_rounds": BAD_COUNTS,
            "num_newton_steps": BAD_NON_NEGATIVE_COUNTS,
            "boundary_weight": BAD_NON_NEGATIVE,
            "jitter": BAD_NON_NEGATIVE,
            "init_values": st.one_of(
                with_non_finite(np.zeros(8)), st.just(np.zeros(5)), wrong_dtype(np.zeros(8))
            ),
            "max_dense_size": BAD_COUNTS,
            "validation": WRONG_TYPES,
            "check_every": BAD_COUNTS,
        },
    ),
    *sizes(
        "pde.solve_pinn",
        pinn,
        {
            "problem": WRONG_TYPES,
            "width": BAD_COUNTS,
            "depth": BAD_COUNTS,
            "num_fourier_features": BAD_NON_NEGATIVE_COUNTS,
            "fourier_scale": BAD_POSITIVE,
            "num_adam_steps": BAD_NON_NEGATIVE_COUNTS,
            "learning_rate": BAD_POSITIVE,
            "num_lbfgs_steps": BAD_NON_NEGATIVE_COUNTS,
            "boundary_weight": BAD_NON_NEGATIVE,
            "batch_size": BAD_COUNTS,
            "key": WRONG_TYPES,
        },
    ),
    *sizes(
        "pde.spectral_mixture",
        pde.spectral_mixture,
        {
            "num_components": BAD_COUNTS,
            "max_frequency": BAD_POSITIVE,
            "spectrum": BAD_STRINGS,
            "lengthscale": BAD_POSITIVE,
        },
    ),
    Case(
        "pde.spectral_mixture",
        "nu",
        lambda value: pde.spectral_mixture(spectrum="matern", nu=value),
        st.one_of(st.just(2.0), BAD_POSITIVE),
        "nu",
    ),
    *sizes(
        "pde.squared_exponential",
        pde.squared_exponential,
        {"num_components": BAD_COUNTS, "lengthscale": BAD_POSITIVE},
    ),
    *sizes(
        "pde.matern",
        pde.matern,
        {
            "nu": st.one_of(st.just(2.0), BAD_POSITIVE),
            "num_components": BAD_COUNTS,
            "lengthscale": BAD_POSITIVE,
        },
    ),
    Case(
        "pde.kronecker_cholesky",
        "grams",
        pde.kronecker_cholesky,
        st.sampled_from([[np.ones((2, 3))], [np.ones(2)]]),
        "gram",
    ),
    # ------------------------------------------------------------------ metrics
    *sizes(
        "metrics.bures_wasserstein",
        lambda **kwargs: bc.metrics.bures_wasserstein(
            **{"mean": np.zeros(2), "covariance": EYE, "reference_mean": np.zeros(2)}
            | {"reference_covariance": EYE}
            | kwargs
        ),
        {
            "mean": st.one_of(st.just(np.zeros(3)), wrong_dtype(np.zeros(2))),
            "covariance": st.one_of(st.just(np.ones((2, 3))), wrong_dtype(EYE)),
            "reference_mean": with_non_finite(np.zeros(2)),
            "reference_covariance": st.one_of(with_non_finite(EYE), st.just(np.eye(3))),
        },
    ),
    Case(
        "metrics.bw_uvp",
        "model_samples",
        lambda value: bc.metrics.bw_uvp(value, (np.zeros(2), EYE)),
        st.one_of(
            with_non_finite(DATA_2D),
            wrong_rank(DATA_2D),
            empty_like(DATA_2D),
            wrong_dtype(DATA_2D),
        ),
        "model_samples",
    ),
    Case(
        "metrics.bw_uvp",
        "reference",
        lambda value: bc.metrics.bw_uvp(DATA_2D, value),
        st.one_of(
            with_non_finite(DATA_2D),
            st.just(np.zeros((5, 3))),
            st.just((np.zeros(3), np.eye(3))),
            wrong_dtype(DATA_2D),
        ),
        "reference",
    ),
    Case(
        "metrics.empirical_moments",
        "samples",
        bc.metrics.empirical_moments,
        st.one_of(
            with_non_finite(DATA_2D),
            st.just(np.zeros(3)),
            st.just(np.zeros((1, 2))),
            wrong_dtype(DATA_2D),
        ),
        "samples",
    ),
    *sizes(
        "metrics.expected_calibration_error",
        lambda **kwargs: bc.metrics.expected_calibration_error(
            **{"probabilities": PROBABILITIES, "labels": LABELS} | kwargs
        ),
        {
            "probabilities": st.one_of(
                with_non_finite(PROBABILITIES),
                st.just(PROBABILITIES + 1.0),
                st.just(-PROBABILITIES),
                wrong_rank(PROBABILITIES),
                empty_like(PROBABILITIES),
                wrong_dtype(PROBABILITIES),
            ),
            "labels": st.one_of(
                st.just(np.array([0, 1])),
                st.just(np.array([0.5, 1.0, 0.0])),
                st.just(np.array([0, 2, 1])),
                st.just(np.array([0, -1, 1])),
                wrong_dtype(LABELS),
            ),
            "num_bins": BAD_COUNTS,
        },
    ),
    *sizes(
        "metrics.imq_ksd",
        lambda **kwargs: bc.metrics.imq_ksd(**{"samples": DATA_2D, "scores": -DATA_2D} | kwargs),
        {
            "samples": st.one_of(
                with_non_finite(DATA_2D),
                wrong_rank(DATA_2D),
                empty_like(DATA_2D),
                wrong_dtype(DATA_2D),
            ),
            "scores": st.one_of(
                with_non_finite(DATA_2D), st.just(np.zeros((12, 3))), wrong_dtype(DATA_2D)
            ),
            "c": BAD_POSITIVE,
            "beta": st.one_of(st.floats(min_value=0.0), st.floats(max_value=-1.0), BAD_FINITE),
            "block_size": BAD_COUNTS,
        },
    ),
    *[
        Case(
            f"metrics.{name}",
            "draws",
            entry,
            st.one_of(
                with_non_finite(DRAWS),
                st.just(np.zeros(3)),
                st.just(np.zeros((2, 3, 2, 2))),
                st.just(np.zeros((2, 0, 2))),
                wrong_dtype(DRAWS),
            ),
            "draws",
        )
        for name, entry in [
            ("mcse_mean", bc.metrics.mcse_mean),
            ("mean_zscores", lambda draws: bc.metrics.mean_zscores(draws, np.zeros(2))),
            (
                "covariance_zscores",
                lambda draws: bc.metrics.covariance_zscores(draws, np.zeros(2), EYE),
            ),
        ]
    ],
    Case(
        "metrics.mean_zscores",
        "exact_mean",
        lambda value: bc.metrics.mean_zscores(DRAWS, value),
        st.one_of(with_non_finite(np.zeros(2)), st.just(np.zeros(3)), wrong_dtype(np.zeros(2))),
        "exact_mean",
    ),
    Case(
        "metrics.covariance_zscores",
        "exact_covariance",
        lambda value: bc.metrics.covariance_zscores(DRAWS, np.zeros(2), value),
        st.one_of(with_non_finite(EYE), st.just(np.eye(3)), wrong_dtype(EYE)),
        "exact_covariance",
    ),
    *sizes(
        "metrics.zscore_bound",
        lambda **kwargs: bc.metrics.zscore_bound(**{"num_moments": 3} | kwargs),
        {"num_moments": BAD_COUNTS, "single": BAD_POSITIVE},
    ),
    *sizes(
        "metrics.eot_gaussian_benchmark",
        lambda **kwargs: eot.eot_gaussian_benchmark(**{"dim": 2, "epsilon": 1.0} | kwargs),
        {"dim": BAD_COUNTS, "epsilon": BAD_POSITIVE, "seed": BAD_NON_NEGATIVE_COUNTS},
    ),
    *sizes(
        "metrics.eot_mixture_benchmark",
        lambda **kwargs: eot.eot_mixture_benchmark(**{"dim": 2, "epsilon": 1.0} | kwargs),
        {
            "dim": st.one_of(BAD_COUNTS, st.just(3)),
            "epsilon": st.one_of(BAD_POSITIVE, st.just(0.5)),
            "seed": BAD_NON_NEGATIVE_COUNTS,
        },
    ),
    *sizes(
        "metrics.gaussian_eot",
        lambda **kwargs: eot.gaussian_eot(
            **{"mean0": np.zeros(2), "cov0": EYE, "mean1": np.ones(2), "cov1": EYE}
            | {"epsilon": 1.0}
            | kwargs
        ),
        {
            "mean0": st.one_of(with_non_finite(np.zeros(2)), st.just(np.zeros(3))),
            "cov0": st.one_of(with_non_finite(EYE), st.just(-EYE)),
            "epsilon": BAD_POSITIVE,
            "num_test_inputs": BAD_COUNTS,
        },
    ),
    *sizes(
        "metrics.cbw_uvp",
        lambda **kwargs: eot.cbw_uvp(lambda key, x, n: jnp.zeros((n, 2)), BENCHMARK, KEY, **kwargs),
        {
            "num_samples": st.one_of(BAD_COUNTS, st.just(1)),
            "num_test_inputs": st.one_of(BAD_COUNTS, st.integers(10**6, 10**9)),
            "chunk_size": BAD_COUNTS,
        },
    ),
    Case(
        "metrics.cbw_uvp",
        "sample_conditional",
        lambda value: eot.cbw_uvp(value, BENCHMARK, KEY, num_test_inputs=2),
        st.sampled_from(
            [
                lambda key, x, n: jnp.zeros((n, 3)),
                lambda key, x, n: jnp.full((n, 2), jnp.nan),
            ]
        ),
        "sample_conditional",
    ),
    Case(
        "metrics.cbw_uvp",
        "benchmark",
        lambda value: eot.cbw_uvp(lambda key, x, n: jnp.zeros((n, 2)), value, KEY),
        WRONG_TYPES,
        "benchmark",
    ),
    *sizes(
        "metrics.ground_truth_floor",
        lambda **kwargs: eot.ground_truth_floor(BENCHMARK, KEY, **kwargs),
        {"num_samples": BAD_COUNTS, "num_test_inputs": BAD_COUNTS, "chunk_size": BAD_COUNTS},
    ),
    Case(
        "metrics.bw_uvp",
        "reference (one draw)",
        lambda value: bures.bw_uvp(DATA_2D, value),
        st.integers(0, 1).map(lambda rows: np.zeros((rows, 2))),
        "reference",
    ),
]


def _param(case: Case) -> Any:
    marks = [pytest.mark.xfail(strict=True, reason=case.xfail)] if case.xfail else []
    return pytest.param(case, marks=marks, id=f"{case.entry}-{case.argument}")


@contextlib.contextmanager
def _deadline(seconds: float):
    """Fail, rather than hang, if the body runs longer than ``seconds``."""

    def expire(signum: int, frame: Any) -> None:
        raise TimeoutError(f"the call ran past {seconds} s: it hangs or compiles first")

    if not hasattr(signal, "setitimer"):
        yield
        return
    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize("case", [_param(case) for case in CASES])
def test_bad_input_raises_a_bayescore_error_naming_it(case: Case) -> None:
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case.values)
    def check(value: Any) -> None:
        start = time.perf_counter()
        with _deadline(SECONDS_PER_CALL), pytest.raises(BayescoreError, match=case.names):
            case.call(value)
        assert time.perf_counter() - start < SECONDS_PER_CALL

    check()


def test_the_table_of_cases():
    # Each (entry point, argument) pair appears once per kind of bad value; the count of
    # distinct cases is what the issue reports.
    keys = [(case.entry, case.argument, case.names, repr(case.values)) for case in CASES]
    assert len(set(keys)) == len(CASES)
    assert len(CASES) >= 300  # 324 when written: 318 pass, 6 await fixes outside these files
