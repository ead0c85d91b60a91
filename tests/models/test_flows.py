"""Flow bijections: inverse, log-determinant and inverse gradients, property-tested in float64."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from bayescore.models.flows import Planar, Radial
from tests.models.flow_helpers import perturbed

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


@eqx.filter_jit
def round_trip(flow, x):
    """``x`` back from ``inverse(forward(x))``, the two log-dets, and jacfwd's log-det."""
    y, log_det = flow.transform_and_log_det(x)
    back, inverse_log_det = flow.inverse_and_log_det(y)
    return back, log_det, inverse_log_det, jnp.linalg.slogdet(jax.jacfwd(flow.transform)(x))[1]


def check_round_trip_and_log_det(flow, x):
    x = jnp.asarray(x, jnp.float64)
    back, log_det, inverse_log_det, jacobian_log_det = round_trip(flow, x)
    np.testing.assert_allclose(back, x, rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(log_det, jacobian_log_det, rtol=1e-8, atol=1e-8)
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
        check_gradients(LOSS, GRAD, args)


def check_gradients(loss, grad_fn, args):
    """``grad_fn(*args)`` against central differences of ``loss``, one coordinate at a time."""
    for i, grad in enumerate(grad_fn(*args)):
        flat = np.asarray(args[i]).reshape(-1)
        for j in range(flat.size):
            step = np.zeros_like(flat)
            step[j] = 1e-6
            up, down = list(args), list(args)
            up[i] = jnp.asarray((flat + step).reshape(np.shape(args[i])))
            down[i] = jnp.asarray((flat - step).reshape(np.shape(args[i])))
            numeric = (loss(*up) - loss(*down)) / 2e-6
            np.testing.assert_allclose(np.reshape(grad, -1)[j], numeric, rtol=1e-5, atol=1e-6)


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


# ------------------------------------------------------------ smooth mixtures (interval, torus)

UNIT = st.one_of(
    st.floats(0.0, 1.0, allow_nan=False),
    st.sampled_from([0.0, 1e-12, 1e-6, 0.5, 1.0 - 1e-6, 1.0 - 1e-12, 1.0]),
)


def smooth_cases(dim=None, components=None):
    """Parameters ``(dim, components)`` each, a point, ``circular`` and ``power``; ``dim`` and
    ``components`` drawn unless given."""

    @st.composite
    def cases(draw):
        d = dim if dim is not None else draw(st.integers(1, 3))
        k = components if components is not None else draw(st.sampled_from([1, 3]))
        params = {
            name: np.asarray(
                draw(st.lists(st.floats(-2.0, 2.0), min_size=d * k, max_size=d * k))
            ).reshape(d, k)
            for name in ("weights", "shift", "slope", "mix", "log_alpha")
        }
        x = np.asarray(draw(st.lists(UNIT, min_size=d, max_size=d)))
        return params, x, draw(st.booleans()), draw(st.integers(1, 2))

    return cases()


# Each structure (a new shape or static setting) costs a compile of a few seconds, the values
# within it none: the property tests draw values within a few structures that between them
# take every value of every factor (circular, power, dim, components).
SMOOTH_STRUCTURES = [(False, 1, 1, 1), (False, 2, 3, 3), (True, 1, 2, 3), (True, 2, 3, 1)]
PER_STRUCTURE = settings(max_examples=6, deadline=None, derandomize=True)


def build_smooth(params, circular, power):
    from bayescore.models.flows import SmoothMixture

    arrays = {k: jnp.asarray(v, jnp.float64) for k, v in params.items()}
    dim = params["weights"].shape[0]
    return SmoothMixture(**arrays, power=power, circular=circular, shape=(dim,))


@pytest.mark.parametrize("circular, power, dim, components", SMOOTH_STRUCTURES)
@PER_STRUCTURE
@given(data=st.data())
def test_smooth_mixture_inverts_and_its_log_det_is_the_jacobians(
    circular, power, dim, components, data
):
    with jax.enable_x64(True):
        params, x, _, _ = data.draw(smooth_cases(dim, components))
        flow = build_smooth(params, circular, power)
        y = flow.transform(jnp.asarray(x, jnp.float64))
        assert bool(jnp.all((y >= 0.0) & (y <= 1.0)))
        check_round_trip_and_log_det(flow, x)


@pytest.mark.parametrize("circular, power, dim, components", SMOOTH_STRUCTURES)
@PER_STRUCTURE
@given(data=st.data())
def test_smooth_circle_map_fixes_the_seam_and_is_smooth_across_it(
    circular, power, dim, components, data
):
    del circular  # the seam is the circle's
    with jax.enable_x64(True):
        params, _, _, _ = data.draw(smooth_cases(dim, components))
        flow = build_smooth(params, True, power)
        dim = params["weights"].shape[0]
        for end in (0.0, 1.0):
            np.testing.assert_allclose(flow.transform(jnp.full(dim, end)), end, atol=1e-12)
        # First and second derivatives agree at 0 and 1: a diffeomorphism of the circle.
        first, second = seam_derivatives(flow)
        np.testing.assert_allclose(first[:, 0], first[:, 1], rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(second[:, 0], second[:, 1], rtol=1e-7, atol=1e-9)


@eqx.filter_jit
def seam_derivatives(flow):
    """f' and f'' of every coordinate's map at 0 and at 1: two arrays of shape (dim, 2)."""

    def derivatives(*params):
        first = jax.grad(lambda x: flow._scalar(x, params))
        second = jax.grad(first)
        ends = jnp.array([0.0, 1.0])
        return jax.vmap(first)(ends), jax.vmap(second)(ends)

    return jax.vmap(derivatives)(*flow._params())


def smooth_inverse_loss(weights, shift, slope, mix, log_alpha, y):
    from bayescore.models.flows import SmoothMixture

    flow = SmoothMixture(
        weights, shift, slope, mix, log_alpha, power=1, circular=True, shape=(weights.shape[0],)
    )
    x, log_det = flow.inverse_and_log_det(y)
    return jnp.sum(jnp.sin(3.0 * x)) + log_det


SMOOTH_LOSS = jax.jit(smooth_inverse_loss)
SMOOTH_GRAD = jax.jit(jax.grad(smooth_inverse_loss, argnums=tuple(range(6))))


@settings(max_examples=8, deadline=None, derandomize=True)
@given(smooth_cases())
def test_smooth_inverse_gradients_match_finite_differences(case):
    with jax.enable_x64(True):
        params, x, _, _ = case
        assume(np.all((x > 1e-3) & (x < 1 - 1e-3)))
        flow = build_smooth(params, True, 1)
        y = flow.transform(jnp.asarray(x, jnp.float64))
        names = ("weights", "shift", "slope", "mix", "log_alpha")
        args = [jnp.asarray(params[k], jnp.float64) for k in names] + [y]
        check_gradients(SMOOTH_LOSS, SMOOTH_GRAD, args)


@st.composite
def coupling_cases(draw):
    dim = draw(st.integers(2, 3))
    conditional = draw(st.booleans())
    x = np.asarray(draw(st.lists(UNIT, min_size=dim, max_size=dim)))
    condition = np.asarray(draw(st.lists(FLOATS, min_size=2, max_size=2))) if conditional else None
    return draw(st.integers(0, 2**16)), dim, draw(st.booleans()), x, condition


@eqx.filter_jit
def conditional_round_trip(flow, x, condition):
    y, log_det = flow.transform_and_log_det(x, condition)
    back, inverse_log_det = flow.inverse_and_log_det(y, condition)
    jacobian = jax.jacfwd(lambda x: flow.transform(x, condition))(x)
    # the map at both ends of the first (conditioning) coordinate, for the torus's periodicity
    ends = jax.vmap(lambda end: flow.transform(x.at[0].set(end), condition))(jnp.arange(2.0))
    return y, back, log_det, inverse_log_det, jnp.linalg.slogdet(jacobian)[1], ends


@SETTINGS
@given(coupling_cases())
def test_smooth_coupling_inverts_and_its_log_det_is_the_jacobians(case):
    from bayescore.models.flows import SmoothCoupling

    seed, dim, circular, x, condition = case
    with jax.enable_x64(True):
        layer = SmoothCoupling(
            jax.random.key(seed),
            dim=dim,
            untransformed_dim=dim // 2,
            cond_dim=None if condition is None else 2,
            circular=circular,
            num_components=3,
            nn_width=8,
            init_scale=1.0,  # far from the identity
        )
        x = jnp.asarray(x, jnp.float64)
        cond = None if condition is None else jnp.asarray(condition, jnp.float64)
        y, back, log_det, inverse_log_det, jacobian_log_det, (at_zero, at_one) = (
            conditional_round_trip(layer, x, cond)
        )
        np.testing.assert_allclose(back, x, rtol=1e-8, atol=1e-8)
        np.testing.assert_allclose(log_det, jacobian_log_det, rtol=1e-8, atol=1e-8)
        np.testing.assert_allclose(inverse_log_det, -log_det, rtol=1e-8, atol=1e-8)
        # The untransformed coordinates pass through; on the torus both ends of the
        # conditioning coordinate give the same map.
        np.testing.assert_array_equal(y[: dim // 2], x[: dim // 2])
        if circular:
            np.testing.assert_allclose(at_zero[dim // 2 :], at_one[dim // 2 :], atol=1e-12)


def test_inverse_autoregressive_flow_inverts_and_its_log_det_is_the_jacobians():
    import paramax
    from flowjax.distributions import StandardNormal

    from bayescore.models import flows

    with jax.enable_x64(True):
        flow = flows.inverse_autoregressive_flow(
            jax.random.key(0), base_dist=StandardNormal((4,)), flow_layers=3, nn_width=8
        )
        flow = perturbed(flow)  # away from the identity: every layer matters
        bijection = paramax.unwrap(flow).bijection
        for seed in range(3):
            check_round_trip_and_log_det(bijection, jax.random.normal(jax.random.key(seed), (4,)))


def test_inverse_autoregressive_flow_clips_the_log_scale():
    """Every weight × 100: each layer's log-determinant stays within dim × [−5, 3], so the
    density of a draw stays within 3 · 4 · 5 nats of the base density's."""
    from flowjax.distributions import StandardNormal

    from bayescore.models import flows
    from bayescore.models.flows.flows import _ClippedExp

    np.testing.assert_allclose(
        _ClippedExp(-5.0, 3.0)(jnp.array([-9.0, 0.5, 9.0])), jnp.exp(jnp.array([-5.0, 0.5, 3.0]))
    )
    with jax.enable_x64(True):
        flow = flows.inverse_autoregressive_flow(
            jax.random.key(0), base_dist=StandardNormal((4,)), flow_layers=3, nn_width=8
        )
        wild = jax.tree.map(lambda a: 100.0 * a if eqx.is_inexact_array(a) else a, flow)
        keys = jax.random.split(jax.random.key(2))
        _, log_q = wild.sample_and_log_prob(keys[0], (64,))
        base = StandardNormal((4,)).sample_and_log_prob(keys[0], (64,))[1]
        assert bool(jnp.all(jnp.isfinite(log_q)))
        assert float(jnp.max(jnp.abs(log_q - base))) <= 3 * 4 * 5 + 1e-9
