"""FunBaT's data: the loaders (against the stored files) and the synthetic generator."""

import pathlib

import numpy as np
import pytest

from bayescore import BayescoreError
from bayescore.models.tucker import load_funbat, synthetic_cp, synthetic_cp_factors

DATA = pathlib.Path(__file__).resolve().parents[3] / "shared" / "data" / "funbat"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason="the shared FunBaT data is not here")


@needs_data
@pytest.mark.parametrize(
    ("name", "num_train", "length"),
    [("beijing_pm2.5", 13572, 10.0), ("beijing_so2", 13572, 10.0), ("us_temp", 44755, 1.0)],
)
def test_real_sets_map_codes_to_bin_centres(name, num_train, length):
    data = load_funbat(name, DATA, fold=3)
    pollutant = name.removeprefix("beijing_").upper()
    file = "us_temp_DISCT_15x95x267" if name == "us_temp" else None
    file = file or f"beijing_{pollutant}_DISCT_428x501x1461_no_agg"
    with np.load(DATA / f"{file}.npz") as raw:
        codes, bins, y = raw["fold3_tr_ind"], raw["ndims"], raw["fold3_tr_y"]
    assert data.train_indexes.shape == (num_train, 3)
    np.testing.assert_array_equal(data.train_y, y)
    # The centre of bin k of n equal bins over [0, L]; a code is recovered by flooring.
    np.testing.assert_allclose(data.train_indexes, (codes + 0.5) / bins * length)
    np.testing.assert_array_equal(np.floor(data.train_indexes / length * bins), codes)
    assert data.test_indexes.shape[1] == 3 and len(data.test_y) == len(data.test_indexes)
    assert (data.train_indexes > 0).all() and (data.train_indexes < length).all()


@needs_data
def test_folds_differ_and_the_coarse_resolution_loads():
    first, second = (load_funbat("beijing_pm10", DATA, fold=k) for k in (0, 1))
    assert not np.array_equal(first.train_y, second.train_y)
    coarse = load_funbat("beijing_pm10", DATA, resolution="50x50x150")
    assert coarse.train_indexes.shape == (5964, 3)
    assert len(np.unique(coarse.train_indexes[:, 2])) == 150  # every time bin is used


@needs_data
def test_the_stored_synthetic_set():
    data = load_funbat("synthetic", DATA)
    assert data.train_indexes.shape == (675, 2) and data.test_indexes.shape == (675, 2)
    assert [len(np.unique(data.train_indexes[:, k])) <= 90 for k in range(2)] == [True, True]


def test_bad_names_folds_and_folders_are_clear_errors(tmp_path):
    with pytest.raises(BayescoreError, match="name must be one of"):
        load_funbat("beijing", tmp_path)
    with pytest.raises(BayescoreError, match=r"fold must be an integer in \[0, 5\)"):
        load_funbat("us_temp", tmp_path, fold=5)
    with pytest.raises(BayescoreError, match="one split: pass fold=0"):
        load_funbat("synthetic", tmp_path, fold=1)
    with pytest.raises(BayescoreError, match="resolution must be one of"):
        load_funbat("beijing_so2", tmp_path, resolution="10x10x10")
    with pytest.raises(BayescoreError, match="data_dir has no us_temp_DISCT"):
        load_funbat("us_temp", tmp_path)


def test_synthetic_generator_is_exactly_rank_one_and_seeded():
    data = synthetic_cp(seed=3)
    again = synthetic_cp(seed=3)
    np.testing.assert_array_equal(data.train_indexes, again.train_indexes)
    u1, u2 = synthetic_cp_factors()
    for indexes, y in [(data.train_indexes, data.train_y), (data.test_indexes, data.test_y)]:
        np.testing.assert_allclose(y, u1(indexes[:, 0]) * u2(indexes[:, 1]), atol=1e-14)
    assert len(np.unique(data.train_indexes[:, 0])) + len(np.unique(data.test_indexes[:, 0])) >= 90
    noisy = synthetic_cp(seed=3, noise=0.1)
    residual = noisy.train_y - data.train_y
    assert abs(residual.std() - 0.1) < 0.1 * 4 / np.sqrt(2 * 675)  # 4 sd of the sd estimate
    np.testing.assert_array_equal(noisy.test_y, data.test_y)  # test values stay noiseless
    with pytest.raises(BayescoreError, match="noise"):
        synthetic_cp(noise=-1.0)
