r"""Stationary GP kernels as linear time-invariant SDEs, stacked over independent components.

A Matérn kernel with :math:`\nu = p + 1/2` is the covariance of the first coordinate of the
LTI-SDE :math:`\mathrm d x = F x\,\mathrm dt + L\,\mathrm d\beta`, :math:`u(t) = H x(t)`,
with :math:`x = (u, u', \dots, u^{(p)})`, :math:`\mathbb E[\mathrm d\beta\,\mathrm
d\beta^\top] = Q_c\,\mathrm dt` and stationary covariance :math:`P_\infty` solving
:math:`F P_\infty + P_\infty F^\top + L Q_c L^\top = 0` (Särkkä & Solin 2019, *Applied
Stochastic Differential Equations*, §12.3; Hartikainen & Särkkä 2010). A sum of kernels is
the block-diagonal SDE with :math:`H = [H_1, H_2]`.

:func:`state_space` stacks ``R`` independent component functions
:math:`u_1, \dots, u_R` (one shared kernel, or one kernel each) into one state, block
diagonally:

.. math::

    F = \operatorname{blockdiag}(F_1, \dots, F_R),\quad
    H = \operatorname{blockdiag}(H_1, \dots, H_R)\ (R \times D),\quad
    P_\infty = \operatorname{blockdiag}(P_{\infty,1}, \dots, P_{\infty,R}).

:meth:`StateSpace.discretise` gives the exact transition over a gap :math:`\Delta`,

.. math::

    \bar A(\Delta) = \exp(F\Delta), \qquad Q(\Delta) = P_\infty - \bar A P_\infty \bar A^\top,

for all gaps at once (in closed form per diagonal block, see :func:`_matern_transition`), and
:func:`discretise` turns a sorted grid into the chain
:math:`x_0 \sim N(0, P_\infty)`, :math:`x_s \mid x_{s-1} \sim N(\bar A_s x_{s-1}, Q_s)`,
stored with :math:`\bar A_0 = 0,\ Q_0 = P_\infty` so that every step, the first included, is
one transition.

From GPJax (``gpjax.state_space.to_sde``): the per-kernel :math:`F, L, Q_c, H, P_\infty` of
Matérn-1/2, 3/2, 5/2 and of their sums. Written here: stacking of components, and the
discretisation vectorised over every gap of an irregular grid (GPJax discretises one scalar
step at a time behind a ``lax.cond`` and returns a square root of :math:`Q`, not :math:`Q`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
from gpjax.state_space import to_sde
from gpjax.state_space.sde import LinearSDE, Matern12SDE, Matern32SDE, Matern52SDE, SumSDE
from jaxtyping import Array, ArrayLike, Float

from bayescore.core.errors import ArgumentError, check_positive_int

# Past lambda * gap = 700, exp(-lambda * gap) underflows (float64) and the transition is 0.
MAX_DECAY = 700.0


def _matern_transition(drift: Array, gaps: Array) -> Array:
    r"""Exact :math:`\exp(F\Delta)` of a Matérn block, batched over gaps.

    A Matérn-(p+1/2) drift has the single eigenvalue :math:`-\lambda` of multiplicity
    :math:`d = p + 1` (its characteristic polynomial is :math:`(s + \lambda)^d`), so
    :math:`N = F + \lambda I` is nilpotent, :math:`N^d = 0`, and
    :math:`\exp(F\Delta) = e^{-\lambda\Delta}\sum_{j<d} (N\Delta)^j / j!` exactly, with
    :math:`\lambda = -\operatorname{tr}(F)/d`. Cheaper to run and to compile than a
    Padé ``expm``, and differentiable in the hyperparameters.
    """
    size = drift.shape[0]
    decay = -jnp.trace(drift) / size
    gaps = jnp.minimum(gaps, MAX_DECAY / decay)
    nilpotent = drift + decay * jnp.eye(size, dtype=drift.dtype)
    term = jnp.broadcast_to(jnp.eye(size, dtype=drift.dtype), (*gaps.shape, size, size))
    total = term
    for order in range(1, size):
        term = term @ nilpotent * (gaps[..., None, None] / order)
        total = total + term
    return jnp.exp(-decay * gaps)[..., None, None] * total


class StateSpace(eqx.Module):
    r"""An LTI-SDE for ``R`` stacked independent GP components (see the module docstring).

    Attributes:
        drift: :math:`F`, ``(state, state)``.
        diffusion: :math:`L`, ``(state, noise)``.
        spectral_density: :math:`Q_c`, ``(noise, noise)``.
        observation: :math:`H`, ``(component, state)``: row ``r`` reads component ``r``.
        stationary_covariance: :math:`P_\infty`, ``(state, state)``.
        block_sizes: sizes of the independent diagonal blocks of :math:`F` (static).

    Example:
        >>> import gpjax as gpx
        >>> from bayescore.models.statespace import state_space
        >>> sde = state_space(gpx.kernels.Matern32(lengthscale=0.5), num_components=3)
        >>> sde.state_dim, sde.num_components
        (6, 3)
    """

    drift: Float[Array, "state state"]
    diffusion: Float[Array, "state noise"]
    spectral_density: Float[Array, "noise noise"]
    observation: Float[Array, "component state"]
    stationary_covariance: Float[Array, "state state"]
    block_sizes: tuple[int, ...] = eqx.field(static=True)

    @property
    def state_dim(self) -> int:
        """Dimension ``D`` of the stacked state."""
        return self.drift.shape[0]

    @property
    def num_components(self) -> int:
        """Number ``R`` of stacked component functions (rows of :math:`H`)."""
        return self.observation.shape[0]

    @property
    def dtype(self) -> Any:
        """Floating dtype of the matrices."""
        return self.drift.dtype

    def astype(self, dtype: Any) -> StateSpace:
        """The same SDE with its matrices cast to ``dtype``.

        Example:
            >>> import gpjax as gpx, jax.numpy as jnp
            >>> from bayescore.models.statespace import state_space
            >>> state_space(gpx.kernels.Matern12()).astype(jnp.float32).dtype
            dtype('float32')
        """
        cast = lambda x: jnp.asarray(x, dtype) if eqx.is_inexact_array(x) else x  # noqa: E731
        return jax.tree.map(cast, self)

    def discretise(
        self, gaps: Float[ArrayLike, "*gaps"]
    ) -> tuple[Float[Array, "*gaps state state"], Float[Array, "*gaps state state"]]:
        r""":math:`(\bar A(\Delta), Q(\Delta))` for every gap :math:`\Delta \ge 0` at once.

        Example:
            >>> import gpjax as gpx, jax.numpy as jnp
            >>> from bayescore.models.statespace import state_space
            >>> sde = state_space(gpx.kernels.Matern12(lengthscale=2.0, variance=3.0))
            >>> transition, noise = sde.discretise(jnp.array([0.0, 2.0]))
            >>> [round(float(v), 4) for v in transition[:, 0, 0]]
            [1.0, 0.3679]
            >>> [round(float(v), 4) for v in noise[:, 0, 0]]
            [0.0, 2.594]
        """
        gaps = jnp.asarray(gaps, self.dtype)
        batch = gaps.shape
        transition = jnp.zeros((*batch, self.state_dim, self.state_dim), self.dtype)
        start = 0
        for size in self.block_sizes:
            stop = start + size
            transition = transition.at[..., start:stop, start:stop].set(
                _matern_transition(self.drift[start:stop, start:stop], gaps)
            )
            start = stop
        stationary = self.stationary_covariance
        noise = stationary - transition @ stationary @ jnp.swapaxes(transition, -1, -2)
        return transition, 0.5 * (noise + jnp.swapaxes(noise, -1, -2))


class Transitions(NamedTuple):
    r"""The Gauss–Markov chain of an SDE on a sorted grid of ``S`` points.

    Attributes:
        transition: :math:`\bar A_s`, ``(S, D, D)``; :math:`\bar A_0 = 0`.
        process_noise: :math:`Q_s`, ``(S, D, D)``; :math:`Q_0 = P_\infty`.
    """

    transition: Float[Array, "grid state state"]
    process_noise: Float[Array, "grid state state"]


def discretise(sde: StateSpace, grid: Float[ArrayLike, " grid"]) -> Transitions:
    r"""The chain :math:`x_s \mid x_{s-1} \sim N(\bar A_s x_{s-1}, Q_s)` on a sorted ``grid``.

    :math:`\bar A_s = \exp(F(t_s - t_{s-1}))`, :math:`Q_s = P_\infty - \bar A_s P_\infty \bar
    A_s^\top` for :math:`s \ge 1`, and the first step draws from the stationary prior
    (:math:`\bar A_0 = 0`, :math:`Q_0 = P_\infty`). Vectorised over all gaps; no Python loop.

    Example:
        >>> import gpjax as gpx, jax.numpy as jnp
        >>> from bayescore.models.statespace import discretise, state_space
        >>> sde = state_space(gpx.kernels.Matern52(), num_components=2)
        >>> chain = discretise(sde, jnp.array([0.0, 0.3, 1.0]))
        >>> chain.transition.shape, float(jnp.abs(chain.transition[0]).max())
        ((3, 6, 6), 0.0)
    """
    from bayescore.models.statespace.posterior import check_grid  # posterior imports this

    grid = check_grid(grid).astype(sde.dtype)
    gaps = jnp.diff(grid)
    transition, noise = sde.discretise(gaps)
    zeros = jnp.zeros((1, sde.state_dim, sde.state_dim), sde.dtype)
    return Transitions(
        jnp.concatenate([zeros, transition]),
        jnp.concatenate([sde.stationary_covariance[None], noise]),
    )


def _blocks(linear_sde: LinearSDE) -> list[int]:
    if isinstance(linear_sde, SumSDE):
        return [size for component in linear_sde.components for size in _blocks(component)]
    if not isinstance(linear_sde, Matern12SDE | Matern32SDE | Matern52SDE):
        raise ArgumentError(
            f"kernels must be Matern12, Matern32, Matern52 or sums of them; got a kernel whose "
            f"SDE is {type(linear_sde).__name__}. Use a Matérn kernel."
        )
    return [linear_sde.state_dim]


def _to_sde(kernel: Any, name: str) -> LinearSDE:
    try:
        return to_sde(kernel)
    except (NotImplementedError, ValueError, TypeError, AttributeError) as error:
        raise ArgumentError(
            f"{name} must be a GPJax Matern12, Matern32 or Matern52 kernel on a 1-D input, or "
            f"a sum of them; got {type(kernel).__name__} ({error}). Pass e.g. "
            f"gpjax.kernels.Matern32(lengthscale=0.1, variance=1.0)."
        ) from None


def state_space(
    kernels: Any | Sequence[Any],
    num_components: int | None = None,
    *,
    dtype: Any = None,
) -> StateSpace:
    r"""Stack ``R`` independent GPs, each a Matérn kernel or a sum of them, into one LTI-SDE.

    Args:
        kernels: one GPJax kernel (``Matern12``, ``Matern32``, ``Matern52`` or a sum of them)
            shared by all ``num_components`` components, or a sequence with one kernel per
            component.
        num_components: ``R`` when one kernel is shared (default 1); with a sequence it must
            be ``None`` or its length.
        dtype: floating dtype of the matrices (default: JAX's default float, float64 under
            ``jax_enable_x64``).

    Returns:
        The :class:`StateSpace` with block-diagonal :math:`F, L, Q_c, H, P_\infty`.

    Example:
        >>> import gpjax as gpx
        >>> from bayescore.models.statespace import state_space
        >>> kernels = [gpx.kernels.Matern12(), gpx.kernels.Matern32() + gpx.kernels.Matern52()]
        >>> sde = state_space(kernels)
        >>> sde.state_dim, sde.num_components, sde.block_sizes
        (6, 2, (1, 2, 3))
    """
    if isinstance(kernels, Sequence) and not isinstance(kernels, str):
        kernels = list(kernels)
        if not kernels:
            raise ArgumentError("kernels is an empty sequence. Pass at least one GPJax kernel.")
        if num_components is not None and num_components != len(kernels):
            raise ArgumentError(
                f"num_components={num_components} but kernels has {len(kernels)} entries. Pass "
                "one kernel per component, or one kernel and num_components."
            )
    else:
        count = (
            1 if num_components is None else check_positive_int("num_components", num_components)
        )
        kernels = [kernels] * count
    dtype = jnp.result_type(float) if dtype is None else dtype
    linear_sdes = [_to_sde(kernel, "kernels") for kernel in kernels]
    cast = lambda x: jnp.asarray(x, dtype)  # noqa: E731
    block_diag = lambda name: jsl.block_diag(  # noqa: E731
        *[cast(getattr(linear_sde, name)) for linear_sde in linear_sdes]
    )
    square_root = block_diag("stationary_state_cov_sqrt")
    return StateSpace(
        drift=block_diag("drift_matrix"),
        diffusion=block_diag("diffusion_matrix"),
        spectral_density=block_diag("process_noise_spectral_density"),
        observation=block_diag("observation_matrix"),
        stationary_covariance=square_root @ square_root.T,
        block_sizes=tuple(size for linear_sde in linear_sdes for size in _blocks(linear_sde)),
    )
