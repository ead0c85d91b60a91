"""Calibration of predictive class probabilities."""

from __future__ import annotations

from typing import Any

import numpy as np

from bayescore.core.errors import ArgumentError, ShapeError


def expected_calibration_error(probabilities: Any, labels: Any, num_bins: int = 10) -> float:
    """Expected calibration error: the confidence-weighted gap between confidence and accuracy.

    The predictions are binned by their confidence (the largest class probability) into
    ``num_bins`` equal-width bins; ECE is the sum over bins of the bin's share of predictions
    times ``|accuracy - mean confidence|`` in it (Guo et al. 2017). 0 is perfectly calibrated.

    Args:
        probabilities: ``(n, classes)`` predictive probabilities (rows sum to 1).
        labels: ``(n,)`` integer true classes.
        num_bins: confidence bins.

    Example:
        >>> import numpy as np
        >>> from bayescore.metrics import expected_calibration_error
        >>> expected_calibration_error(np.array([[0.9, 0.1], [0.2, 0.8]]), np.array([0, 0]))
        0.45
    """
    probabilities, labels = np.asarray(probabilities), np.asarray(labels)
    if probabilities.ndim != 2 or labels.shape != probabilities.shape[:1]:
        raise ShapeError(
            f"probabilities must be (n, classes) and labels (n,), got {probabilities.shape} and "
            f"{labels.shape}."
        )
    if num_bins < 1:
        raise ArgumentError(f"num_bins must be a positive integer, got {num_bins}.")
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    bins = np.minimum((confidence * num_bins).astype(int), num_bins - 1)
    error = 0.0
    for b in range(num_bins):
        inside = bins == b
        if inside.any():
            error += inside.mean() * abs(correct[inside].mean() - confidence[inside].mean())
    return float(error)


__all__ = ["expected_calibration_error"]
