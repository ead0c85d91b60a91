"""The fused Bernoulli-logits rule equals NumPyro's log_prob and its derivatives (float64)."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.infer import util as numpyro_util

import bayescore as bc
from bayescore.core.likelihoods import FusedBernoulliLogits, bernoulli_logits_log_prob, fused

LOGITS = np.array([-1e3, -40.0, -3.0, -1e-8, 0.0, 1e-8, 0.5, 3.0, 40.0, 1e3])


def numpyro_log_prob(logits, value):
    return dist.BernoulliLogits(logits).log_prob(value)


@pytest.mark.parametrize("value", [0.0, 1.0])
def test_value_and_derivatives_equal_numpyros(value):
    with jax.enable_x64(True):
        logits = jnp.asarray(LOGITS)
        y = jnp.full_like(logits, value)
        np.testing.assert_allclose(
            bernoulli_logits_log_prob(logits, y), numpyro_log_prob(logits, y), rtol=1e-14, atol=0
        )
        # the exact derivatives: y - σ, -σ(1 - σ), -σ(1 - σ)(1 - 2σ). (NumPyro's own autodiff
        # is off at l = 0 exactly, where it differentiates max(l, 0) and |l| at their kinks.)
        sigma, rest = jax.nn.sigmoid(logits), jax.nn.sigmoid(-logits)  # σ(l), 1 - σ(l)
        exact = [y - sigma, -sigma * rest, -sigma * rest * (rest - sigma)]
        derivative = lambda f: bernoulli_logits_log_prob(f, y)  # noqa: E731
        for expected in exact:
            derivative = (lambda g: jax.grad(lambda f: g(f).sum()))(derivative)
            np.testing.assert_allclose(derivative(logits), expected, rtol=1e-12, atol=1e-15)
        # the value's tangent is the logit (a relaxed or differentiated observation)
        grad_y = jax.grad(lambda y: bernoulli_logits_log_prob(logits, y).sum())(y)
        np.testing.assert_allclose(grad_y, logits)


def test_only_bernoulli_logits_is_swapped_and_validation_is_kept():
    assert type(fused(dist.Bernoulli(logits=jnp.zeros(2)))) is FusedBernoulliLogits
    assert type(fused(dist.Bernoulli(probs=jnp.full(2, 0.5)))) is dist.BernoulliProbs
    masked = dist.Bernoulli(logits=jnp.zeros(2)).mask(False)
    assert fused(masked) is masked
    checked = fused(dist.Bernoulli(logits=jnp.zeros(2), validate_args=True))
    with pytest.warns(UserWarning, match="Out-of-support"):
        checked.log_prob(jnp.array([0.5, 1.0]))


def logistic(x, y=None):
    w = numpyro.sample("w", dist.Normal(0.0, 1.0).expand([x.shape[1]]).to_event(1))
    b = numpyro.sample("b", dist.Normal(0.0, 5.0))
    with numpyro.plate("data", x.shape[0]):
        numpyro.sample("y", dist.Bernoulli(logits=x @ w + b), obs=y)


def test_target_density_gradient_and_hessian_equal_numpyros_potential():
    with jax.enable_x64(True):
        rng = np.random.default_rng(0)
        x = rng.normal(size=(50, 3)) * 10.0  # large logits: the stable branches matter
        y = (rng.uniform(size=50) < 0.5).astype(np.float64)
        target = bc.Target.from_numpyro(logistic, x, y)
        params = {"w": jnp.array([0.3, -1.2, 2.0]), "b": jnp.array(0.7)}

        def reference(params):
            return -numpyro_util.potential_energy(logistic, (x, y), {}, params)

        np.testing.assert_allclose(target.logdensity(params), reference(params), rtol=1e-13)
        for ours, theirs in zip(
            jax.tree.leaves(jax.grad(target.logdensity)(params)),
            jax.tree.leaves(jax.grad(reference)(params)),
            strict=True,
        ):
            np.testing.assert_allclose(ours, theirs, rtol=1e-12)
        flat, unravel = jax.flatten_util.ravel_pytree(params)
        hessians = [
            jax.hessian(lambda f, g=g: g(unravel(f)))(flat) for g in (target.logdensity, reference)
        ]
        np.testing.assert_allclose(hessians[0], hessians[1], rtol=1e-11, atol=1e-12)


def test_integer_and_boolean_observations_are_differentiable():
    with jax.enable_x64(True):
        logits = jnp.array([-2.0, 0.3, 4.0])
        expected = jnp.array([0.0, 1.0, 1.0]) - jax.nn.sigmoid(logits)
        for y in (jnp.array([0, 1, 1]), jnp.array([False, True, True])):
            grad = jax.grad(lambda f, y=y: bernoulli_logits_log_prob(f, y).sum())(logits)
            np.testing.assert_allclose(grad, expected, rtol=1e-14)


NESTED_AXES = [
    axes
    for axes in itertools.product([0, None], repeat=4)
    if axes[0::2] != (None, None) and axes[1::2] != (None, None)  # each vmap maps something
]


@pytest.mark.parametrize("axes", NESTED_AXES)
def test_nested_vmaps_over_any_arguments_equal_numpyros(axes):
    # Batched calls move the batch axis first inside the rule; under two vmaps each argument
    # may be mapped by either, both or neither (logits outer, logits inner, y outer, y inner).
    logits_outer, logits_inner, y_outer, y_inner = axes
    rng = np.random.default_rng(2)

    def array(outer, inner):
        return jnp.asarray(rng.normal(size=(2,) * (outer == 0) + (3,) * (inner == 0) + (5,)))

    logits, y = array(logits_outer, logits_inner) * 3.0, array(y_outer, y_inner) > 0
    results = []
    for log_prob in (bernoulli_logits_log_prob, numpyro_log_prob):

        def f(logit, y, log_prob=log_prob):
            return jnp.sum(2.0 * log_prob(logit, y))

        mapped = [
            jax.jit(jax.vmap(jax.vmap(g, (logits_inner, y_inner)), (logits_outer, y_outer)))
            for g in (f, jax.grad(f))
        ]
        results.append([m(logits, y.astype(logits.dtype)) for m in mapped])
    for ours, theirs in zip(*results, strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)


def test_batched_hessians_are_exact_reverse_over_reverse_too():
    # The batching rule is never differentiated: derivatives of any order are the custom
    # JVP's, so jacrev of grad (which cannot transpose a custom_vmap) works under vmap.
    with jax.enable_x64(True):
        rng = np.random.default_rng(1)
        x, w = rng.normal(size=(7, 3)) * 3.0, rng.normal(size=(4, 3))
        y = (rng.uniform(size=7) < 0.5).astype(np.float64)
        for transform in (jax.hessian, lambda g: jax.jacrev(jax.grad(g))):
            hessians = [
                jax.vmap(transform(lambda w, f=f: f(x @ w, y).sum()))(w)
                for f in (bernoulli_logits_log_prob, numpyro_log_prob)
            ]
            np.testing.assert_allclose(hessians[0], hessians[1], rtol=1e-11, atol=1e-13)
