"""Argument checks shared by the samplers' constructors: bad settings fail before compiling."""

from __future__ import annotations

from typing import Any

import numpy as np

from bayescore.core.errors import ArgumentError, ShapeError, check_array, check_positive_float


def check_sampler_arguments(
    *,
    step_size: Any,
    target_acceptance_rate: Any,
    inverse_mass_matrix: Any = None,
    dense_mass: bool = False,
    divergence_threshold: Any = 1000.0,
) -> dict[str, Any]:
    """Validate the arguments every adapted sampler takes; return them normalised.

    ``dense_mass`` follows the rank of a given ``inverse_mass_matrix`` (a 2-D one with
    ``dense_mass=False`` is an error, not a silent switch). The matrix must be finite and
    positive (definite).

    Example:
        >>> from bayescore.inference.checks import check_sampler_arguments
        >>> check_sampler_arguments(step_size=0.1, target_acceptance_rate=0.5)["step_size"]
        0.1
        >>> check_sampler_arguments(step_size=0.1, target_acceptance_rate=1.5)
        Traceback (most recent call last):
        ...
        bayescore.core.errors.ArgumentError: target_acceptance_rate must lie in (0, 1), got 1.5. ...
    """
    step_size = check_positive_float("step_size", step_size)
    try:
        rate = float(target_acceptance_rate)
    except (TypeError, ValueError):
        rate = float("nan")
    if not 0.0 < rate < 1.0:
        raise ArgumentError(
            f"target_acceptance_rate must lie in (0, 1), got {target_acceptance_rate}. "
            "Each sampler's default is the usual choice; raise it if there are divergences."
        )
    divergence_threshold = check_positive_float("divergence_threshold", divergence_threshold)
    if inverse_mass_matrix is not None:
        matrix = np.asarray(check_array("inverse_mass_matrix", inverse_mass_matrix, finite=False))
        if matrix.ndim not in (1, 2) or (matrix.ndim == 2 and matrix.shape[0] != matrix.shape[1]):
            raise ShapeError(
                f"inverse_mass_matrix must have shape (dim,) (diagonal) or (dim, dim) (dense), "
                f"got {matrix.shape}."
            )
        if matrix.ndim == 2 and not dense_mass:
            dense_mass = True
        elif matrix.ndim == 1 and dense_mass:
            raise ShapeError(
                f"dense_mass=True needs a (dim, dim) inverse_mass_matrix, got shape "
                f"{matrix.shape}. Pass np.diag(...) of it, or dense_mass=False."
            )
        if not np.all(np.isfinite(matrix)):
            raise ArgumentError("inverse_mass_matrix has non-finite entries.")
        if matrix.ndim == 1 and np.any(matrix <= 0):
            raise ArgumentError("inverse_mass_matrix (diagonal) must be positive everywhere.")
        if matrix.ndim == 2 and (
            not np.allclose(matrix, matrix.T) or np.any(np.linalg.eigvalsh(matrix) <= 0)
        ):
            raise ArgumentError("inverse_mass_matrix must be symmetric positive definite.")
        inverse_mass_matrix = matrix
    return {
        "step_size": step_size,
        "target_acceptance_rate": rate,
        "inverse_mass_matrix": inverse_mass_matrix,
        "dense_mass": bool(dense_mass),
        "divergence_threshold": divergence_threshold,
    }
