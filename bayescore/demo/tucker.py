r"""Demo section: functional CP/Tucker (FunBaT) by conditional EP, SGLD and VI.

FunBaT's rank-1 synthetic set (``y = u_1(x) u_2(z)``, :func:`~bayescore.models.tucker.
synthetic_cp`) fitted by a rank-1 functional CP model with Matérn-3/2 GPs: conditional EP
(:meth:`~bayescore.models.tucker.FunctionalTucker.fit`, kernels learned), then SGLD
(minibatches of 64) and mean-field VI on the same model as a NumPyro program
(:meth:`~bayescore.models.tucker.FunctionalTucker.numpyro_model`, with CEP's kernels). The
test index values all occur in training (each grid row's 15 entries are split at random), so
the generic backends predict by reading their function draws there. The figure shows each
method's two functions with ±2 sd, scaled to unit peak and signed like the truth (a rank-1
product fixes them only up to a shared scale). Also used by
``examples/tucker_synthetic.py``.

Example:
    >>> from bayescore.demo.tucker import TITLE
    >>> TITLE.split(":")[0]
    'Functional Tucker/CP on continuous indexes (FunBaT)'
"""

from __future__ import annotations

import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

TITLE = "Functional Tucker/CP on continuous indexes (FunBaT): conditional EP, SGLD and VI"


def _rmse(prediction, truth) -> float:
    return float(np.sqrt(np.mean((np.asarray(prediction) - truth) ** 2)))


def _grid_positions(data) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Each mode's sorted unique training values and the test entries' positions in them."""
    grids, positions = [], []
    for mode in range(2):
        grid = np.unique(data.train_indexes[:, mode])
        position = np.searchsorted(grid, data.test_indexes[:, mode])
        if not np.array_equal(
            grid[np.minimum(position, len(grid) - 1)], data.test_indexes[:, mode]
        ):
            raise ValueError(f"a test value of mode {mode} is not among the training values")
        grids.append(grid)
        positions.append(position)
    return grids, positions


def _draws_summary(functions: list[np.ndarray], positions: list[np.ndarray]) -> np.ndarray:
    """Posterior mean of ``u1 u2`` at the test entries from draws ``(draw, grid, 1)``."""
    products = functions[0][:, positions[0], 0] * functions[1][:, positions[1], 0]
    return products.mean(0)


def _unit(values: np.ndarray, truth: np.ndarray) -> float:
    """The factor that scales ``values`` to unit peak with the sign of ``truth``."""
    scale = np.abs(values).max()
    return np.sign(np.dot(values, truth)) / scale


def compare(quick: bool) -> tuple[dict[str, tuple[float, float]], Any, Any]:
    """Fit rank-1 functional CP by CEP, SGLD and VI; ``(results, figure, SGLD DataTree)``.

    ``results`` maps a method to ``(test RMSE, seconds)``; ``quick`` runs fewer SGLD and VI
    steps. About a minute on two CPU cores (quick: half that).

    Example:
        >>> from bayescore.demo.tucker import compare
        >>> results, figure, tree = compare(quick=True)  # doctest: +SKIP
        >>> results["conditional EP"][0] < 0.01  # test RMSE  # doctest: +SKIP
        True
    """
    import gpjax as gpx
    import matplotlib.pyplot as plt

    import bayescore as bc
    from bayescore.inference import vi
    from bayescore.models.tucker import FunctionalTucker, synthetic_cp, synthetic_cp_factors

    data = synthetic_cp(seed=0)
    grids, positions = _grid_positions(data)
    kernels = [gpx.kernels.Matern32(lengthscale=0.1)] * 2
    model = FunctionalTucker(1, kernels, cp=True)

    start = time.perf_counter()
    cep = model.fit(data.train_indexes, data.train_y, num_epochs=100, key=0, progress=False)
    cep_mean, _ = cep.predict(data.test_indexes)
    results = {"conditional EP": (_rmse(cep_mean, data.test_y), time.perf_counter() - start)}

    # The same model as a NumPyro program, with the kernels CEP learned.
    generic = cep.model.numpyro_model(data.train_indexes, batch_size=64)
    target = bc.Target.from_numpyro(generic, data.train_y)
    start = time.perf_counter()
    sgld = bc.sample(
        bc.inference.sgld(1e-4),
        target,
        num_samples=500 if quick else 2000,
        num_warmup=1000 if quick else 5000,
        num_chains=2,
        key=jax.random.key(1),
        progress=False,
    )
    draws = sgld.constrained()
    sgld_functions = [
        np.asarray(draws[f"function_{k}"]).reshape(-1, len(grids[k]), 1) for k in range(2)
    ]
    results["SGLD"] = (
        _rmse(_draws_summary(sgld_functions, positions), data.test_y),
        time.perf_counter() - start,
    )

    full = bc.Target.from_numpyro(cep.model.numpyro_model(data.train_indexes), data.train_y)
    start = time.perf_counter()
    approx = bc.fit(
        full, vi.mean_field(full), num_steps=1000 if quick else 5000, key=2, progress=False
    )
    vi_draws = approx.sample(jax.random.key(3), 500)
    vi_functions = [np.asarray(vi_draws[f"function_{k}"]) for k in range(2)]
    results["mean-field VI"] = (
        _rmse(_draws_summary(vi_functions, positions), data.test_y),
        time.perf_counter() - start,
    )

    figure, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    for mode, (axis, truth_fn) in enumerate(zip(axes, synthetic_cp_factors(), strict=True)):
        grid = grids[mode]
        truth = truth_fn(grid)
        mean, covariance = cep.function_moments(mode, jnp.asarray(grid))
        mean, sd = np.asarray(mean[:, 0]), np.sqrt(np.asarray(covariance[:, 0, 0]))
        bands = {
            "conditional EP": (mean, sd),
            "SGLD": (sgld_functions[mode][..., 0].mean(0), sgld_functions[mode][..., 0].std(0)),
            "mean-field VI": (
                vi_functions[mode][..., 0].mean(0),
                vi_functions[mode][..., 0].std(0),
            ),
        }
        axis.plot(grid, truth / np.abs(truth).max(), "k--", label="truth")
        for name, (centre, spread) in bands.items():
            factor = _unit(centre, truth)
            centre, spread = centre * factor, spread * abs(factor)
            axis.plot(grid, centre, label=name)
            axis.fill_between(grid, centre - 2 * spread, centre + 2 * spread, alpha=0.2)
        axis.set_title(f"u{mode + 1}")
        axis.set_xlabel("index")
    axes[0].legend(fontsize=8)
    figure.tight_layout()
    return results, figure, sgld.to_arviz()


def run(section, quick: bool) -> None:  # noqa: ANN001
    import pandas as pd

    results, figure, tree = compare(quick)
    section.text(
        "Rank-1 functional CP (Matérn-3/2 GPs) on FunBaT's synthetic set, 675 training and 675 "
        "test entries of y = u1(x) u2(z). Conditional EP smooths each mode's functions with a "
        "Kalman filter and learns the kernels; SGLD and mean-field VI run on the same model "
        "as a NumPyro program (FunctionalTucker.numpyro_model) with CEP's kernels."
    )
    frame = pd.DataFrame(
        [
            {"method": name, "test RMSE": error, "seconds": seconds}
            for name, (error, seconds) in results.items()
        ]
    ).set_index("method")
    section.table(frame.round(4), "Test RMSE of the posterior mean of u1 u2, and wall time.")
    section.figure(figure, "tucker_functions", "Latent functions, ±2 sd (dashed: the truth).")
    section.netcdf(tree, "tucker_sgld_posterior")
