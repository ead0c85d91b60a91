"""``bc.fit``: fit a variational family to a Target; the :class:`Approximation` it returns.

``fit(target, family, objective=, estimator=, optimizer=, num_steps=, key=)`` checks that the
estimator applies to the objective, then runs ``num_steps`` optax steps of the estimator's
surrogate in one compiled loop (``bayescore.core.optimise``; non-finite steps are skipped and
counted). A Target with subsampled plates (``numpyro.plate(name, N, subsample_size=B)``) is
fitted on minibatches, as NumPyro's SVI does: each step draws one epoch-wise minibatch per
plate (``bayescore.core.data.target_batch``) shared by the step's draws, whose likelihood
NumPyro scales by :math:`N/B`; with ``devices=`` each device evaluates its block's part of
the minibatch and the gradient is summed across devices (the driver's ``over_data_shards``).
The :class:`Approximation` holds the fitted family and the history, and gives
draws (constrained, through the Target), densities, an importance-weighted log-evidence
estimate with its PSIS :math:`\\hat k` (ArviZ), and an ArviZ ``DataTree``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import paramax
from jaxtyping import Array, PRNGKeyArray

from bayescore.core.data import check_batching, target_batch
from bayescore.core.driver import (
    _check_data_parallel,
    as_key,
    chain_mesh,
    over_data_shards,
    process_local,
    shard_data,
)
from bayescore.core.errors import (
    ArgumentError,
    InitializationError,
    check_positive_float,
    check_positive_int,
)
from bayescore.core.optimise import adam, optimise
from bayescore.core.result import Result
from bayescore.core.target import Target
from bayescore.inference.vi.estimators import Estimator, check, reparameterisation
from bayescore.inference.vi.families import check_family
from bayescore.inference.vi.objectives import Objective, as_objective, elbo
from bayescore.models.flows.train import unroll_layers

logger = logging.getLogger(__name__)
DRAWS_PER_STEP = 64  # default draws per step: num_groups * num_particles
# The minibatch stream's key is fold_in(key, MINIBATCH_STREAM); steps use fold_in(key, t).
MINIBATCH_STREAM = 2**31 - 1


@dataclasses.dataclass(frozen=True)
class Approximation:
    """A fitted variational family over a Target's unconstrained space.

    Attributes:
        family: the fitted flowjax distribution on ``R^target.dim``.
        target: the Target it approximates.
        history: ``{"loss": ..., "objective": ...}`` per step (NumPy arrays).
        objective: the objective's name; ``estimator``: the estimator's name.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> import bayescore as bc
        >>> from bayescore.inference import vi
        >>> target = bc.Target.from_logdensity(lambda p: -0.5 * jnp.sum((p - 1.0) ** 2), jnp.zeros(2))
        >>> approx = bc.fit(target, vi.mean_field(target), num_steps=500, key=jax.random.key(0),
        ...                 progress=False)
        >>> round(float(approx.sample(jax.random.key(1), 4000)["x"].mean()), 1)
        1.0
    """  # noqa: E501

    family: Any
    target: Target
    history: dict[str, np.ndarray]
    objective: str
    estimator: str

    def sample_unconstrained(self, key: PRNGKeyArray, num_draws: int) -> Any:
        """``num_draws`` unconstrained parameter pytrees (leading axis ``num_draws``).

        Example:
            >>> import jax, jax.numpy as jnp
            >>> import bayescore as bc
            >>> target = bc.Target.from_logdensity(lambda p: -jnp.sum(p["a"] ** 2),
            ...                                    {"a": jnp.zeros(3)})
            >>> approx = bc.fit(target, bc.inference.vi.mean_field(target), num_steps=2,
            ...                 key=jax.random.key(0), progress=False)
            >>> approx.sample_unconstrained(jax.random.key(1), 5)["a"].shape
            (5, 3)
        """
        num_draws = check_positive_int("num_draws", num_draws)
        flat = paramax.unwrap(self.family).sample(key, (num_draws,))
        return jax.vmap(self.target.unravel())(flat)

    def sample(self, key: PRNGKeyArray, num_draws: int) -> dict[str, Array]:
        """``num_draws`` constrained draws of every site (leading axis ``num_draws``).

        Example:
            >>> import jax, jax.numpy as jnp, numpyro, numpyro.distributions as dist
            >>> import bayescore as bc
            >>> def model():
            ...     numpyro.sample("scale", dist.HalfNormal(1.0))
            >>> target = bc.Target.from_numpyro(model)
            >>> approx = bc.fit(target, bc.inference.vi.mean_field(target), num_steps=2,
            ...                 key=jax.random.key(0), progress=False)
            >>> bool((approx.sample(jax.random.key(1), 10)["scale"] > 0).all())
            True
        """
        return jax.vmap(self.target.constrain)(self.sample_unconstrained(key, num_draws))

    def log_prob(self, params: Any) -> Array:
        """:math:`\\log q` at unconstrained ``params`` (one pytree, or a batch of them).

        Example:
            >>> import jax, jax.numpy as jnp
            >>> import bayescore as bc
            >>> target = bc.Target.from_logdensity(lambda p: -jnp.sum(p**2), jnp.zeros(2))
            >>> approx = bc.fit(target, bc.inference.vi.mean_field(target), num_steps=2,
            ...                 key=jax.random.key(0), progress=False)
            >>> approx.log_prob(jnp.zeros((3, 2))).shape
            (3,)
        """
        leaves = jax.tree.leaves(params)
        example = jax.tree.leaves(self.target.example_params.tree)
        batch = leaves[0].shape[: leaves[0].ndim - len(example[0].shape)]
        flat = jnp.concatenate([jnp.reshape(leaf, (*batch, -1)) for leaf in leaves], axis=-1)
        return paramax.unwrap(self.family).log_prob(flat)

    def log_weights(self, key: PRNGKeyArray, num_draws: int) -> tuple[Array, Array]:
        """``(flat draws, log importance weights log p̃ − log q)`` of ``num_draws`` draws.

        Example:
            >>> import jax, jax.numpy as jnp
            >>> import bayescore as bc
            >>> target = bc.Target.from_logdensity(lambda p: -jnp.sum(p**2), jnp.zeros(2))
            >>> approx = bc.fit(target, bc.inference.vi.mean_field(target), num_steps=2,
            ...                 key=jax.random.key(0), progress=False)
            >>> approx.log_weights(jax.random.key(1), 7)[1].shape
            (7,)
        """
        num_draws = check_positive_int("num_draws", num_draws)
        flat, log_p, log_q = _draws(self.family, self.target, key, num_draws)
        return flat, log_p - log_q

    def log_evidence(self, key: PRNGKeyArray, num_draws: int = 10_000) -> tuple[float, float]:
        """``(log Z estimate, PSIS k̂)`` from ``num_draws`` importance weights.

        :math:`\\log \\frac1N \\sum_i w_i` (unbiased for :math:`Z`, biased low in
        :math:`\\log Z`); :math:`\\hat k` is the Pareto shape of the weights' tail
        (``arviz_stats`` PSIS): below 0.5 the estimate is reliable, above 0.7 it is not;
        :math:`-\\infty` when the weights are equal to rounding (:math:`q = p`).

        Example:
            >>> import jax, jax.numpy as jnp
            >>> import bayescore as bc
            >>> target = bc.Target.from_logdensity(lambda p: -0.5 * jnp.sum(p**2), jnp.zeros(2))
            >>> approx = bc.fit(target, bc.inference.vi.full_rank(target), num_steps=1000,
            ...                 key=jax.random.key(0), progress=False)
            >>> log_z, khat = approx.log_evidence(jax.random.key(1))
            >>> round(log_z, 2), khat < 0.5  # log Z = log 2π
            (1.84, True)
        """
        from arviz_stats.base import array_stats

        _, log_w = self.log_weights(key, num_draws)
        log_w = np.asarray(log_w, np.float64)
        log_z = float(np.logaddexp.reduce(log_w) - np.log(len(log_w)))
        _, khat = array_stats.psislw(-log_w)  # it takes log-likelihoods: minus log weights
        if np.isnan(khat) and np.ptp(log_w) < 1e-3:
            khat = -np.inf  # weights equal to rounding (q = p): a bounded tail, no Pareto fit
        return log_z, float(khat)

    def to_arviz(self, num_draws: int = 1000, key: PRNGKeyArray | None = None) -> Any:
        """An ArviZ ``DataTree`` of ``num_draws`` draws (one chain).

        ``posterior`` holds the constrained sites; ``sample_stats`` holds ``lp`` (the
        Target's log density) and ``log_weight`` (:math:`\\log\\tilde p - \\log q`).

        Example:
            >>> import jax, jax.numpy as jnp
            >>> import bayescore as bc
            >>> target = bc.Target.from_logdensity(lambda p: -jnp.sum(p**2), jnp.zeros(2))
            >>> approx = bc.fit(target, bc.inference.vi.mean_field(target), num_steps=2,
            ...                 key=jax.random.key(0), progress=False)
            >>> tree = approx.to_arviz(100)
            >>> sorted(tree.sample_stats.data_vars)
            ['log_weight', 'lp']
        """
        key = jax.random.key(0) if key is None else key
        num_draws = check_positive_int("num_draws", num_draws)
        flat, log_p, log_q = _draws(self.family, self.target, key, num_draws)
        positions = jax.tree.map(lambda a: a[None], jax.vmap(self.target.unravel())(flat))
        stats = {"lp": log_p[None], "log_weight": (log_p - log_q)[None]}
        method = f"VI ({self.objective}, {self.estimator})"
        return Result(positions, stats, None, self.target, method).to_arviz()


def fit(
    target: Target,
    family: Any,
    *,
    objective: Objective | Callable = None,
    estimator: Estimator | None = None,
    optimizer: optax.GradientTransformation | None = None,
    learning_rate: float = 1e-2,
    num_steps: int = 1000,
    num_groups: int | None = None,
    key: PRNGKeyArray | int,
    progress: bool = True,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int = 1000,
    resume: str | os.PathLike | None = None,
    num_shards: int = 1,
    devices: Any = None,
    shard: str = "data",
) -> Approximation:
    """Fit ``family`` to ``target`` by maximising ``objective`` with ``estimator``'s gradients.

    Args:
        target: the Target (its unconstrained space is the family's).
        family: a flowjax distribution of shape ``(target.dim,)``: ``vi.mean_field``,
            ``vi.full_rank``, ``vi.low_rank`` or any flow.
        objective: ``vi.elbo()`` (default), ``vi.iwelbo(K)``, ``vi.renyi(alpha, K)``,
            ``vi.forward_kl(K)``, or a function ``(log_p, log_q) -> scalar``.
        estimator: ``vi.reparameterisation()`` (default), ``vi.sticking_the_landing()``,
            ``vi.score_function()``, ``vi.dreg()``; an estimator that does not apply to the
            objective raises :class:`~bayescore.core.errors.ArgumentError` saying why.
        optimizer: an optax optimizer (default ``optax.adam(learning_rate)``).
        learning_rate: Adam's step size when ``optimizer`` is not given.
        num_steps: optimiser steps.
        num_groups: independent groups of ``K`` draws per step (default: 64 draws in all).
        key: a JAX key or an integer seed.
        progress: show a progress bar.
        checkpoint: a folder to write the fit to every ``checkpoint_every`` steps (the
            family's parameters, the optimiser state, the losses so far), each file written
            whole and renamed into place, so that a crash loses at most one chunk.
        checkpoint_every: optimiser steps per chunk.
        resume: the folder of a checkpointed fit with the same arguments: continue it from
            its last chunk. Step ``t`` uses ``fold_in(key, t)`` however the run is cut, so the
            result equals the uninterrupted fit's.
        num_shards: strata of each subsampled plate's minibatch: the plate's data are cut
            into ``num_shards`` contiguous blocks, each contributing ``B / num_shards`` rows
            per step (``bayescore.core.data.minibatch_indices``). A data-parallel fit needs a
            multiple of the number of devices; the same ``num_shards`` on one device gives
            the same fit.
        devices: ``None`` fits on the default device; ``"all"``, a number of devices or a
            list of devices splits the data over them (as in ``bc.sample``), across
            processes too after :func:`bayescore.distributed.initialize`.
        shard: what ``devices`` split; only ``"data"``: every array argument of the model
            whose leading axis has a subsampled plate's size is cut into one block per
            device, each device evaluates the minibatch rows of its block, and the
            objective's gradient is summed across devices.

    Returns:
        An :class:`Approximation`.

    The compiled loop is cached: a second call with an equal configuration (a built-in family
    of the same size or the same flow object, the same objective, estimator and optimizer
    object, a Target of the same model and data shapes, the same ``num_steps``) only runs.
    flowjax's coupling and autoregressive layers hold per-instance closures, so a newly built
    flow compiles again; so does a newly built optax optimizer (the default Adam is shared).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> import bayescore as bc
        >>> from bayescore.inference import vi
        >>> target = bc.Target.from_logdensity(lambda p: -0.5 * jnp.sum(p**2), jnp.zeros(3))
        >>> approx = bc.fit(target, vi.full_rank(target), objective=vi.iwelbo(8),
        ...                 estimator=vi.dreg(), num_steps=300, key=0, progress=False)
        >>> approx.history["objective"].shape
        (300,)
    """
    if not isinstance(target, Target):
        raise ArgumentError(
            f"target must be a bayescore Target (bc.Target.from_numpyro or from_logdensity), "
            f"got {type(target).__name__}."
        )
    if shard != "data":
        raise ArgumentError(
            f"bc.fit has no chains to split: shard must be 'data', got {shard!r}. Pass "
            "devices=... alone, or bc.sample for chains over devices."
        )
    target.require_continuous("variational inference")
    family = check_family(family, target.dim)
    objective = as_objective(elbo() if objective is None else objective)
    estimator = reparameterisation() if estimator is None else estimator
    check(estimator, objective, family)
    num_steps = check_positive_int("num_steps", num_steps)
    checkpoint_every = check_positive_int("checkpoint_every", checkpoint_every)
    check_positive_float("learning_rate", learning_rate)
    if num_groups is None:
        num_groups = max(2, DRAWS_PER_STEP // objective.num_particles)
    num_groups = check_positive_int("num_groups", num_groups)
    num_shards = check_positive_int("num_shards", num_shards)
    for plate in target.subsample_plates:
        check_batching(plate.size, plate.subsample_size, num_shards, f"plate {plate.name!r}")
    key = as_key(key)
    optimizer = optimizer if optimizer is not None else adam(learning_rate)
    mesh = chain_mesh(devices, 1, "data")

    unravel = target.unravel()
    params, static = eqx.partition(
        family, eqx.is_inexact_array, is_leaf=lambda leaf: isinstance(leaf, paramax.NonTrainable)
    )
    loss_fn = _Surrogate(
        estimator,
        objective,
        _Constants(static),
        target,
        jax.random.fold_in(key, MINIBATCH_STREAM),
        num_groups,
        num_shards,
        mesh,
    )
    if mesh is not None:
        _check_data_parallel(loss_fn, target, mesh.size)
        loss_fn = dataclasses.replace(loss_fn, target=shard_data(target, mesh))
    start_key = jax.random.fold_in(key, num_steps)
    start, _ = _evaluate(loss_fn, params, start_key, jnp.int32(0))
    if not np.isfinite(float(start)):
        flat, log_p, log_q = _draws(family, target, start_key, 16)
        bad = int(np.argmax(~np.isfinite(np.asarray(log_p - log_q))))
        raise InitializationError(
            f"the {objective.name} is not finite at the initial family: at the draw "
            f"{target.explain_nonfinite(unravel(flat[bad]))}. Start the family where the "
            "target's log density is finite (e.g. a smaller init_scale)."
        )
    params, losses, values = optimise(
        loss_fn,
        params,
        optimizer,
        key,
        num_steps,
        pass_step=True,
        progress=progress,
        description="fit",
        checkpoint=checkpoint,
        checkpoint_every=checkpoint_every,
        resume=resume,
        run_config={
            "family": type(paramax.unwrap(family)).__name__,
            "objective": objective.name,
            "estimator": estimator.name,
            "num_groups": num_groups,
            "num_shards": num_shards,
        },
    )
    params = process_local(params)  # a multi-process fit's: this process's copy
    losses, values = np.asarray(losses), np.asarray(values)
    skipped = int(np.sum(~np.isfinite(losses)))
    if skipped:
        logger.warning("fit skipped %d of %d steps whose loss was not finite.", skipped, num_steps)
    return Approximation(
        eqx.combine(params, static),
        target,
        {"loss": losses, "objective": values},
        objective.name,
        estimator.name,
    )


class _Surrogate(eqx.Module):
    """The loss of step ``step`` as a pytree: equal configurations reuse the compiled loop."""

    name = "bc.fit"

    estimator: Estimator
    objective: Objective
    static: Any = eqx.field(static=True)  # a _Constants: compiled in, not passed
    target: Target  # with a mesh, its data placed on it (shard_data)
    stream_key: PRNGKeyArray  # the minibatch stream's
    num_groups: int = eqx.field(static=True)
    num_shards: int = eqx.field(static=True)
    mesh: Any = eqx.field(static=True)

    def __call__(self, params: Any, key: PRNGKeyArray, step: Array) -> tuple[Array, Array]:
        if self.mesh is None:
            return self.local(self.target, params, key, step)
        return over_data_shards(self.local, self.target, self.mesh)(params, key, step)

    def local(
        self, target: Target, params: Any, key: PRNGKeyArray, step: Array
    ) -> tuple[Array, Array]:
        """The loss with ``target`` (on a data shard, inside ``over_data_shards``)."""
        unravel = target.unravel()
        # One minibatch per step, shared by the step's draws (NumPyro's SVI does the same).
        indices = target_batch(target, self.stream_key, step, self.num_shards)

        def log_density(x: Array) -> Array:
            if not indices:
                return target.logdensity(unravel(x))
            return target.logdensity_subsample(unravel(x), indices)

        # a small flow's layers unrolled: a Scan's while loop costs more than its layers
        q = unroll_layers(paramax.unwrap(eqx.combine(params, self.static.tree())))
        return self.estimator.surrogate(q, log_density, self.objective, key, self.num_groups)


class _Constants:
    """The family's non-trainable leaves (autoregressive masks, permutations, functions) as
    constants of the compiled loop: hashed and compared by value, so an equal family reuses
    the loop, and XLA folds them (a traced permutation is a gather whose gradient is a
    scatter; a constant one is a fixed shuffle). Arrays over ``MAX_CONSTANT`` elements are
    keyed by identity instead of by their bytes (hashing them per call would cost more than
    a recompile); they are compiled in as well."""

    MAX_CONSTANT = 65_536

    def __init__(self, tree: Any) -> None:
        leaves, self.treedef = jax.tree.flatten(tree)
        self.leaves = tuple(
            np.asarray(leaf) if eqx.is_array(leaf) and leaf.size <= self.MAX_CONSTANT else leaf
            for leaf in leaves
        )
        self._key = tuple(
            (leaf.shape, leaf.dtype.str, leaf.tobytes())
            if isinstance(leaf, np.ndarray)
            else _hashable(leaf)
            for leaf in self.leaves
        )

    def tree(self) -> Any:
        return jax.tree.unflatten(self.treedef, self.leaves)

    def __hash__(self) -> int:
        return hash((self.treedef, self._key))

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, _Constants)
            and self.treedef == other.treedef
            and self._key == other._key
        )


def _hashable(leaf: Any) -> Any:
    """``leaf`` if it hashes, else its identity (kept alive by the holder, so never reused)."""
    try:
        hash(leaf)
    except TypeError:
        return ("id", id(leaf))
    return leaf


@eqx.filter_jit
def _evaluate(
    loss_fn: _Surrogate, params: Any, key: PRNGKeyArray, step: Array
) -> tuple[Array, Array]:
    return loss_fn(params, key, step)


@eqx.filter_jit
def _draws(family: Any, target: Target, key: PRNGKeyArray, num_draws: int) -> Any:
    """``(flat draws, log p̃, log q)``; for a stochastic flow, ``log q`` is the path's."""
    unravel = target.unravel()
    flat, log_q = paramax.unwrap(family).sample_and_log_prob(key, (num_draws,))
    log_p = jax.vmap(lambda x: target.logdensity(unravel(x)))(flat)
    return flat, log_p, log_q


__all__ = ["Approximation", "fit"]
