r"""Gradient estimators for SG-MCMC: minibatch, control variates, structured (S-SGMCMC).

Every SG-MCMC sampler takes its gradient of :math:`\log\pi` from an estimator, so each
estimator works with every sampler. All work on the flattened position (``ravel_pytree``
order) and draw their minibatches from the Target's subsampled plates
(``numpyro.plate(name, N, subsample_size=B)``) through the epoch-wise stream of
:mod:`bayescore.core.data`.

- :class:`Minibatch`: :math:`\hat g(\theta) = \nabla[\log p(\theta) + \tfrac NB
  \sum_{i\in B}\log p(y_i|\theta)]`, unbiased, one gradient pass per step.
- :class:`ControlVariates` (SGLD-CV; Baker, Fearnhead, Fox & Nemeth 2019): a mode
  :math:`\hat\theta` is found with an optax optimizer on minibatch gradients when the chain
  starts (the chain then starts there), the full-data gradient is taken there once, and
  :math:`\hat g(\theta) = \nabla\log\pi(\hat\theta) + \hat g_B(\theta) - \hat g_B(\hat\theta)`,
  the same minibatch in both terms: two passes per step, a variance that vanishes at the mode.
- :class:`Structured` (S-SGMCMC; Alexos, Boyd & Mandt, ICML 2022): the parameters are split
  into groups :math:`\theta_1..\theta_K`; the gradient for group ``k`` is taken on the
  self-averaged energy :math:`E_{\theta_{-k}\sim\hat q_{-k}}[\log p(y, \theta_k,
  \theta_{-k})]`, with the other groups drawn from ring buffers of the chain's own past
  values. The stationary law approaches the structured (mean-field across groups) variational
  fixed point :math:`q_k \propto \exp E_{q_{-k}}[\log p]`, and the chain mixes faster because
  the dependencies between groups are cut.

Written by hand: BlackJAX has no structured estimator and does not export its control
variates; the formulas follow the papers above and, for S-SGMCMC's copies, masks and
likelihood scaling, the authors' code (mandt-lab/Structured-SG-MCMC).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, PRNGKeyArray

from bayescore.core.data import target_batch
from bayescore.core.errors import ArgumentError, check_interval, check_positive_int


def minibatch_value_and_grad(target: Any, unravel: Any, indices: dict) -> Any:
    """``x ↦ (log π̂(x), ∇ log π̂(x))`` on the flat position, for the minibatch ``indices``."""

    def value(x: Array) -> Array:
        return target.logdensity_subsample(unravel(x), indices)

    return jax.value_and_grad(value)


class Estimate(NamedTuple):
    """What an estimator returns for one step.

    Attributes:
        logdensity: the estimate of :math:`\\log\\pi` at the position (for ``sample_stats``).
        grad: the estimate of :math:`\\nabla\\log\\pi` (flat).
        passes: minibatch gradient passes it took.
    """

    logdensity: Array
    grad: Array
    passes: Array


class Minibatch(eqx.Module):
    """The plain minibatch gradient: unbiased, one pass per step (see the module docstring).

    Example:
        >>> from bayescore.inference.sgmcmc import Minibatch
        >>> Minibatch()
        Minibatch()
    """

    def init(
        self, target: Any, x: Array, unravel: Any, key: PRNGKeyArray, num_shards: int = 1
    ) -> tuple[Array, Any]:
        """``(starting position, estimator state)``; minibatches drawn with ``num_shards``."""
        return x, ()

    def estimate(
        self,
        target: Any,
        unravel: Any,
        x: Array,
        indices: dict,
        key: PRNGKeyArray,
        state: Any,
    ) -> Estimate:
        value, grad = minibatch_value_and_grad(target, unravel, indices)(x)
        return Estimate(value, grad, jnp.ones((), jnp.int32))

    def update(self, state: Any, x: Array, count: Array) -> Any:
        """The estimator state after the sampler moved to ``x`` at step ``count``."""
        return state


class ControlVariatesState(NamedTuple):
    """The centring point, its full-data log density and gradient."""

    centre: Array
    logdensity: Array
    grad: Array


class ControlVariates(eqx.Module):
    """SGLD-CV's centred estimator (see the module docstring).

    Attributes:
        optimizer: the optax optimizer that finds the mode (maximises the minibatch log
            density); default ``optax.adam(1e-2)``.
        num_steps: optimizer steps (one minibatch each) when the chain starts.

    Example:
        >>> import optax
        >>> from bayescore.inference.sgmcmc import ControlVariates
        >>> ControlVariates(optax.sgd(1e-3), num_steps=500).num_steps
        500
    """

    optimizer: Any = None
    num_steps: int = eqx.field(static=True, default=1000)

    def __check_init__(self) -> None:
        check_positive_int("num_steps", self.num_steps, allow_zero=True)
        if self.optimizer is not None and not hasattr(self.optimizer, "update"):
            raise ArgumentError(
                "optimizer must be an optax GradientTransformation (e.g. optax.adam(1e-2)) or "
                f"None, got {type(self.optimizer).__name__}."
            )

    def init(
        self, target: Any, x: Array, unravel: Any, key: PRNGKeyArray, num_shards: int = 1
    ) -> tuple[Array, ControlVariatesState]:
        optimizer = self.optimizer if self.optimizer is not None else optax.adam(1e-2)

        def step(carry: tuple, count: Array) -> tuple:
            x, opt_state = carry
            indices = target_batch(target, key, count, num_shards)
            _, grad = minibatch_value_and_grad(target, unravel, indices)(x)
            updates, opt_state = optimizer.update(-grad, opt_state, x)
            return (optax.apply_updates(x, updates), opt_state), None

        (centre, _), _ = jax.lax.scan(
            step, (x, optimizer.init(x)), jnp.arange(self.num_steps, dtype=jnp.int32)
        )
        value, grad = jax.value_and_grad(lambda x: target.logdensity(unravel(x)))(centre)
        return centre, ControlVariatesState(centre, value, grad)

    def estimate(
        self,
        target: Any,
        unravel: Any,
        x: Array,
        indices: dict,
        key: PRNGKeyArray,
        state: ControlVariatesState,
    ) -> Estimate:
        value_and_grad = minibatch_value_and_grad(target, unravel, indices)
        value, grad = value_and_grad(x)
        centre_value, centre_grad = value_and_grad(state.centre)
        return Estimate(
            state.logdensity + value - centre_value,
            state.grad + grad - centre_grad,
            jnp.full((), 2, jnp.int32),
        )

    def update(self, state: Any, x: Array, count: Array) -> Any:
        return state


class StructuredState(NamedTuple):
    """The ring buffer of past positions: ``buffer (size, dim)``, writes so far."""

    buffer: Array
    written: Array


class Structured(eqx.Module):
    """S-SGMCMC's self-averaged gradient over parameter groups (see the module docstring).

    Attributes:
        groups: how to split the parameters into groups:

            - a sequence whose entries are a site name / pytree path (``"w1"``,
              ``"layer.w"``: the leaf and everything under it) or a sequence of them (one
              group of several); parameters named by no entry form one more group;
            - ``"sites"``: one group per site (pytree leaf);
            - ``"coordinates"``: one group per scalar parameter (use with ``dropout``);
            - an integer ``K``: ``K`` groups of equal size, coordinates assigned round-robin
              after a fixed random permutation (the reference's "permuted" grouping).
        buffer_size: past positions kept (the ring buffer's length; oldest overwritten).
        thinning: write the position into the buffer every ``thinning`` steps.
        dropout: ``None`` for the exact scheme (``K`` copies, group ``k`` current in copy
            ``k``), or ``p`` for the dropout scheme: ``num_copies`` copies in which each group
            is current with probability ``p`` (Bernoulli masks), else drawn from the buffer.
        num_copies: ``L``, copies of the dropout scheme.

    Convergence: the group means follow a block-Jacobi iteration of the posterior's
    precision through the buffers, so the scheme settles when that iteration contracts (on a
    Gaussian: spectral radius of :math:`D^{-1}(\\Lambda - D)` below 1, ``D`` the group-diagonal
    blocks of the precision :math:`\\Lambda`); near radius 1 the buffer means drift and the
    draws are not the mean-field fixed point. Use groups that keep strongly coupled
    parameters together, and a buffer spanning many autocorrelation times after burn-in.

    Cost per step: ``K`` (exact) or ``L`` (dropout) minibatch gradient passes, run as one
    ``vmap``; memory: ``buffer_size`` × ``dim`` floats per chain (one buffer of whole positions,
    each group's past value drawn from it independently, which is the same as per-group
    buffers written at the same steps).

    The dropout gradient is :math:`\\nabla_{\\theta_k}\\log p(\\theta) + \\frac{1}{Lp}
    \\sum_l M_{lk} \\nabla_{\\theta_k} \\log p(y_B|\\text{copy}_l)` (likelihood rescaled by
    :math:`1/p` as in the reference); unlike the reference code, the prior's gradient is kept
    for every group at every step (the reference drops it for groups current in no copy,
    which weights the prior by :math:`1-(1-p)^L`).

    Example:
        >>> from bayescore.inference.sgmcmc import Structured
        >>> Structured(groups=[["w1", "b1"], "w2"], buffer_size=500).buffer_size
        500
    """

    groups: Any = eqx.field(static=True, default="sites")
    buffer_size: int = eqx.field(static=True, default=1000)
    thinning: int = eqx.field(static=True, default=1)
    dropout: float | None = eqx.field(static=True, default=None)
    num_copies: int = eqx.field(static=True, default=4)

    def __check_init__(self) -> None:
        check_positive_int("buffer_size", self.buffer_size)
        check_positive_int("thinning", self.thinning)
        check_positive_int("num_copies", self.num_copies)
        if self.dropout is not None:
            check_interval("dropout", self.dropout, 0.0, 1.0, closed="right", hint="Or None.")

    def group_ids(self, example: Any) -> np.ndarray:
        """The group of every flat coordinate of a position shaped like ``example``."""
        leaves = jax.tree_util.tree_flatten_with_path(example)[0]
        names = [jax.tree_util.keystr(path, simple=True, separator=".") for path, _ in leaves]
        sizes = [int(np.prod(np.shape(leaf))) for _, leaf in leaves]
        dim = sum(sizes)
        if isinstance(self.groups, (int, np.integer)) and not isinstance(self.groups, bool):
            count = check_positive_int("groups", int(self.groups))
            if count > dim:
                raise ArgumentError(f"groups={count} exceeds the {dim} parameters.")
            permutation = np.random.default_rng(0).permutation(dim)
            ids = np.empty(dim, np.int32)
            ids[permutation] = np.arange(dim) % count
            return ids
        if self.groups == "coordinates":
            return np.arange(dim, dtype=np.int32)
        if self.groups == "sites":
            return np.repeat(np.arange(len(sizes), dtype=np.int32), sizes)
        if isinstance(self.groups, str) or not isinstance(self.groups, Sequence):
            raise ArgumentError(
                f"groups must be a sequence of site names / pytree paths (or of lists of "
                f"them), 'sites', 'coordinates' or an integer, got {self.groups!r}."
            )
        leaf_group = np.full(len(names), -1)
        for group, entry in enumerate(self.groups):
            if not isinstance(entry, (str, Sequence)):
                raise ArgumentError(
                    f"groups[{group}] must be a site name / pytree path or a list of them, got "
                    f"{entry!r}."
                )
            for pattern in [entry] if isinstance(entry, str) else list(entry):
                matched = [
                    i
                    for i, name in enumerate(names)
                    if name == pattern or name.startswith(pattern + ".")
                ]
                if not matched:
                    raise ArgumentError(
                        f"groups entry {pattern!r} names no parameter; the parameters are {names}."
                    )
                if np.any(leaf_group[matched] >= 0):
                    raise ArgumentError(f"parameter {pattern!r} is in two groups.")
                leaf_group[matched] = group
        leaf_group[leaf_group < 0] = len(self.groups)  # the rest: one more group
        _, leaf_group = np.unique(leaf_group, return_inverse=True)
        return np.repeat(leaf_group.astype(np.int32), sizes)

    def init(
        self, target: Any, x: Array, unravel: Any, key: PRNGKeyArray, num_shards: int = 1
    ) -> tuple[Array, StructuredState]:
        buffer = jnp.zeros((self.buffer_size, x.shape[0]), x.dtype).at[0].set(x)
        return x, StructuredState(buffer, jnp.ones((), jnp.int32))

    def estimate(
        self,
        target: Any,
        unravel: Any,
        x: Array,
        indices: dict,
        key: PRNGKeyArray,
        state: StructuredState,
    ) -> Estimate:
        group_ids = self.group_ids(unravel(x))  # static: from the shapes alone
        num_groups, ids = int(group_ids.max()) + 1, jnp.asarray(group_ids)
        slot_key, mask_key = jax.random.split(key)
        filled = jnp.minimum(state.written, self.buffer_size)
        if self.dropout is None:
            copies, active = num_groups, jnp.eye(num_groups, dtype=bool)
        else:
            copies = self.num_copies
            active = jax.random.bernoulli(mask_key, self.dropout, (copies, num_groups))
        slots = jax.random.randint(slot_key, (copies, num_groups), 0, filled)
        past = state.buffer[slots[:, ids], jnp.arange(x.shape[0])]  # (copies, dim)
        current = active[:, ids]
        positions = jnp.where(current, x, past)
        value_and_grad = minibatch_value_and_grad(target, unravel, indices)
        passes = jnp.full((), copies, jnp.int32)
        if self.dropout is None:
            values, grads = jax.vmap(value_and_grad)(positions)
            grad = grads[ids, jnp.arange(x.shape[0])]
            return Estimate(jnp.mean(values), grad, passes)

        def likelihood(position: Array) -> Array:
            params = unravel(position)
            return target.logdensity_subsample(params, indices) - target.logprior(params)

        values, grads = jax.vmap(jax.value_and_grad(likelihood))(positions)
        prior_value, prior_grad = jax.value_and_grad(lambda x: target.logprior(unravel(x)))(x)
        weights = current / (copies * self.dropout)
        grad = prior_grad + jnp.sum(weights * grads, axis=0)
        return Estimate(prior_value + jnp.mean(values), grad, passes)

    def update(self, state: StructuredState, x: Array, count: Array) -> StructuredState:
        write = (count + 1) % self.thinning == 0
        slot = state.written % self.buffer_size
        buffer = state.buffer.at[slot].set(jnp.where(write, x, state.buffer[slot]))
        return StructuredState(buffer, state.written + write.astype(jnp.int32))


__all__ = [
    "ControlVariates",
    "ControlVariatesState",
    "Estimate",
    "Minibatch",
    "Structured",
    "StructuredState",
    "minibatch_value_and_grad",
]
