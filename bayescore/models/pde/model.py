r"""The GP-HM posterior of the grid values as a NumPyro model, for every generic backend.

At a fixed kernel and fixed noise precisions the GP-HM density of the grid values is

.. math::

    p(\mathbf z) \propto \mathcal N(\mathbf z \mid 0, I)\,
      \exp\!\big(\lambda_b[\tfrac{N_b}{2}\log\tau_1 - \tfrac{\tau_1}{2}\|\mathbf b\|^2]
      + \tfrac M2\log\tau_2 - \tfrac{\tau_2}{2}\|\mathbf h\|^2\big),
    \qquad \mathcal U = (\otimes_j L_j)\,\mathbf z,

the objective of :mod:`~bayescore.models.pde.solver` in whitened (non-centred) coordinates,
so NUTS, Langevin samplers or VI run on it through ``bc.Target.from_numpyro``; for a linear PDE
it is Gaussian and :meth:`~bayescore.models.pde.GPSolution.std`'s Laplace term is exact.
The boundary term is a tempered likelihood (power :math:`\lambda_b`), as in the reference.

Example:
    >>> import jax, jax.numpy as jnp
    >>> import bayescore as bc
    >>> from bayescore.models.pde import Dirichlet, Problem, squared_exponential
    >>> from bayescore.models.pde.model import numpyro_model
    >>> problem = Problem(lambda u, d, x: d["xx"] + 1.0, (0, 1), 6, boundary=[Dirichlet(0.0)])
    >>> model = numpyro_model(problem, [squared_exponential(lengthscale=0.3)], (4.0, 2.0))
    >>> target = bc.Target.from_numpyro(model)
    >>> target.dim, bool(jnp.isfinite(target.logdensity({"z": jnp.zeros(6)})))
    (6, True)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist

from bayescore.core.errors import ArgumentError, check_positive_float
from bayescore.models.pde.kernels import StationaryKernel
from bayescore.models.pde.problem import Problem
from bayescore.models.pde.solver import _fields, _gaussian, grid_operators


def numpyro_model(
    problem: Problem,
    kernels: Sequence[StationaryKernel],
    log_precision: tuple[float, float],
    *,
    boundary_weight: float = 200.0,
    jitter: float = 1e-6,
) -> Callable[[], None]:
    r"""A NumPyro model of the whitened grid values ``z`` (site shape: the grid's), with the
    grid values :math:`\mathcal U` as the deterministic site ``"u"``.

    Args:
        problem: the PDE.
        kernels: one 1-D kernel per dimension (held fixed).
        log_precision: :math:`(\log\tau_1, \log\tau_2)` (held fixed); a fitted
            :class:`~bayescore.models.pde.GPSolution` has them.
        boundary_weight: :math:`\lambda_b`.
        jitter: :math:`\epsilon` on each :math:`K_j`.

    Example:
        >>> # see the module docstring
    """
    kernels = tuple(kernels)
    if len(kernels) != problem.dim:
        raise ArgumentError(
            f"kernels has {len(kernels)} entries, but the problem has {problem.dim} "
            "dimension(s). Pass one kernel per dimension."
        )
    boundary_weight = check_positive_float("boundary_weight", boundary_weight, allow_zero=True)
    log_tau_b, log_tau_r = (float(v) for v in log_precision)

    def model() -> None:
        ops = grid_operators(problem, kernels, jitter)
        z = numpyro.sample("z", dist.Normal(0.0, 1.0).expand(problem.shape).to_event(problem.dim))
        numpyro.deterministic("u", ops.gram.color(z))
        residual, mismatch = _fields(problem, ops, ops.gram.backsolve(z))
        numpyro.factor("boundary", boundary_weight * _gaussian(mismatch, jnp.asarray(log_tau_b)))
        numpyro.factor("equation", _gaussian(residual, jnp.asarray(log_tau_r)))

    return model


__all__ = ["numpyro_model"]
