"""Evaluation used by tests and benchmarks: distances between draws and exact answers."""

from bayescore.metrics.moments import covariance_zscores, mcse_mean, mean_zscores, zscore_bound

__all__ = ["covariance_zscores", "mcse_mean", "mean_zscores", "zscore_bound"]
