"""Evaluation used by tests and benchmarks: distances between draws and exact answers."""

from bayescore.metrics.calibration import expected_calibration_error
from bayescore.metrics.ksd import imq_ksd
from bayescore.metrics.moments import covariance_zscores, mcse_mean, mean_zscores, zscore_bound

__all__ = [
    "covariance_zscores",
    "expected_calibration_error",
    "imq_ksd",
    "mcse_mean",
    "mean_zscores",
    "zscore_bound",
]
