r"""Stochastic normalizing flows (Wu, Köhler & Noé 2020): bijections and Langevin blocks.

A stochastic flow maps a base draw :math:`z \sim q_0` through a sequence of blocks,
:math:`y_0 = z \to y_1 \to \dots \to y_T = x`. A block is either a bijection (any flowjax
bijection on :math:`\mathbb R^d`) or a :class:`LangevinBlock`: ``num_steps`` MALA (or ULA)
steps targeting the interpolated density
:math:`\log\pi_\lambda = (1-\lambda)\log q_0 + \lambda\log\tilde p`, taken with bayescore's
Langevin transition (``bayescore.inference.langevin``). The marginal density of :math:`x` is
intractable, but the path has an exact importance weight
(Wu et al. 2020, eq. 9):

.. math::

    \log w = \log\tilde p(x) - \log q_0(z) + \sum_t \Delta S_t,

with :math:`\Delta S = \log|\det J|` for a bijection,
:math:`\Delta S = \log\pi_\lambda(y) - \log\pi_\lambda(y')` for a Metropolis-adjusted step
(detailed balance, whether or not it was accepted) and
:math:`\Delta S = \log\frac{N(y; y' + h\nabla\log\pi_\lambda(y'), 2h)}
{N(y'; y + h\nabla\log\pi_\lambda(y), 2h)}` for an unadjusted one. Then
:math:`\mathbb E[w] = Z` exactly, and :math:`\mathbb E[\log w] \le \log Z` is an ELBO over
paths.

:class:`StochasticFlow` is a family for ``bc.fit``: its ``sample_and_log_prob`` returns
:math:`x` and the *path* log density :math:`\log q_0(z) - \sum_t \Delta S_t`, so that
:math:`\log\tilde p(x)` minus it is :math:`\log w`; objectives over :math:`\log w` (ELBO,
IWELBO) and the reparameterisation estimator apply (accept decisions are not
differentiated, as in the reference code). It has no ``log_prob`` at a given point.

A Langevin block's :math:`\pi_\lambda` is evaluated in the coordinates where the block
sits. flowjax's ``coupling_flow`` ends each layer with a permutation, so between its layers
the axes alternate; build layers that keep one frame (e.g. ``Chain([layer, Flip(shape)])``
and ``Chain([Flip(shape), layer])`` alternately) when Langevin blocks sit between them.
Trained by the path ELBO, an SNF tends to one mode as a flow does; IWELBO (``vi.iwelbo``)
keeps it on several (see the docs' double-well comparison).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import paramax
from flowjax.bijections import AbstractBijection
from flowjax.distributions import AbstractDistribution
from jaxtyping import Array, PRNGKeyArray

from bayescore.core.errors import (
    ArgumentError,
    ModelError,
    check_interval,
    check_positive_float,
    check_positive_int,
)
from bayescore.core.target import Target
from bayescore.inference.langevin.base import LangevinState
from bayescore.inference.langevin.overdamped import MALA, ULA


class LangevinBlock(eqx.Module):
    """``num_steps`` Langevin steps targeting :math:`\\pi_\\lambda` (see the module).

    Attributes:
        step_size: :math:`h` (not trained).
        lam: :math:`\\lambda \\in [0, 1]`, from the base (0) to the target (1).
        num_steps: steps in the block.
        adjusted: MALA (``True``) or ULA (``False``).

    Example:
        >>> from bayescore.inference.vi import LangevinBlock
        >>> LangevinBlock(0.1, lam=1.0, num_steps=5).adjusted
        True
    """

    step_size: float = eqx.field(static=True)
    lam: float = eqx.field(static=True, default=1.0)
    num_steps: int = eqx.field(static=True, default=1)
    adjusted: bool = eqx.field(static=True, default=True)

    def __check_init__(self) -> None:
        check_positive_float("step_size", self.step_size)
        check_positive_int("num_steps", self.num_steps)
        check_interval("lam", self.lam, 0.0, 1.0, closed="both")


class _Density(NamedTuple):
    logdensity: Callable[[Array], Array]


class StochasticFlow(AbstractDistribution):
    """A stochastic normalizing flow on ``R^dim`` for a fixed target (see the module).

    Build it with :func:`stochastic_flow`. ``sample_and_log_prob`` returns draws and their
    path log density; :meth:`log_weight` returns draws and :math:`\\log w`.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> import bayescore as bc
        >>> from flowjax.distributions import StandardNormal
        >>> from bayescore.inference import vi
        >>> target = bc.Target.from_logdensity(lambda x: -0.5 * jnp.sum((x - 1) ** 2), jnp.zeros(2))
        >>> snf = vi.stochastic_flow(target, StandardNormal((2,)),
        ...                          [vi.LangevinBlock(0.2, lam=1.0, num_steps=3)])
        >>> x, log_w = snf.log_weight(jax.random.key(0), (5,))
        >>> x.shape, log_w.shape
        ((5, 2), (5,))
    """  # noqa: E501

    base_dist: AbstractDistribution
    blocks: tuple[Any, ...]
    log_target: Callable[[Array], Array] = eqx.field(static=True)
    shape: tuple[int, ...] = eqx.field(static=True)
    cond_shape: ClassVar[None] = None

    def _sample_and_log_prob(
        self, key: PRNGKeyArray, condition: Array | None = None
    ) -> tuple[Array, Array]:
        base_key, *block_keys = jax.random.split(key, len(self.blocks) + 1)
        z, log_q0 = self.base_dist.sample_and_log_prob(base_key)
        y, entropy = z, jnp.zeros(())
        for block, block_key in zip(self.blocks, block_keys, strict=True):
            if isinstance(block, LangevinBlock):
                y, delta = self._langevin(block, block_key, y)
            else:
                y, delta = block.transform_and_log_det(y)
            entropy = entropy + delta
        return y, log_q0 - entropy

    def _sample(self, key: PRNGKeyArray, condition: Array | None = None) -> Array:
        return self._sample_and_log_prob(key)[0]

    def _log_prob(self, x: Array, condition: Array | None = None) -> Array:
        raise ModelError(
            "a stochastic normalizing flow has no density at a given point, only path weights "
            "(log_weight, sample_and_log_prob); use it with the reparameterisation estimator."
        )

    def log_weight(self, key: PRNGKeyArray, sample_shape: tuple[int, ...] = ()) -> tuple:
        """``(x, log w)``: draws and their exact path log importance weights."""
        x, log_q = self.sample_and_log_prob(key, sample_shape)
        log_p = jax.vmap(self.log_target)(x.reshape(-1, x.shape[-1])).reshape(x.shape[:-1])
        return x, log_p - log_q

    def _interpolated(self, lam: float) -> Callable[[Array], Array]:
        base = paramax.unwrap(self.base_dist)

        def log_density(y: Array) -> Array:
            if lam == 1.0:
                return self.log_target(y)
            if lam == 0.0:
                return base.log_prob(y)
            return (1.0 - lam) * base.log_prob(y) + lam * self.log_target(y)

        return log_density

    def _langevin(self, block: LangevinBlock, key: PRNGKeyArray, y: Array) -> tuple[Array, Array]:
        density = _Density(self._interpolated(block.lam))
        method = (MALA if block.adjusted else ULA)(step_size=block.step_size)
        parameters = method.prepare(block.step_size, jnp.ones(self.shape[0]))
        value, grad = jax.value_and_grad(density.logdensity)(y)
        state = LangevinState(y, value, grad)

        def step(carry: tuple[LangevinState, Array], step_key: Array) -> tuple[tuple, None]:
            state, entropy = carry
            new, info = method._move(density, step_key, state, parameters, block.adjusted)
            # ΔS: log π(y) − log π(y') for a reversible (adjusted) step; for ULA the
            # transition-density ratio, i.e. that minus the step's energy error.
            delta = state.logdensity - new.logdensity
            if not block.adjusted:
                delta = delta - info.energy_error
            return (new, entropy + delta), None

        steps = jax.random.split(key, block.num_steps)
        (state, entropy), _ = jax.lax.scan(step, (state, jnp.zeros(())), steps)
        return state.position, entropy


def stochastic_flow(
    target: Target | Callable[[Array], Array],
    base_dist: AbstractDistribution,
    blocks: list[Any],
) -> StochasticFlow:
    """A :class:`StochasticFlow` from ``base_dist`` through ``blocks`` towards ``target``.

    Args:
        target: a Target (its flat unconstrained space) or ``log p̃(x)`` for one point.
        base_dist: the base :math:`q_0`, a flowjax distribution of shape ``(dim,)``.
        blocks: flowjax bijections on ``(dim,)`` and :class:`LangevinBlock` s, in order.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from flowjax.distributions import StandardNormal
        >>> from bayescore.inference import vi
        >>> from bayescore.models.flows import planar
        >>> snf = vi.stochastic_flow(lambda x: -jnp.sum(x**4), StandardNormal((2,)),
        ...                          [planar(jax.random.key(0), 2), vi.LangevinBlock(0.05)])
        >>> len(snf.blocks)
        2
    """
    if not isinstance(base_dist, AbstractDistribution) or len(base_dist.shape) != 1:
        raise ArgumentError(
            "base_dist must be a flowjax distribution over vectors, shape (dim,), e.g. "
            f"flowjax.distributions.StandardNormal((2,)); got {base_dist!r}."
        )
    if isinstance(target, Target):
        unravel = target.unravel()
        log_target = lambda x: target.logdensity(unravel(x))  # noqa: E731
        dim = target.dim
    elif callable(target):
        log_target, dim = target, base_dist.shape[0]
    else:
        raise ArgumentError(f"target must be a Target or a log density, got {type(target)}.")
    if base_dist.shape != (dim,):
        raise ArgumentError(f"base_dist must have shape ({dim},), got {base_dist.shape}.")
    if not isinstance(blocks, (list, tuple)):
        raise ArgumentError(
            f"blocks must be a list of LangevinBlocks and flowjax bijections, got "
            f"{type(blocks).__name__}."
        )
    for index, block in enumerate(blocks):
        if isinstance(block, LangevinBlock):
            continue
        if not isinstance(paramax.unwrap(block), AbstractBijection) or block.shape != (dim,):
            raise ArgumentError(
                f"blocks[{index}] must be a LangevinBlock or a flowjax bijection of shape "
                f"({dim},), got {type(block).__name__}."
            )
    return StochasticFlow(base_dist, tuple(blocks), log_target, (dim,))


__all__ = ["LangevinBlock", "StochasticFlow", "stochastic_flow"]
