"""Random functions and non-parametrics (reference notes, section 6: T3, T4, T8, Poisson).

Statistical checks are within 4 Monte Carlo standard errors, with fixed seeds.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from scipy import stats

from bayescore.core.errors import ArgumentError, BayescoreError
from bayescore.inference import programs
from bayescore.models import ho
from bayescore.models.ho.runtime import Frame, run_frame
from tests.programs.test_sampling import evidence_ratio, self_normalised

XS = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
YS = jnp.array([0.6, 0.7, 1.2, 3.2, 6.8, 8.2, 8.4])
T3_F25, T3_F7, T3_LOG_Z = (3.375183, 0.194113), (10.432305, 0.421749), -20.872379
T4_F = {0.5: (0.652912, 1.021906), 2.5: (2.233690, 1.021778), 6.5: (8.395006, 1.445013)}
T4_LOG_Z = -14.217577


def linear_kernel(x, y):
    """The covariance of f(x) = a x + b with a, b ~ N(0, 3^2)."""
    return 9.0 * x * y + 9.0


def squared_exponential(x, y):
    return 2.0 * math.exp(-0.5 * (x - y) ** 2)


def gp_regression():
    """T3 with f ~ GP(0, 9xx' + 9): LazyPPL `regress 0.5 linear` as GP regression."""
    f = ho.gp_fn("f", linear_kernel)
    numpyro.sample("y", dist.Normal(jnp.stack([f(x) for x in XS]), 0.5), obs=YS)
    return f


def basis_regression():
    """T3 with f(x) = (x, 1) . w, w ~ N(0, 3^2 I)."""
    prior = dist.Normal(0.0, 3.0).expand([2]).to_event(1)
    f = ho.linear_basis("w", lambda x: jnp.stack([x, jnp.ones_like(x)], axis=-1), prior)
    numpyro.sample("y", dist.Normal(f(jnp.array(XS)), 0.5), obs=YS)
    return f


def wiener_regression():
    """T4 (LazyPPL WienerDemo): f = a + 2 W, a ~ N(0, 3^2), noise 0.3."""
    offset = numpyro.sample("a", dist.Normal(0.0, 3.0))
    w = ho.wiener("w")

    def f(x):
        return offset + 2.0 * w(x)

    for x, y in zip(XS, YS, strict=True):
        numpyro.sample(f"y{x:.0f}", dist.Normal(f(x), 0.3), obs=y)
    return f


def test_lazy_gp_trace_is_the_gp_prior_exactly():
    # With f(0), f(1) replayed, the rank-2 kernel fixes f on the line through them, and the
    # sites' log densities add up to the bivariate normal density of (f(0), f(1)).
    frame = Frame(key=jax.random.key(0), replay={("f", 0.0): 0.4, ("f", 1.0): 1.9})
    f = run_frame(frame, gp_regression)
    assert abs(float(f(2.5)) - (0.4 + 2.5 * 1.5)) < 1e-5
    assert abs(float(f(7.0)) - (0.4 + 7.0 * 1.5)) < 1e-5
    log_prior = sum(site.log_prob for site in frame.trace.values() if site.is_latent)
    covariance = np.array([[linear_kernel(a, b) for b in (0.0, 1.0)] for a in (0.0, 1.0)])
    exact = stats.multivariate_normal(np.zeros(2), covariance).logpdf([0.4, 1.9])
    assert abs(log_prior - exact) < 1e-5


@pytest.mark.parametrize("model", [gp_regression, basis_regression], ids=["gp_fn", "basis"])
def test_random_function_regression_is_gp_regression(model):
    # T3 by likelihood weighting; the standard errors are the delta-method ones of
    # test_sampling (self-normalised means, and Zhat as a mean of N i.i.d. weights).
    population = programs.importance(ho.from_model(model), 2000, jax.random.key(3))
    ratio, ratio_error = evidence_ratio(population, T3_LOG_Z)
    assert abs(ratio - 1.0) < 4 * ratio_error
    for x, (mean, _) in ((2.5, T3_F25), (7.0, T3_F7)):
        estimate, error = self_normalised(population, lambda f, x=x: f(x))
        assert abs(estimate - mean) < 4 * error


def test_wiener_regression_by_smc_over_independent_runs():
    # T4: SMC's Zhat_r and Zhat_r * fhat_r are unbiased over independent runs r; the ratio of
    # their means has a delta-method standard error over the runs (as in test_sampling).
    # f(0.5) and f(2.5) are Brownian-bridge draws of the returned functions, f(6.5) an
    # extension draw, all made after the runs.
    evidences, estimates = [], []
    for run in range(5):
        population = programs.smc(ho.from_model(wiener_regression), 80, jax.random.key(10 + run))
        evidences.append(math.exp(population.log_evidence - T4_LOG_Z))
        estimates.append([population.expectation(lambda f, x=x: f(x)) for x in T4_F])
    evidences, estimates = np.array(evidences), np.array(estimates)
    assert abs(evidences.mean() - 1.0) < 4 * evidences.std(ddof=1) / math.sqrt(len(evidences))
    products = evidences[:, None] * estimates
    ratio = products.mean(0) / evidences.mean()
    residuals = products - ratio * evidences[:, None]
    errors = residuals.std(0, ddof=1) / (math.sqrt(len(evidences)) * evidences.mean())
    for index, (mean, sd) in enumerate(T4_F.values()):
        # an error floor of sd / sqrt(5 * 80): the spread over 5 runs can itself be small
        assert abs(ratio[index] - mean) < 4 * max(errors[index], sd / math.sqrt(400))


def test_gp_fn_has_no_pin_at_zero():
    # Exact: the site of f(0) is drawn from N(0, k(0, 0)) whatever was queried before it.
    def prior():
        f = ho.gp_fn("f", squared_exponential)
        return f(0.0), f

    _, trace = ho.from_model(prior).run(jax.random.key(0))[1:]
    assert float(trace[("f", 0.0)].distribution.scale) ** 2 == pytest.approx(2.0)
    # Monte Carlo: the variance of f(0) over 1000 prior draws, SE var * sqrt(2 / (N - 1)).
    values = np.array(
        [float(ho.Random.from_model(prior).draw(jax.random.key(seed))[0]) for seed in range(1000)]
    )
    assert abs(values.var(ddof=1) - 2.0) < 4 * 2.0 * math.sqrt(2 / 999)


def test_posterior_function_is_reproducible_at_a_new_point():
    # A returned function evaluated at a new point after the run draws what the run would
    # have drawn had it queried that point last, and the same value the second time.
    def model(query_last):
        f = ho.gp_fn("f", squared_exponential)
        numpyro.sample("y", dist.Normal(f(0.0), 0.5), obs=1.0)
        return f(1.7) if query_last else f

    key = jax.random.key(5)
    f = ho.from_model(model, False).run(key)[0]
    in_run = ho.from_model(model, True).run(key)[0]
    assert float(f(1.7)) == float(f(1.7)) == pytest.approx(float(in_run), abs=1e-6)
    population = programs.importance(ho.from_model(model, False), 3, key)
    particle = population.values[1]
    assert float(particle(2.2)) == float(particle(2.2))
    assert float(particle(2.2)) != float(population.values[2](2.2))


def test_wiener_starts_at_zero_and_bridges_exactly():
    def path():
        w = ho.wiener("w")
        return w(0.0), w(2.0), w

    start, end, w = ho.Random.from_model(path).draw(jax.random.key(1))
    assert float(start) == 0.0
    mean, variance = w.bridge(0.5)
    assert mean == pytest.approx(0.25 * float(end)) and variance == pytest.approx(0.375)


def test_trace_mh_runs_on_a_lazy_gp():
    chain = programs.trace_mh(ho.from_model(gp_regression), 30, jax.random.key(0))
    assert len(chain.values) == 30 and 0.0 < chain.acceptance_rate < 1.0


def test_dirichlet_process_ties_t8():
    # T8: alpha = 0.3, continuous base; binomial standard errors sqrt(p (1 - p) / N).
    def three_draws():
        g = ho.dp("g", 0.3, dist.Normal())
        return [float(g.sample()) for _ in range(3)]

    draws = np.array(
        [ho.Random.from_model(three_draws).draw(jax.random.key(seed)) for seed in range(1500)]
    )
    for estimate, exact in (
        (np.mean(draws[:, 0] == draws[:, 1]), 10 / 13),
        (np.mean((draws[:, 0] == draws[:, 1]) & (draws[:, 1] == draws[:, 2])), 200 / 299),
    ):
        assert abs(estimate - exact) < 4 * math.sqrt(exact * (1 - exact) / len(draws))


def test_poisson_process_counts():
    # Count on [0, 1] at rate 1 ~ Poisson(1); binomial standard errors sqrt(p (1 - p) / N).
    program = ho.Random.from_model(ho.poisson_process, "p", 1.0, 1.0)
    counts = np.array([len(program.draw(jax.random.key(seed))) for seed in range(1500)])
    for count, exact in ((0, math.exp(-1)), (1, math.exp(-1)), (2, 0.183940)):
        estimate = np.mean(counts == count)
        assert abs(estimate - exact) < 4 * math.sqrt(exact * (1 - exact) / len(counts))


def test_stream_draws_each_element_once():
    def model():
        s = ho.stream("s", dist.Normal())
        return s[3], s[3], s

    first, again, s = ho.Random.from_model(model).draw(jax.random.key(0))
    assert float(first) == float(again) and list(s.drawn) == [3]


@pytest.mark.parametrize(
    "make, argument",
    [
        (lambda: ho.gp_fn("f", squared_exponential, method="spline"), "method"),
        (lambda: ho.gp_fn("f", 3.0), "kernel"),
        (lambda: ho.gp_fn("f", squared_exponential, method="hsgp"), "kernel"),
        (lambda: ho.gp_fn("f", ho.SquaredExponential(), method="hsgp"), "boundary"),
        (lambda: ho.Matern(nu=2.0), "nu"),
        (lambda: ho.poisson_process("p", -1.0, 1.0), "rate"),
        (lambda: ho.poisson_process("p", 1.0, 0.0), "upper"),
        (lambda: ho.dp("g", 0.0, dist.Normal()), "alpha"),
        (lambda: ho.dp("g", -1.0, dist.Normal()), "alpha"),
        (lambda: ho.dp("g", 1.0, "normal"), "base"),
        (lambda: ho.linear_basis("w", None, dist.Normal()), "features"),
    ],
)
def test_bad_arguments_name_the_argument(make, argument):
    with pytest.raises(BayescoreError, match=argument) as raised:
        make()
    assert isinstance(raised.value, ArgumentError)


def test_random_functions_need_a_running_program():
    with pytest.raises(BayescoreError, match="must run inside a program"):
        ho.wiener("w")


@pytest.mark.parametrize("kernel", [ho.SquaredExponential(2.0, 0.7), ho.Matern(1.5, 2.0, 0.7)])
def test_hsgp_covariance_approximates_the_kernel(kernel):
    # Deterministic: the basis's implied covariance phi(x) . phi(y) is k(x, y) up to the
    # truncation error of 64 eigenfunctions on [-4, 4] (Riutort-Mayol et al. 2023, Fig. 3).
    def prior():
        return ho.gp_fn("f", kernel, method="hsgp", boundary=4.0, num_basis=64)

    f = ho.Random.from_model(prior).draw(jax.random.key(0))
    points = jnp.linspace(-1.5, 1.5, 7)
    approximate = f.features(points) @ f.features(points).T
    exact = np.array([[kernel(float(a), float(b)) for b in points] for a in points])
    assert np.abs(np.asarray(approximate) - exact).max() < 0.05 * kernel.variance
    assert jax.jit(f)(points).shape == (7,)


@pytest.mark.parametrize("kernel", [ho.SquaredExponential(2.0, 0.7), ho.Matern(2.5, 2.0, 0.7)])
def test_rff_covariance_approximates_the_kernel(kernel):
    # phi(x) . phi(y) = (sigma^2 / M) sum_m cos(w_m (x - y)) has mean k(x - y) and standard
    # deviation at most sigma^2 / sqrt(M): 4 of them with M = 4000.
    def prior():
        return ho.gp_fn("f", kernel, method="rff", num_features=4000)

    f = ho.Random.from_model(prior).draw(jax.random.key(1))
    points = jnp.linspace(-1.0, 1.0, 5)
    approximate = f.features(points) @ f.features(points).T
    exact = np.array([[kernel(float(a), float(b)) for b in points] for a in points])
    assert np.abs(np.asarray(approximate) - exact).max() < 4 * kernel.variance / math.sqrt(4000)
