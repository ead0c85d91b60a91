r"""Tensor data with continuous indexes: FunBaT's benchmark sets and a synthetic generator.

A :class:`TensorData` is what :class:`~bayescore.models.tucker.FunctionalTucker` fits: ``N``
entries, each a ``K``-dimensional continuous index and a value. The model never needs this
module (pass your own arrays); it exists to load the four real sets of FunBaT's experiments
(Fang et al. 2024, ICLR; repository ``xuangu-fang/Functional-Bayesian-Tucker-Decomposition``)
in the form their README describes, and to generate the rank-1 synthetic set anywhere.

The real sets' continuous files (``CONTI_*``) are not public; the ``DISCT_*`` files are. A
``DISCT`` code ``k`` of a mode cut into ``n`` equal-width bins over ``[0, L]`` (``pandas.cut``
of the continuous index) is mapped to its bin centre

.. math:: i = \frac{k + 1/2}{n}\, L,

with ``L = 10`` for Beijing and ``L = 1`` for US-Temp, so the index is within half a bin of
the unpublished continuous one (exactly so at Beijing's finest resolution; US-Temp's binning
merges coordinates). Written here: no library ships these loaders.
"""

from __future__ import annotations

import pathlib
from typing import NamedTuple

import numpy as np
from jaxtyping import Float

from bayescore.core.errors import ArgumentError, check_positive_float, check_positive_int

BEIJING = {"beijing_pm2.5": "PM2.5", "beijing_pm10": "PM10", "beijing_so2": "SO2"}
BEIJING_RESOLUTIONS = (
    "50x50x150",
    "100x100x300",
    "300x300x1000",
    "428x501x1461",
    "50x50x150_no_agg",
    "100x100x300_no_agg",
    "300x300x1000_no_agg",
    "428x501x1461_no_agg",
)
NAMES = (*BEIJING, "us_temp", "synthetic")
NUM_FOLDS = 5


class TensorData(NamedTuple):
    """One train/test split of entries ``(index, y)`` with ``K`` continuous index modes.

    Attributes:
        train_indexes: ``(N_train, K)`` continuous indexes.
        train_y: ``(N_train,)`` values.
        test_indexes: ``(N_test, K)``.
        test_y: ``(N_test,)``.
        modes: the ``K`` mode names.
        extent: the ``(low, high)`` range of each mode's index.
    """

    train_indexes: Float[np.ndarray, "n_train modes"]
    train_y: Float[np.ndarray, " n_train"]
    test_indexes: Float[np.ndarray, "n_test modes"]
    test_y: Float[np.ndarray, " n_test"]
    modes: tuple[str, ...]
    extent: tuple[tuple[float, float], ...]


def load_funbat(
    name: str,
    data_dir: str | pathlib.Path,
    fold: int = 0,
    *,
    resolution: str = "428x501x1461_no_agg",
) -> TensorData:
    """Load fold ``fold`` (of 5) of a FunBaT data set from the folder of its ``.npz`` files.

    ``name`` is one of ``beijing_pm2.5``, ``beijing_pm10``, ``beijing_so2`` (modes
    temperature × pressure × time, indexes in ``[0, 10]``, values z-scored), ``us_temp``
    (latitude × longitude × year in ``[0, 1]``, yearly mean temperature in °F, not
    standardised) or ``synthetic`` (the rank-1 set ``simulation_r1``: one 50/50 split, so
    ``fold`` must be 0). ``resolution`` picks Beijing's binning; the default, all 16965 daily
    station records at the finest bins, matches the entries FunBaT trained on.

    Example:
        >>> from bayescore.models.tucker import load_funbat
        >>> data = load_funbat("beijing_pm2.5", "data/funbat", fold=0)  # doctest: +SKIP
        >>> data.train_indexes.shape, data.modes  # doctest: +SKIP
        ((13572, 3), ('temperature', 'pressure', 'time'))
    """
    if name not in NAMES:
        raise ArgumentError(f"name must be one of {NAMES}, got {name!r}.")
    fold = _check_fold(fold, 1 if name == "synthetic" else NUM_FOLDS)
    folder = pathlib.Path(data_dir)
    if name == "synthetic":
        arrays = _read(folder / "synthetic_simulation_r1.npz")
        return TensorData(
            arrays["tr_ind_CONTI"],
            arrays["tr_y"],
            arrays["te_ind_CONTI"],
            arrays["te_y"],
            ("x", "y"),
            ((0.0, 1.0), (0.0, 1.0)),
        )
    if name == "us_temp":
        file, length, modes = "us_temp_DISCT_15x95x267.npz", 1.0, ("latitude", "longitude", "year")
    else:
        if resolution not in BEIJING_RESOLUTIONS:
            raise ArgumentError(
                f"resolution must be one of {BEIJING_RESOLUTIONS}, got {resolution!r}."
            )
        file = f"beijing_{BEIJING[name]}_DISCT_{resolution}.npz"
        length, modes = 10.0, ("temperature", "pressure", "time")
    arrays = _read(folder / file)
    bins = arrays["ndims"].astype(np.float64)

    def centres(codes: np.ndarray) -> np.ndarray:
        return (codes + 0.5) / bins * length

    return TensorData(
        centres(arrays[f"fold{fold}_tr_ind"]),
        arrays[f"fold{fold}_tr_y"].astype(np.float64),
        centres(arrays[f"fold{fold}_te_ind"]),
        arrays[f"fold{fold}_te_y"].astype(np.float64),
        modes,
        ((0.0, length),) * 3,
    )


def synthetic_cp(
    seed: int = 0, *, num_grids: int = 6, grid_size: int = 15, noise: float = 0.0
) -> TensorData:
    r"""FunBaT's rank-1 synthetic set, generated: ``y = u_1(x) u_2(z)`` on random grids.

    :math:`u_1(x) = \sin^2(2\pi x)\cos(2\pi x)`, :math:`u_2(z) = e^{-2z}\sin(1.5\pi z)`; each
    of ``num_grids`` grids is ``grid_size × grid_size`` with both coordinates uniform on
    ``[0, 1]``; the entries are split 50/50 at random (the recipe of the repository's
    ``simu_data_generate_CP_r1`` notebook, 1350 entries and 90 unique values per mode by
    default). Unlike the stored copy, ``y`` is the function at the index itself (the notebook
    min-max rescales the index after evaluating), so rank-1 CP is exact; ``noise`` adds
    Gaussian noise of that standard deviation to the training values.

    Example:
        >>> from bayescore.models.tucker import synthetic_cp, synthetic_cp_factors
        >>> data = synthetic_cp(seed=0)
        >>> data.train_indexes.shape, data.test_y.shape
        ((675, 2), (675,))
        >>> u1, u2 = synthetic_cp_factors()
        >>> exact = u1(data.test_indexes[:, 0]) * u2(data.test_indexes[:, 1])
        >>> bool(abs(exact - data.test_y).max() < 1e-12)
        True
    """
    num_grids = check_positive_int("num_grids", num_grids)
    grid_size = check_positive_int("grid_size", grid_size)
    noise = check_positive_float(
        "noise", noise, allow_zero=True, hint="It is the standard deviation of the noise."
    )
    rng = np.random.default_rng(seed)
    points = []
    for _ in range(num_grids):
        x = np.sort(rng.uniform(size=grid_size))
        z = np.sort(rng.uniform(size=grid_size))
        points.append(np.stack(np.meshgrid(x, z, indexing="ij"), -1).reshape(-1, 2))
    indexes = np.concatenate(points)
    u1, u2 = synthetic_cp_factors()
    y = u1(indexes[:, 0]) * u2(indexes[:, 1])
    order = rng.permutation(len(y))
    train, test = order[: len(y) // 2], order[len(y) // 2 :]
    train_y = y[train] + noise * rng.normal(size=len(train))
    return TensorData(
        indexes[train], train_y, indexes[test], y[test], ("x", "z"), ((0.0, 1.0), (0.0, 1.0))
    )


def synthetic_cp_factors():
    """The two true latent functions of :func:`synthetic_cp` (numpy callables).

    Example:
        >>> from bayescore.models.tucker import synthetic_cp_factors
        >>> u1, u2 = synthetic_cp_factors()
        >>> round(float(u1(0.0)), 6), round(float(u2(0.0)), 6)
        (0.0, 0.0)
    """

    def u1(x: np.ndarray) -> np.ndarray:
        return np.sin(2 * np.pi * x) ** 2 * np.cos(2 * np.pi * x)

    def u2(z: np.ndarray) -> np.ndarray:
        return np.exp(-2 * z) * np.sin(1.5 * np.pi * z)

    return u1, u2


def _check_fold(fold: int, num_folds: int) -> int:
    if (
        isinstance(fold, bool)
        or not isinstance(fold, int | np.integer)
        or not 0 <= fold < num_folds
    ):
        raise ArgumentError(
            f"fold must be an integer in [0, {num_folds}), got {fold!r}."
            + (" The synthetic set has one split: pass fold=0." if num_folds == 1 else "")
        )
    return int(fold)


def _read(path: pathlib.Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise ArgumentError(
            f"data_dir has no {path.name} (looked for {path}). Pass the folder holding the "
            "FunBaT .npz files (see the data README), or use synthetic_cp() or your own arrays."
        )
    with np.load(path) as file:
        return {key: file[key] for key in file.files}
