"""Evaluation used by tests and benchmarks: distances between draws and exact answers."""

from bayescore.metrics.bures import bures_wasserstein, bw_uvp, empirical_moments
from bayescore.metrics.calibration import expected_calibration_error
from bayescore.metrics.eot import (
    EOTBenchmark,
    GaussianEOT,
    MixtureEOT,
    cbw_uvp,
    cbw_uvp_from_moments,
    eot_gaussian_benchmark,
    eot_mixture_benchmark,
    gaussian_eot,
    ground_truth_floor,
    mixture_eot,
)
from bayescore.metrics.ksd import imq_ksd
from bayescore.metrics.moments import covariance_zscores, mcse_mean, mean_zscores, zscore_bound

__all__ = [
    "EOTBenchmark",
    "GaussianEOT",
    "MixtureEOT",
    "bures_wasserstein",
    "bw_uvp",
    "cbw_uvp",
    "cbw_uvp_from_moments",
    "covariance_zscores",
    "empirical_moments",
    "eot_gaussian_benchmark",
    "eot_mixture_benchmark",
    "expected_calibration_error",
    "gaussian_eot",
    "ground_truth_floor",
    "imq_ksd",
    "mcse_mean",
    "mean_zscores",
    "mixture_eot",
    "zscore_bound",
]
