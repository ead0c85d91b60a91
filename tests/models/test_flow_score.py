"""The score carried through a flow's layers equals autodiff of its log density (float64)."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flowjax.bijections import Affine, Coupling, MaskedAutoregressive, RationalQuadraticSpline
from flowjax.distributions import StandardNormal
from flowjax.root_finding import elementwise_autoregressive_bisection
from hypothesis import given, settings
from hypothesis import strategies as st

from bayescore.core.errors import ArgumentError
from bayescore.inference import vi
from bayescore.models import flows
from bayescore.models.flows.score import _push_dense, push
from tests.models.test_flows import (
    SETTINGS,
    build_planar,
    build_radial,
    planar_cases,
    radial_cases,
    vectors,
)


def dense_push(layer, x, score):
    """The oracle: the layer's Jacobian by jacfwd and a dense solve."""
    return _push_dense(layer.transform_and_log_det, x, score)


def check_push(layer, x, score):
    x, score = jnp.asarray(x, jnp.float64), jnp.asarray(score, jnp.float64)
    y, log_det, pushed = eqx.filter_jit(push)(layer, x, score)
    y_dense, log_det_dense, pushed_dense = eqx.filter_jit(dense_push)(layer, x, score)
    np.testing.assert_allclose(y, y_dense, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(log_det, log_det_dense, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(pushed, pushed_dense, rtol=1e-8, atol=1e-8)


@SETTINGS
@given(planar_cases(), st.data())
def test_planar_score_rule_is_the_dense_solve(case, data):
    params, x = case
    with jax.enable_x64(True):
        check_push(build_planar(params), x, data.draw(vectors(len(x))))


@SETTINGS
@given(radial_cases(), st.data())
def test_radial_score_rule_is_the_dense_solve(case, data):
    params, x = case
    with jax.enable_x64(True):
        layer = build_radial(params)
        score = data.draw(vectors(len(x)))
        if np.array_equal(x, params["centre"]):
            # Exactly at the centre jacfwd of |x - x0| is 0/0; the map is (1 + β/α)·I there
            # and the rule takes the log-det's (symmetric) subgradient 0.
            alpha, beta = layer._alpha_beta()
            _, _, pushed = push(layer, jnp.asarray(x), jnp.asarray(score))
            np.testing.assert_allclose(pushed, score / (1 + beta / alpha), rtol=1e-10)
        else:
            check_push(layer, x, score)


COUPLINGS = {
    "smooth": flows.SmoothCoupling(jax.random.key(0), dim=3, untransformed_dim=1, circular=True),
    "spline": Coupling(
        jax.random.key(0),
        transformer=RationalQuadraticSpline(knots=5, interval=3.0),
        untransformed_dim=2,
        dim=4,
        nn_width=8,
        nn_depth=1,
    ),
}


@pytest.mark.parametrize("name", COUPLINGS)
@settings(max_examples=10, deadline=None, derandomize=True)
@given(seed=st.integers(0, 10_000))
def test_coupling_score_rules_are_the_dense_solve(seed, name):
    with jax.enable_x64(True):
        layer = COUPLINGS[name]
        dim = layer.shape[0]
        keys = iter(jax.random.split(jax.random.key(seed), 64))

        def perturb(a):  # random parameters: far from the identity the layer starts at
            if not eqx.is_inexact_array(a):
                return a
            return a.astype(jnp.float64) + jax.random.normal(next(keys), a.shape, jnp.float64)

        layer = jax.tree.map(perturb, layer)
        x_key, g_key = jax.random.split(next(keys))
        if name == "smooth":
            x = jax.random.uniform(x_key, (dim,), jnp.float64)
        else:
            x = 2 * jax.random.normal(x_key, (dim,), jnp.float64)
        check_push(layer, x, jax.random.normal(g_key, (dim,), jnp.float64))


def _bisection(bijection, y, condition=None):
    """BNAF's inverse, coordinate by coordinate (each is monotone given the earlier ones)."""
    root, _ = elementwise_autoregressive_bisection(
        lambda x: bijection.transform(x, condition) - y,
        lower=jnp.full(y.shape, -30.0),
        upper=jnp.full(y.shape, 30.0),
        atol=1e-13,
    )
    return root


# Built once: flowjax keeps a closure per instance in its static fields, so every new instance
# compiles every program again; the examples below draw random parameters instead.
AUTOREGRESSIVE = {
    name: MaskedAutoregressive(
        jax.random.key(0), transformer=transformer, dim=4, nn_width=8, nn_depth=1
    )
    for name, transformer in [
        ("affine", Affine()),
        ("spline", RationalQuadraticSpline(knots=4, interval=4.0)),
    ]
}


@pytest.mark.parametrize("transformer", AUTOREGRESSIVE)
@settings(max_examples=10, deadline=None, derandomize=True)
@given(seed=st.integers(0, 10_000))
def test_autoregressive_score_rules_are_the_dense_solve(seed, transformer):
    """IAF direction: one jacfwd and a triangular solve; MAF direction (the sequential
    inverse): one VJP of the forward map. Both against jacfwd and a dense solve."""
    with jax.enable_x64(True):
        keys = iter(jax.random.split(jax.random.key(seed), 64))
        layer = AUTOREGRESSIVE[transformer]

        def perturb(a):
            if not eqx.is_inexact_array(a):
                return a
            return a.astype(jnp.float64) + 0.5 * jax.random.normal(next(keys), a.shape, a.dtype)

        layer = jax.tree.map(perturb, layer)
        x = jax.random.normal(next(keys), (4,), jnp.float64)
        score = jax.random.normal(next(keys), (4,), jnp.float64)
        check_push(layer, x, score)
        y, log_det, pushed = eqx.filter_jit(push)(layer, x, score, inverse=True)
        oracle = eqx.filter_jit(_push_dense)(layer.inverse_and_log_det, x, score)
        for ours, dense in zip((y, log_det, pushed), oracle, strict=True):
            np.testing.assert_allclose(ours, dense, rtol=1e-8, atol=1e-8)


FLOWS = {
    "mean-field": lambda key: vi.mean_field(3),
    "full-rank": lambda key: vi.full_rank(3),
    "low-rank": lambda key: vi.low_rank(3, 2),
    "affine coupling": lambda key: flows.coupling_flow(key, base_dist=StandardNormal((3,))),
    "spline coupling": lambda key: flows.coupling_flow(
        key,
        base_dist=StandardNormal((3,)),
        transformer=RationalQuadraticSpline(knots=5, interval=4.0),
    ),
    "MAF": lambda key: flows.masked_autoregressive_flow(key, base_dist=StandardNormal((3,))),
    "IAF": lambda key: flows.masked_autoregressive_flow(
        key, base_dist=StandardNormal((3,)), invert=False
    ),
    "IAF, log-scale": lambda key: flows.inverse_autoregressive_flow(
        key, base_dist=StandardNormal((3,))
    ),
    "BNAF": lambda key: flows.block_neural_autoregressive_flow(
        key, base_dist=StandardNormal((3,)), invert=False, inverter=_bisection
    ),
    "BNAF sampled by bisection": lambda key: flows.block_neural_autoregressive_flow(
        key, base_dist=StandardNormal((3,)), inverter=_bisection
    ),
    "planar": lambda key: flows.planar_flow(key, base_dist=StandardNormal((3,))),
    "planar inverted": lambda key: flows.planar_flow(
        key, base_dist=StandardNormal((3,)), invert=True
    ),
    "radial": lambda key: flows.radial_flow(key, base_dist=StandardNormal((3,))),
    "smooth torus": lambda key: flows.smooth_flow(
        key, 2, circular=True, flow_layers=1, nn_depth=1, nn_width=8
    ),
}


@pytest.mark.parametrize("name", FLOWS)
def test_sample_with_score_is_the_gradient_of_log_prob(name):
    with jax.enable_x64(True):
        flow = FLOWS[name](jax.random.key(0))
        x, log_q, score = flows.sample_with_score(flow, jax.random.key(1), (2, 3))
        assert x.shape == (2, 3, flow.shape[0]) and log_q.shape == (2, 3)
        # each oracle compiled whole: run op by op, a bisection or root-find inverter
        # dispatches (and compiles) hundreds of small programs
        sample = eqx.filter_jit(lambda flow, key: flow.sample(key, (2, 3)))
        np.testing.assert_allclose(x, sample(flow, jax.random.key(1)), rtol=1e-12)
        log_prob = eqx.filter_jit(lambda flow, x: flow.log_prob(x))
        np.testing.assert_allclose(log_q, log_prob(flow, x), rtol=1e-10, atol=1e-10)
        exact = eqx.filter_jit(lambda flow, x: jax.vmap(jax.vmap(jax.grad(flow.log_prob)))(x))
        np.testing.assert_allclose(score, exact(flow, x), rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("invert", [False, True])
def test_sample_with_score_of_a_conditional_flow_and_bad_input(invert):
    with jax.enable_x64(True):
        flow = flows.masked_autoregressive_flow(
            jax.random.key(0), base_dist=StandardNormal((2,)), cond_dim=1, invert=invert
        )
        condition = jnp.array([0.7])
        x, _, score = flows.sample_with_score(flow, jax.random.key(1), (4,), condition)
        exact = jax.vmap(jax.grad(lambda x: flow.log_prob(x, condition)))(x)
        np.testing.assert_allclose(score, exact, rtol=1e-8, atol=1e-8)
        with pytest.raises(ArgumentError, match=r"condition must have shape \(1,\)"):
            flows.sample_with_score(flow, jax.random.key(1), (4,), jnp.ones(2))
        with pytest.raises(ArgumentError, match="flowjax distribution"):
            flows.sample_with_score(jnp.ones(3), jax.random.key(1))
