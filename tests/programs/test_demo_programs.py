"""The programs of the demo section (``bayescore.demo.programs``) against closed forms."""

import itertools
import math

import jax
import numpy as np
import pytest
from scipy import stats

from bayescore.demo import programs as demo
from bayescore.inference import programs
from bayescore.models import ho


def test_gp_posterior_is_the_reference_t3():
    # reference section 6, T3: f(2.5) = 3.375183 +- 0.194113, f(7) = 10.432305 +- 0.421749
    mean, sd = demo.gp_posterior([2.5, 7.0])
    assert np.allclose(mean, [3.375183, 10.432305], atol=1e-6)
    assert np.allclose(sd, [0.194113, 0.421749], atol=1e-6)


def crp_partition_posterior(data, alpha=1.0, noise=0.5, prior_sd=4.0):
    """P(number of clusters) by brute force over the CRP's seatings (restricted growth
    strings), with the cluster means integrated out (normal-normal predictive)."""
    probabilities = {}
    for tables in itertools.product(range(len(data)), repeat=len(data)):
        if any(t > max(tables[:i], default=-1) + 1 for i, t in enumerate(tables)):
            continue
        counts, sums, log_joint = [], [], 0.0
        for y, table in zip(data, tables, strict=True):
            log_joint += math.log((counts + [alpha])[table] / (sum(counts) + alpha))
            if table == len(counts):
                counts.append(0)
                sums.append(0.0)
            precision = 1 / prior_sd**2 + counts[table] / noise**2
            scale = math.sqrt(1 / precision + noise**2)
            log_joint += stats.norm(sums[table] / noise**2 / precision, scale).logpdf(y)
            counts[table] += 1
            sums[table] += y
        k = len(counts)
        probabilities[k] = probabilities.get(k, 0.0) + math.exp(log_joint)
    total = sum(probabilities.values())
    return {k: p / total for k, p in probabilities.items()}


def test_customer_links_give_the_crp_mixture_posterior():
    data = [-0.3, 0.2, 3.9, 0.4]
    with jax.enable_x64(True):
        table = programs.enumerate(ho.from_model(demo.dp_mixture, data))
        for k, exact in crp_partition_posterior(data).items():
            assert abs(table.probability(lambda tables, k=k: len(set(tables)) == k) - exact) < 1e-9


def test_changepoint_marginal_likelihood_is_the_multivariate_normal():
    t, y = demo.changepoint_data(num=12)
    program = ho.from_model(demo.changepoint_model, t, y)
    (points, curve), log_weight, _ = program.run(jax.random.key(3))
    segment = np.searchsorted(points, t)
    exact = 0.0
    for k in np.unique(segment):
        block = y[segment == k]
        covariance = 0.5**2 * np.eye(len(block)) + 2.0**2 * np.ones((len(block), len(block)))
        exact += stats.multivariate_normal(np.zeros(len(block)), covariance).logpdf(block)
        level = 2.0**2 * block.sum() / (0.5**2 + len(block) * 2.0**2)
        assert float(curve(t[segment == k][0])) == pytest.approx(level)
    assert log_weight == pytest.approx(exact, rel=1e-6)  # the factor is stored in float32
