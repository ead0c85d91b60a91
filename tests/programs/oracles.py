"""Small programs with exact answers (reference notes, section 6), shared by the tests."""

import math

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from bayescore.models import ho

NEVER = -math.inf
WET_PROBABILITY = {(1, 1): 0.98, (1, 0): 0.80, (0, 1): 0.90, (0, 0): 0.00}


def sprinkler():
    """monad-bayes models/Sprinkler.hs (soft): P(rain | not wet) = 0.0546 / 0.5026."""
    rain = int(numpyro.sample("rain", dist.Bernoulli(0.3)))
    sprinkler_on = int(numpyro.sample("sprinkler", dist.Bernoulli(0.1 if rain else 0.4)))
    numpyro.sample("wet", dist.Bernoulli(WET_PROBABILITY[rain, sprinkler_on]), obs=0)
    return rain


def control_flow():
    """LazyPPL ControlFlowDemo: P(x | x = y) = 4/7."""
    x = int(numpyro.sample("x", dist.Bernoulli(0.5)))
    y = int(numpyro.sample("y", dist.Bernoulli(0.4 if x else 0.7)))
    numpyro.factor("same", 0.0 if x == y else NEVER)
    return x


def bus():
    """monad-bayes Traced/Static.hs: weekend ~ B(2/7), 4 buses seen, rate 3 or 10."""
    weekend = int(numpyro.sample("weekend", dist.Bernoulli(2 / 7)))
    numpyro.factor("buses", dist.Poisson(3.0 if weekend else 10.0).log_prob(4))
    return weekend


def memo_composition(conditioned=False, memoized=True):
    """T6: f a uniform random function {0,1,2} -> {0,1,2}; returns (f(0), f(f(0)))."""

    def value(x):
        return int(numpyro.sample("y", dist.Categorical(probs=jnp.ones(3) / 3)))

    if memoized:
        f = ho.mem("f", value)
        first = f(0)
        second = f(first)
    else:
        first = ho.call("first", value, 0)
        second = ho.call("second", value, first)
    if conditioned:
        numpyro.factor("fixed_point", 0.0 if second == 0 else NEVER)
    return first, second


def strictly_smaller_support():
    """monad-bayes models/StrictlySmallerSupport.hs: no conditioning, P(x) = 1/2."""
    x = int(numpyro.sample("x", dist.Bernoulli(0.5)))
    numpyro.sample("y", dist.DiscreteUniform(1, 2 if x else 4))
    return x


# A linear-Gaussian state-space model: x_0 ~ N(0, 1), x_t = A x_{t-1} + N(0, Q),
# y_t = x_t + N(0, R), t < T.
A, Q, R = 0.9, 0.5, 0.8


def linear_gaussian(ys):
    """The state-space model above, observing ``ys``."""
    x = numpyro.sample("x0", dist.Normal(0.0, 1.0))
    for t in range(len(ys)):
        if t:
            x = numpyro.sample(f"x{t}", dist.Normal(A * x, math.sqrt(Q)))
        numpyro.sample(f"y{t}", dist.Normal(x, math.sqrt(R)), obs=ys[t])


def kalman_log_evidence(ys):
    """log p(ys) by the Kalman filter."""
    mean, variance, log_evidence = 0.0, 1.0, 0.0
    for t, y in enumerate(ys):
        if t:
            mean, variance = A * mean, A**2 * variance + Q
        predictive = variance + R
        log_evidence += -0.5 * (math.log(2 * math.pi * predictive) + (y - mean) ** 2 / predictive)
        gain = variance / predictive
        mean, variance = mean + gain * (y - mean), (1 - gain) * variance
    return log_evidence


def kalman_smoother_means(ys):
    """E[x_t | ys] for every t, by conditioning the joint Gaussian of (x, y)."""
    count = len(ys)
    covariance = np.empty((count, count))
    variances = [1.0]
    for _ in range(1, count):
        variances.append(A**2 * variances[-1] + Q)
    for s in range(count):
        for t in range(s, count):
            covariance[s, t] = covariance[t, s] = A ** (t - s) * variances[s]
    return covariance @ np.linalg.solve(covariance + R * np.eye(count), np.asarray(ys, float))


VOTES = jnp.array([1.0, 0.0] * 49 + [1.0, 1.0])  # 51 yes, 49 no, interleaved for SMC stages


def vote(num_blocks=1):
    """T1 (LazyPPL MinimalDemo): v ~ U(0,1), 51 yes of 100; P(v > 0.5) = 0.578809."""
    v = numpyro.sample("v", dist.Uniform(0.0, 1.0))
    for block, votes in enumerate(jnp.split(VOTES, num_blocks)):
        numpyro.sample(f"votes_{block}", dist.Bernoulli(v), obs=votes)
    return v


XS = jnp.arange(1.0, 6.0)
YS = jnp.array([2.5, 3.8, 4.5, 6.2, 8.0])


def regression():
    """T2, HKSY17 Fig. 1: returns the random function f(x) = s x + b."""
    slope = numpyro.sample("slope", dist.Normal(0.0, 3.0))
    intercept = numpyro.sample("intercept", dist.Normal(0.0, 3.0))

    def f(x):
        return slope * x + intercept

    numpyro.sample("y", dist.Normal(f(XS), 0.5), obs=YS)
    return f


def linear_function():
    """T7's random function f(x) = a x + b, a, b ~ N(0, 1)."""
    a = numpyro.sample("a", dist.Normal())
    b = numpyro.sample("b", dist.Normal())
    return lambda x: a * x + b


def varying_dimension():
    """x ~ B(0.4); y ~ B(0.7) only when x; observe 1 ~ B(0.9 if y else 0.3, or 0.5 when not x).

    P(x | obs) = 0.4 (0.7 0.9 + 0.3 0.3) / (0.4 0.72 + 0.6 0.5) = 0.288 / 0.588: the number of
    latent sites changes with x, so trace MH needs its n/n' correction here.
    """
    x = int(numpyro.sample("x", dist.Bernoulli(0.4)))
    probability = 0.5
    if x:
        y = int(numpyro.sample("y", dist.Bernoulli(0.7)))
        probability = 0.9 if y else 0.3
    numpyro.sample("z", dist.Bernoulli(probability), obs=1)
    return x


def parameter_prior():
    """PMMH's parameter: theta ~ B(1/2)."""
    return int(numpyro.sample("theta", dist.Bernoulli(0.5)))


def parameter_model(theta):
    """x ~ B(0.3 + 0.4 theta), observe 1 ~ B(0.2 + 0.6 x): p(y | theta) = 0.38 + 0.24 theta."""

    def body():
        x = int(numpyro.sample("x", dist.Bernoulli(0.3 + 0.4 * theta)))
        numpyro.sample("y", dist.Bernoulli(0.2 + 0.6 * x), obs=1)
        return x

    return ho.from_model(body)


def crp_tables(num_customers=4, alpha=1.0):
    """T8: the number of tables of a CRP(alpha) with num_customers customers."""
    restaurant = ho.crp("restaurant", alpha)
    for _ in range(num_customers):
        restaurant.new_customer()
    return restaurant.num_tables
