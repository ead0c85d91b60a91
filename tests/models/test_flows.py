"""Flow bijections: inverse, log-determinant and inverse gradients, property-tested in float64."""

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from bayescore.models.flows import Planar, Radial

FLOATS = st.floats(-3.0, 3.0, allow_nan=False, allow_infinity=False)
SETTINGS = settings(max_examples=25, deadline=None, derandomize=True)


def vectors(dim):
    return st.lists(FLOATS, min_size=dim, max_size=dim).map(np.asarray)


@st.composite
def planar_cases(draw):
    dim = draw(st.integers(1, 4))
    params = dict(weight=draw(vectors(dim)), scale=draw(vectors(dim)), bias=draw(FLOATS))
    return params, draw(vectors(dim))


@st.composite
def radial_cases(draw):
    dim = draw(st.integers(1, 4))
    params = dict(centre=draw(vectors(dim)), log_alpha=draw(FLOATS), beta=draw(FLOATS))
    # Points at the centre, where |z - z0| has a kink, and ones far away.
    x = draw(st.one_of(vectors(dim), st.just(params["centre"]), vectors(dim).map(lambda v: 30 * v)))
    return params, x


def build_planar(params):
    return Planar(
        **{k: jnp.asarray(v, jnp.float64) for k, v in params.items()},
        shape=(len(params["weight"]),),
    )


def build_radial(params):
    return Radial(
        **{k: jnp.asarray(v, jnp.float64) for k, v in params.items()},
        shape=(len(params["centre"]),),
    )


def check_round_trip_and_log_det(flow, x):
    x = jnp.asarray(x, jnp.float64)
    y, log_det = flow.transform_and_log_det(x)
    back, inverse_log_det = flow.inverse_and_log_det(y)
    np.testing.assert_allclose(back, x, rtol=1e-8, atol=1e-8)
    jacobian = jax.jacfwd(flow.transform)(x)
    np.testing.assert_allclose(log_det, jnp.linalg.slogdet(jacobian)[1], rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(inverse_log_det, -log_det, rtol=1e-8, atol=1e-8)


@SETTINGS
@given(planar_cases())
def test_planar_inverts_and_its_log_det_is_the_jacobians(case):
    with jax.enable_x64(True):
        params, x = case
        check_round_trip_and_log_det(build_planar(params), x)


@SETTINGS
@given(radial_cases())
def test_radial_inverts_and_its_log_det_is_the_jacobians(case):
    with jax.enable_x64(True):
        params, x = case
        flow = build_radial(params)
        if np.allclose(x, params["centre"]):  # jacfwd of |z - z0| is undefined at z0
            y, log_det = flow.transform_and_log_det(jnp.asarray(x, jnp.float64))
            np.testing.assert_allclose(flow.inverse(y), x, atol=1e-12)
            return
        check_round_trip_and_log_det(flow, x)


def planar_inverse_loss(weight, scale, bias, y):
    flow = Planar(weight=weight, scale=scale, bias=bias, shape=weight.shape)
    x, log_det = flow.inverse_and_log_det(y)
    return jnp.sum(jnp.sin(x)) + log_det


LOSS = jax.jit(planar_inverse_loss)
GRAD = jax.jit(jax.grad(planar_inverse_loss, argnums=(0, 1, 2, 3)))


@SETTINGS
@given(planar_cases())
def test_planar_inverse_gradients_match_finite_differences(case):
    with jax.enable_x64(True):
        params, x = case
        # û = u + [m(w·u) - w·u] w/|w|² is singular at w = 0 (the paper's reparameterisation).
        assume(np.linalg.norm(params["weight"]) > 0.1)
        y = build_planar(params).transform(jnp.asarray(x, jnp.float64))
        args = [jnp.asarray(params[k], jnp.float64) for k in ("weight", "scale", "bias")] + [y]
        grads = GRAD(*args)
        for i, grad in enumerate(grads):  # central differences, one coordinate at a time
            flat = np.atleast_1d(np.asarray(args[i]))
            for j in range(flat.size):
                step = np.zeros_like(flat)
                step[j] = 1e-6
                up, down = list(args), list(args)
                up[i] = jnp.asarray((flat + step).reshape(np.shape(args[i])))
                down[i] = jnp.asarray((flat - step).reshape(np.shape(args[i])))
                numeric = (LOSS(*up) - LOSS(*down)) / 2e-6
                np.testing.assert_allclose(np.atleast_1d(grad)[j], numeric, rtol=1e-5, atol=1e-6)


def test_planar_reparameterisation_keeps_it_invertible():
    # w·u far below -1: the raw map folds; the reparameterised û has w·û > -1.
    flow = Planar(
        weight=jnp.array([1.0, 0.0]), scale=jnp.array([-5.0, 0.0]), bias=jnp.zeros(()), shape=(2,)
    )
    assert float(flow.weight @ flow._u_hat()) > -1.0
    xs = jnp.linspace(-4, 4, 201)[:, None] * jnp.array([1.0, 0.0])
    ys = jax.vmap(flow.transform)(xs)[:, 0]
    assert bool(jnp.all(jnp.diff(ys) > 0))


def test_bijections_compose_with_flowjax_into_a_flow_distribution():
    from flowjax.bijections import Chain
    from flowjax.distributions import StandardNormal, Transformed

    from bayescore.models.flows import planar, radial

    keys = jax.random.split(jax.random.key(0), 3)
    bijection = Chain([planar(keys[0], 2), radial(keys[1], 2), planar(keys[2], 2)])
    flow = Transformed(StandardNormal((2,)), bijection)
    x = jax.random.normal(jax.random.key(1), (50, 2))
    y, log_det = jax.vmap(bijection.transform_and_log_det)(x)
    expected = StandardNormal((2,)).log_prob(x) - log_det  # change of variables
    np.testing.assert_allclose(flow.log_prob(y), expected, rtol=1e-4, atol=1e-4)
    samples = flow.sample(jax.random.key(2), (100,))
    assert samples.shape == (100, 2) and bool(jnp.all(jnp.isfinite(flow.log_prob(samples))))
