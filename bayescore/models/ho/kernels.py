r"""Stationary covariance functions that know their spectral density.

A plain function ``kernel(x, y)`` is enough for the exact lazy GP of
:func:`~bayescore.models.ho.gp_fn`; its approximations need the spectral density
:math:`S(\omega)` of a stationary kernel :math:`k(x, y) = k(x - y)`
(Bochner: :math:`k(r) = (2\pi)^{-D} \int S(\omega) e^{i\omega^\top r} d\omega`):

* ``method="hsgp"`` evaluates :math:`\sqrt{S}` at the square roots of the Laplacian's
  eigenvalues on :math:`[-L, L]^D` (``numpyro.contrib.hsgp``; Solin & Särkkä 2020,
  Riutort-Mayol et al. 2023);
* ``method="rff"`` draws frequencies :math:`\omega \sim S / k(0)` (Rahimi & Recht 2007).

Both kernels here are callable, so the same object also serves ``method="lazy"``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
from numpyro.contrib.hsgp.spectral_densities import (
    diag_spectral_density_matern,
    diag_spectral_density_squared_exponential,
)

from bayescore.core.errors import ArgumentError, check_positive_float


def _distance(x: Any, y: Any) -> float:
    return float(np.linalg.norm(np.asarray(x, dtype=np.float64) - np.asarray(y, np.float64)))


@dataclasses.dataclass(frozen=True)
class SquaredExponential:
    """:math:`k(x, y) = \\sigma^2 \\exp(-\\lVert x - y\\rVert^2 / 2\\ell^2)`, spectral density
    :math:`S(\\omega) = \\sigma^2 (2\\pi\\ell^2)^{D/2} e^{-\\ell^2\\lVert\\omega\\rVert^2/2}`.

    Attributes:
        variance: :math:`\\sigma^2`.
        lengthscale: :math:`\\ell`.

    Example:
        >>> SquaredExponential(2.0, 1.0)(0.0, 1.0)
        1.213...
    """

    variance: float = 1.0
    lengthscale: float = 1.0

    def __post_init__(self) -> None:
        check_positive_float("variance", self.variance)
        check_positive_float("lengthscale", self.lengthscale)

    def __call__(self, x: Any, y: Any) -> float:
        return self.variance * math.exp(-0.5 * (_distance(x, y) / self.lengthscale) ** 2)

    def sqrt_spectral_density(self, boundary: float, num_basis: int, dim: int) -> Any:
        """:math:`\\sqrt{S}` at the first ``num_basis`` eigenvalues per dimension (HSGP).

        Example:
            >>> SquaredExponential().sqrt_spectral_density(3.0, 4, 1).shape
            (4,)
        """
        return (
            diag_spectral_density_squared_exponential(
                self.variance, self.lengthscale, boundary, num_basis, dim
            )
            ** 0.5
        )

    @property
    def frequency_dof(self) -> float:
        """Degrees of freedom of the Student-t frequencies; ``inf`` (Gaussian) here."""
        return math.inf


@dataclasses.dataclass(frozen=True)
class Matern:
    """The Matérn kernel of smoothness :math:`\\nu \\in \\{1/2, 3/2, 5/2\\}`,
    :math:`k(r) = \\sigma^2 p_\\nu(\\sqrt{2\\nu} r/\\ell) e^{-\\sqrt{2\\nu} r/\\ell}` with
    :math:`p_{1/2} = 1`, :math:`p_{3/2}(s) = 1 + s`, :math:`p_{5/2}(s) = 1 + s + s^2/3`
    (Rasmussen & Williams 2006, eq. 4.16-4.17); its spectral density is a Student-t
    with :math:`2\\nu` degrees of freedom and scale :math:`1/\\ell`.

    Attributes:
        nu: :math:`\\nu`.
        variance: :math:`\\sigma^2`.
        lengthscale: :math:`\\ell`.

    Example:
        >>> round(Matern(0.5, 1.0, 1.0)(0.0, 1.0), 6)
        0.367879
    """

    nu: float = 2.5
    variance: float = 1.0
    lengthscale: float = 1.0

    def __post_init__(self) -> None:
        if self.nu not in (0.5, 1.5, 2.5):
            raise ArgumentError(
                f"nu must be 0.5, 1.5 or 2.5 (closed-form Matérn kernels), found {self.nu!r}. "
                f"Pass nu=2.5 for twice-differentiable functions."
            )
        check_positive_float("variance", self.variance)
        check_positive_float("lengthscale", self.lengthscale)

    def __call__(self, x: Any, y: Any) -> float:
        scaled = math.sqrt(2.0 * self.nu) * _distance(x, y) / self.lengthscale
        polynomial = {0.5: 1.0, 1.5: 1.0 + scaled, 2.5: 1.0 + scaled + scaled**2 / 3.0}
        return self.variance * polynomial[self.nu] * math.exp(-scaled)

    def sqrt_spectral_density(self, boundary: float, num_basis: int, dim: int) -> Any:
        """:math:`\\sqrt{S}` at the first ``num_basis`` eigenvalues per dimension (HSGP).

        Example:
            >>> Matern(1.5).sqrt_spectral_density(3.0, 4, 1).shape
            (4,)
        """
        return (
            diag_spectral_density_matern(
                self.nu, self.variance, self.lengthscale, boundary, num_basis, dim
            )
            ** 0.5
        )

    @property
    def frequency_dof(self) -> float:
        """Degrees of freedom :math:`2\\nu` of the Student-t frequencies."""
        return 2.0 * self.nu


SPECTRAL_KERNELS = (SquaredExponential, Matern)
