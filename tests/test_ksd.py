"""imq_ksd against a direct double loop, and its behaviour on exact and shifted draws."""

import jax
import numpy as np
import pytest

from bayescore.metrics import imq_ksd


def direct_ksd(x: np.ndarray, s: np.ndarray, c: float, beta: float) -> float:
    """The defining double sum, term by term, in float64."""
    n, d = x.shape
    total = 0.0
    for i in range(n):
        for j in range(n):
            r = x[i] - x[j]
            u = c * c + r @ r
            k = u**beta
            grad_x = 2.0 * beta * u ** (beta - 1.0) * r
            grad_y = -grad_x
            trace = -4.0 * beta * (beta - 1.0) * u ** (beta - 2.0) * (
                r @ r
            ) - 2.0 * beta * d * u ** (beta - 1.0)
            total += s[i] @ s[j] * k + s[i] @ grad_y + s[j] @ grad_x + trace
    return float(np.sqrt(total / n**2))


@pytest.mark.parametrize(("c", "beta", "block_size"), [(1.0, -0.5, 128), (0.7, -0.3, 4)])
def test_matches_double_loop(c: float, beta: float, block_size: int) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(23, 3))
    s = rng.normal(size=(23, 3))
    expected = direct_ksd(x, s, c, beta)
    got = float(imq_ksd(x.astype(np.float32), s.astype(np.float32), c, beta, block_size))
    assert got == pytest.approx(expected, rel=1e-5, abs=1e-5)


def test_exact_draws_small_and_decreasing_shift_larger() -> None:
    key = jax.random.key(1)
    x = np.asarray(jax.random.normal(key, (2000, 3)))
    values = [float(imq_ksd(x[:n], -x[:n])) for n in (100, 400, 2000)]
    assert values[0] > values[1] > values[2]
    assert values[2] < 0.1
    shifted = x + 0.5
    assert float(imq_ksd(shifted, -shifted)) > 3 * values[2]


def test_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="shape"):
        imq_ksd(np.zeros((3, 2)), np.zeros((3, 1)))
