"""Calibration of predictive class probabilities."""

from __future__ import annotations

from typing import Any

import numpy as np

from bayescore.core.errors import ArgumentError, ShapeError, check_array, check_positive_int


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
    probabilities = check_array("probabilities", probabilities, ndim=2)
    labels = np.asarray(labels)
    if labels.shape != probabilities.shape[:1]:
        raise ShapeError(
            f"probabilities must be (n, classes) and labels (n,), got {probabilities.shape} and "
            f"{labels.shape}."
        )
    if np.any(probabilities < 0.0) or np.any(probabilities > 1.0):
        raise ArgumentError(
            "probabilities must lie in [0, 1] (predictive probabilities, not logits); got "
            f"values in [{probabilities.min():.3g}, {probabilities.max():.3g}]. Apply a softmax."
        )
    num_classes = probabilities.shape[1]
    if labels.dtype.kind not in "iu" or np.any(labels < 0) or np.any(labels >= num_classes):
        raise ArgumentError(
            f"labels must be integer classes in [0, {num_classes}), got dtype {labels.dtype} "
            f"with values {labels[:5].tolist()}...."
        )
    num_bins = check_positive_int("num_bins", num_bins)
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
