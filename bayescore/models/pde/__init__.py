"""PDE solvers on tensor grids: GP-HM (spectral-mixture GPs, Kronecker algebra) and a PINN.

State the PDE once as a :class:`Problem` (box, grid, residual of the solution and its named
derivatives, Dirichlet/Neumann conditions); solve it with :func:`solve` (GP-HM: joint MAP of
grid values, kernel and noise precisions; Fang et al., ICLR 2024) under a spectral-mixture
kernel or the SE/Matérn baselines, or with :func:`solve_pinn`. :mod:`~.cases` rebuilds the
GP-HM paper's test cases.
"""

from bayescore.models.pde import cases
from bayescore.models.pde.collocation import KroneckerSum, collocation_values, kronecker_sum
from bayescore.models.pde.kernels import (
    GaussianSpectralMixture,
    MaternSpectralMixture,
    StationaryKernel,
    matern,
    spectral_mixture,
    squared_exponential,
)
from bayescore.models.pde.kronecker import (
    KroneckerCholesky,
    kronecker_apply,
    kronecker_cholesky,
    mode_product,
)
from bayescore.models.pde.model import numpyro_model
from bayescore.models.pde.pinn import PINN, PINNSolution, solve_pinn
from bayescore.models.pde.problem import Dirichlet, Neumann, Problem
from bayescore.models.pde.solver import (
    GPSolution,
    GridOperators,
    Objective,
    Parameters,
    SolveInfo,
    grid_operators,
    prune_components,
    solve,
)

__all__ = [
    "Dirichlet",
    "GPSolution",
    "GaussianSpectralMixture",
    "KroneckerCholesky",
    "KroneckerSum",
    "MaternSpectralMixture",
    "Neumann",
    "GridOperators",
    "Objective",
    "PINN",
    "PINNSolution",
    "Parameters",
    "Problem",
    "SolveInfo",
    "StationaryKernel",
    "cases",
    "collocation_values",
    "grid_operators",
    "kronecker_apply",
    "kronecker_cholesky",
    "kronecker_sum",
    "matern",
    "mode_product",
    "numpyro_model",
    "prune_components",
    "solve",
    "solve_pinn",
    "spectral_mixture",
    "squared_exponential",
]
