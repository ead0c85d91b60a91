"""``bc.sample``: one function that runs any Method on any Target.

The driver owns every loop. Per chain it runs ``num_warmup`` steps of the method's warmup
kernel, tunes, then ``num_samples * thin`` steps of the tuned kernel, all inside ``lax.scan``;
chains are ``vmap``-ped on one device, or split over several devices with ``shard_map`` when
``devices`` asks for it. Chain ``c`` at step ``t`` uses the key ``fold_in(chain_key[c], t)``,
so the key stream does not depend on how chains are placed on devices: a fixed kernel
(MALA, unadapted NUTS) gives the same draws on one device or several.

With ``shard="data"`` the devices split the data instead: every device runs every chain on
its own block of each subsampled plate's data (:meth:`Target.on_data_shard`), and the
likelihood and its gradient are summed across devices inside each density evaluation, so the
chains see the single-device densities and, for a fixed kernel, give the same draws.

Adapted runs agree in distribution only, because XLA may round differently at different
``vmap`` widths and step-size adaptation amplifies the last bit. A progress bar is updated
from a host callback every few steps; nothing else leaves the device until the run ends.

Compiled programs are cached on the (method, target structure, sizes) so a second call with
the same shapes only runs.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from jaxtyping import Array, PRNGKeyArray

from bayescore.core.checkpoint import open_checkpoint
from bayescore.core.errors import (
    ArgumentError,
    InitializationError,
    NumericalError,
    check_positive_int,
)
from bayescore.core.kernel import Method, as_method
from bayescore.core.prng import unrolled
from bayescore.core.progress import ProgressBar, tick
from bayescore.core.result import Result
from bayescore.core.target import Target, named_leaves

logger = logging.getLogger(__name__)

CHAIN_AXIS = "chain"
DATA_AXIS = "data"

# Scalar info fields of BlackJAX kernels, renamed to ArviZ's sample_stats names.
ARVIZ_NAMES = {
    "is_divergent": "diverging",
    "num_integration_steps": "n_steps",
    "num_trajectory_expansions": "tree_depth",
}


def sample(
    method: Any,
    target: Target,
    *,
    num_samples: int = 1000,
    num_warmup: int = 1000,
    num_chains: int = 4,
    key: PRNGKeyArray | int,
    thin: int = 1,
    progress: bool = True,
    devices: Sequence[jax.Device] | int | str | None = None,
    shard: str = "chains",
    init_params: Mapping[str, Any] | None = None,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int = 1000,
    resume: str | os.PathLike | None = None,
    on_fault: str = "raise",
) -> Result:
    """Draw ``num_samples`` per chain from ``target`` with ``method``.

    Args:
        method: a bayescore method (``bc.inference.nuts()``), a bayescore ``Kernel`` or a
            BlackJAX ``SamplingAlgorithm`` (its warmup steps are plain burn-in).
        target: the :class:`~bayescore.core.target.Target` to sample.
        num_samples: draws kept per chain (after thinning).
        num_warmup: warmup (adaptation) steps per chain, discarded.
        num_chains: independent chains.
        key: a JAX PRNG key (or an integer seed); the same key gives the same draws.
        thin: keep one draw every ``thin`` transitions.
        progress: show a progress bar.
        devices: ``None`` runs every chain on the default device; ``"all"``, a number of
            devices or a list of devices shards the work over them.
        shard: what ``devices`` split: ``"chains"`` (``num_chains`` a multiple of the number
            of devices) or ``"data"`` (data-parallel: the data of each subsampled plate are
            cut into one contiguous block per device, every device runs all chains on its
            block, and the likelihood is summed across devices; plate sizes must be
            multiples of the number of devices and, for stochastic-gradient methods,
            ``num_shards`` too).
        init_params: constrained starting values per latent site, either one value per site
            (shared by all chains) or with a leading ``num_chains`` axis. Default: uniform in
            ``[-2, 2]`` on the unconstrained space, redrawn until finite.
        checkpoint: a folder to write the run to as it goes
            (:class:`~bayescore.core.checkpoint.Checkpoint`): the sampler state and the new
            draws after every ``checkpoint_every`` steps, each file written whole and then
            renamed into place, so a crash loses at most the chunk that was running.
        checkpoint_every: steps per chunk, counted in warmup steps and in kept draws.
        resume: the folder of a checkpointed run with the same arguments: continue it from
            its last chunk (and keep checkpointing there). Step ``t`` of chain ``c`` uses the
            key ``fold_in(chain_key[c], t)`` however the run is cut, so the draws equal those
            of the uninterrupted run.
        on_fault: what to do when a step leaves a NaN or inf anywhere in a chain's state
            (positions, log density, gradient, adaptation state); every draw records it in
            the ``nonfinite`` sample statistic. ``"raise"``: a
            :class:`~bayescore.core.errors.NumericalError` naming the chains and steps, at
            the end of the chunk where it happened (earlier chunks stay checkpointed).
            ``"drop_chain"``: the run goes on and the faulty chains are left out of the
            result (``Result.dropped_chains``; the DataTree keeps the original chain
            numbers as its ``chain`` coordinate). ``"restart_from_last_good"``: the step is
            rejected and the chain goes on from its state before it, so no draw is ever
            non-finite (for Metropolis-adjusted kernels this is a rejection, which keeps
            the target restricted to where its density is finite invariant; for
            unadjusted ones it is a truncation of the region the chain may enter).
            Divergent transitions (``diverging``) are recorded per draw and counted per
            chain in a logged warning.

    Returns:
        A :class:`~bayescore.core.result.Result`; ``result.to_arviz()`` gives the DataTree.

    Raises:
        ArgumentError: a size is not a positive integer, the method is not one, or
            ``checkpoint`` already holds a run (pass ``resume``) or ``resume`` holds none or
            another run's.
        DiscreteLatentError: the model has discrete latent sites.
        InitializationError: no finite starting point.
        NumericalError: with ``on_fault="raise"``, a chain's state became NaN or infinite;
            with ``"drop_chain"``, every chain's did.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> import bayescore as bc
        >>> target = bc.Target.from_logdensity(
        ...     lambda p: -0.5 * jnp.sum(p["x"] ** 2), {"x": jnp.zeros(3)})
        >>> result = bc.sample(bc.inference.nuts(), target, num_samples=100, num_warmup=100,
        ...                    num_chains=2, key=jax.random.key(0), progress=False)
        >>> result.positions["x"].shape, sorted(result.stats)[:3]
        ((2, 100, 3), ['acceptance_rate', 'diverging', 'energy'])
    """
    if not isinstance(target, Target):
        raise ArgumentError(
            f"target must be a bayescore Target, got {type(target).__name__}. Build one with "
            "bc.Target.from_numpyro(model, *args) or bc.Target.from_logdensity(fn, params)."
        )
    num_samples = check_positive_int("num_samples", num_samples)
    num_warmup = check_positive_int("num_warmup", num_warmup, allow_zero=True)
    num_chains = check_positive_int("num_chains", num_chains)
    thin = check_positive_int("thin", thin)
    checkpoint_every = check_positive_int("checkpoint_every", checkpoint_every)
    if on_fault not in FAULT_POLICIES:
        raise ArgumentError(
            f"on_fault must be one of {', '.join(map(repr, FAULT_POLICIES))}, got {on_fault!r}."
        )
    method = as_method(method)
    target.require_continuous(f"{type(method).__name__}")
    key = as_key(key)
    mesh = chain_mesh(devices, num_chains, shard)
    if mesh is not None and shard == "data":
        _check_data_parallel(method, target, mesh.size)

    init_key, state_keys, warmup_keys, sample_keys = run_keys(key, num_chains)
    if init_params is None:
        positions = target.init(init_key, num_chains)
    else:
        positions = _initial_positions(target, init_params, num_chains)
    given = target  # the Result's: the caller's arrays, readable by every process
    if mesh is not None and shard == "data":
        target = shard_data(target, mesh)

    name = getattr(method, "name", type(method).__name__)
    store = open_checkpoint(
        checkpoint,
        resume,
        checkpoint_every,
        ("chain", "draw"),
        method=name,
        num_chains=num_chains,
        num_warmup=num_warmup,
        num_samples=num_samples,
        thin=thin,
        key=np.asarray(jax.random.key_data(key)).tolist(),
        sites={site: list(np.shape(leaf)) for site, leaf in named_leaves(positions)},
    )
    # Without a checkpoint each phase is one chunk: one compiled loop.
    every = checkpoint_every if store else max(num_warmup, num_samples)
    warmup_done = store.warmup_done if store else 0
    draws_done = store.steps_done if store else 0

    def phase(num_steps: int, thin: int, length: int) -> _Phase:
        return _Phase(method, num_warmup, num_steps, thin, bar.every, mesh, length, on_fault)

    warmup_faults = np.zeros(num_chains, dtype=np.int64)

    def check_faults(faults: Any, start: int, stage: str) -> None:
        """Count a chunk's faults per chain; raise for ``on_fault="raise"`` (before the
        chunk is committed, so the checkpoint keeps the run up to the chunk before)."""
        faults = np.asarray(faults)
        if on_fault == "raise" and faults.any():
            raise _fault_error(faults, start, stage)
        if stage == "warmup":
            warmup_faults[:] += faults.sum(axis=1)

    bar = ProgressBar(num_warmup + num_samples * thin, enabled=progress, description=name)
    pieces = [_unflatten_draws(store.load_outputs(), positions)] if draws_done else []
    with bar:
        states = _warmup_init(phase(num_warmup, 1, 0), target, positions, state_keys)
        if draws_done == 0:
            if warmup_done:
                states = store.load_state(states)
            for start, length in _chunks(warmup_done, num_warmup, every):
                states, faults = _warmup_steps(
                    phase(num_warmup, 1, length), target, jnp.int32(start), warmup_keys, states
                )
                check_faults(faults, start, "warmup")
                if store:
                    store.commit(states, warmup_done=start + length)
            carry = _tune(phase(num_samples, thin, 0), target, states)
        else:
            carry = store.load_state(_tune(phase(num_samples, thin, 0), target, states))
        for start, length in _chunks(draws_done, num_samples, every):
            carry, draws, stats = _draw_steps(
                phase(num_samples, thin, length), target, jnp.int32(start), sample_keys, carry
            )
            check_faults(stats["nonfinite"], start, "sampling")
            if store:
                store.commit(carry, outputs=_flatten_draws(draws, stats))
            pieces.append((draws, stats))
        jax.block_until_ready(carry)
    draws = jax.tree.map(lambda *parts: jnp.concatenate(parts, axis=1), *[p[0] for p in pieces])
    stats = {stat: jnp.concatenate([p[1][stat] for p in pieces], axis=1) for stat in pieces[0][1]}
    draws, stats, carry = process_local((draws, stats, carry))
    return _apply_fault_policy(
        Result(positions=draws, stats=stats, parameters=carry[0], target=given, method=name),
        on_fault,
        warmup_faults,
    )


def _fault_error(faults: np.ndarray, start: int, stage: str) -> NumericalError:
    """The error for non-finite states in a chunk: which chains, from which step."""
    chains = np.flatnonzero(faults.any(axis=1))
    first = {int(c): start + int(np.argmax(faults[c])) for c in chains}
    where = ", ".join(f"chain {c} at {stage} step {t}" for c, t in first.items())
    return NumericalError(
        f"A NaN or inf appeared in the sampler state: {where}. The density or its gradient "
        "is not finite somewhere the chains went, or the steps are too large. Use a "
        "smaller step size or a reparameterised model, or pass "
        "on_fault='restart_from_last_good' (reject such steps) or on_fault='drop_chain' "
        "(leave those chains out)."
    )


def _apply_fault_policy(result: Result, on_fault: str, warmup_faults: np.ndarray) -> Result:
    """Drop or report the chains with non-finite states, and warn of divergences."""
    sampling_faults = np.asarray(result.stats["nonfinite"]).sum(axis=1)
    faults = warmup_faults + sampling_faults
    if "diverging" in result.stats:
        divergent = np.asarray(result.stats["diverging"]).sum(axis=1)
        if divergent.any():
            logger.warning(
                "%s divergent transitions after warmup (per chain: %s); the draws near "
                "them may be biased. Raise the target acceptance rate or reparameterise.",
                int(divergent.sum()),
                divergent.tolist(),
            )
    if not faults.any():
        return result
    if on_fault == "restart_from_last_good":
        logger.warning(
            "%d steps left a NaN or inf in the state and were rejected (per chain: %s).",
            int(faults.sum()),
            faults.tolist(),
        )
        return result
    kept = np.flatnonzero(faults == 0)
    dropped = tuple(int(c) for c in np.flatnonzero(faults))
    if kept.size == 0:
        raise NumericalError(
            "Every chain reached a state with a NaN or inf, so on_fault='drop_chain' leaves "
            "nothing. Use a smaller step size or a reparameterised model, or pass "
            "on_fault='restart_from_last_good'."
        )
    logger.warning(
        "Chains %s reached a state with a NaN or inf and are left out of the result.",
        list(dropped),
    )
    take = functools.partial(jnp.take, indices=jnp.asarray(kept), axis=0)
    return dataclasses.replace(
        result,
        positions=jax.tree.map(take, result.positions),
        stats={name: take(value) for name, value in result.stats.items()},
        parameters=jax.tree.map(take, result.parameters),
        dropped_chains=dropped,
    )


def _flatten_draws(draws: Any, stats: Mapping[str, Array]) -> dict[str, Array]:
    """Draws and stats as the named arrays of a checkpoint chunk."""
    named = {f"position_{i}": leaf for i, leaf in enumerate(jax.tree.leaves(draws))}
    return named | {f"stat_{name}": value for name, value in stats.items()}


def _unflatten_draws(named: Mapping[str, Any], positions: Any) -> tuple[Any, dict[str, Array]]:
    """:func:`_flatten_draws`'s inverse; ``positions`` gives the draws' structure."""
    treedef = jax.tree.structure(positions)
    draws = [jnp.asarray(named[f"position_{i}"]) for i in range(treedef.num_leaves)]
    stats = {
        name.removeprefix("stat_"): jnp.asarray(value)
        for name, value in named.items()
        if name.startswith("stat_")
    }
    return jax.tree.unflatten(treedef, draws), stats


def as_key(key: Any) -> PRNGKeyArray:
    """A JAX PRNG key from a key or an integer seed, or an :class:`ArgumentError`.

    Example:
        >>> import jax
        >>> from bayescore.core.driver import as_key
        >>> as_key(0).shape
        ()
    """
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        return jax.random.key(int(key))
    if isinstance(key, jax.Array):
        if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) and key.shape == ():
            return key
        if key.dtype == jnp.uint32 and key.shape == (2,):
            return jax.random.wrap_key_data(key)
    raise ArgumentError(
        f"key must be a single JAX PRNG key or an integer seed, got {key!r}. "
        "Pass key=jax.random.key(0)."
    )


def chain_mesh(devices: Any, num_chains: int, shard: str = "chains") -> Mesh | None:
    """The one-axis device mesh the work is split over, or ``None`` for a single device.

    The axis is named ``"chain"`` or ``"data"`` after ``shard``.

    Example:
        >>> from bayescore.core.driver import chain_mesh
        >>> chain_mesh(None, 4) is None
        True
    """
    if shard not in ("chains", "data"):
        raise ArgumentError(f"shard must be 'chains' or 'data', got {shard!r}.")
    if devices is None:
        return None
    available = jax.devices()
    if isinstance(devices, str):
        if devices != "all":
            raise ArgumentError(f"devices must be 'all', a count or a list, got {devices!r}.")
        chosen = available
    elif isinstance(devices, (int, np.integer)) and not isinstance(devices, bool):
        if not 1 <= devices <= len(available):
            raise ArgumentError(
                f"devices={devices} but {len(available)} device(s) are available "
                f"({available[0].platform}). Pass devices between 1 and {len(available)}."
            )
        chosen = available[: int(devices)]
    else:
        chosen = list(devices)
        if not chosen or not all(isinstance(d, jax.Device) for d in chosen):
            raise ArgumentError(f"devices must list jax.Device objects, got {devices!r}.")
    if len(chosen) == 1:
        return None
    missing = set(range(jax.process_count())) - {d.process_index for d in chosen}
    if missing:
        raise ArgumentError(
            f"devices={devices!r} leaves out every device of process(es) {sorted(missing)} of "
            f"the {jax.process_count()} processes of this run; each process runs the same "
            "program and must own some of the mesh. Pass devices='all'."
        )
    if shard == "data":
        return Mesh(np.asarray(chosen), (DATA_AXIS,))
    if num_chains % len(chosen):
        raise ArgumentError(
            f"num_chains={num_chains} cannot be split evenly over {len(chosen)} devices. "
            f"Use a multiple of {len(chosen)}, e.g. num_chains="
            f"{len(chosen) * math.ceil(num_chains / len(chosen))}, or shard='data'."
        )
    return Mesh(np.asarray(chosen), (CHAIN_AXIS,))


def _check_data_parallel(method: Any, target: Target, num_devices: int) -> None:
    """Raise :class:`ArgumentError` unless ``method`` can run on ``target``'s data shards."""
    target.on_data_shard(DATA_AXIS, num_devices)  # checks the plates
    num_shards = getattr(method, "num_shards", None)
    if num_shards is not None and num_shards % num_devices:
        raise ArgumentError(
            f"num_shards={num_shards} of {getattr(method, 'name', type(method).__name__)} is "
            f"not a multiple of the {num_devices} devices: each device draws the minibatch "
            f"strata of its own block. Pass num_shards={num_devices} (or a multiple); the same "
            "num_shards on one device gives the same result."
        )


def over_data_shards(fn: Any, target: Target, mesh: Mesh) -> Any:
    """``fn(target, *args)`` run data-parallel: each device of ``mesh`` (axis ``"data"``)
    calls ``fn`` with ``target.on_data_shard`` on its block of the data and the same
    ``args``; the result (replicated) is every device's.

    The shard's densities ``psum`` the likelihood over the devices, and ``shard_map``'s
    replication checking makes the gradient of such a sum, taken inside ``fn`` or of the
    returned function, the sum of the devices' gradients. ``bc.sample(shard="data")`` and
    ``bc.fit(devices=...)`` both run through here, inside their compiled loops (called
    outside ``jit``, ``shard_map`` runs operation by operation: slowly).

    Example:
        >>> import jax, jax.numpy as jnp, numpyro, numpyro.distributions as dist
        >>> import bayescore as bc
        >>> from bayescore.core.driver import chain_mesh, over_data_shards
        >>> def model(y):
        ...     mu = numpyro.sample("mu", dist.Normal(0, 1))
        ...     with numpyro.plate("data", len(y), subsample_size=2) as idx:
        ...         numpyro.sample("y", dist.Normal(mu, 1), obs=y[idx])
        >>> target = bc.Target.from_numpyro(model, jnp.arange(4.0))
        >>> mesh = jax.sharding.Mesh(jax.devices()[:1], ("data",))
        >>> logdensity = jax.jit(over_data_shards(lambda t, p: t.logdensity(p), target, mesh))
        >>> bool(jnp.isclose(logdensity({"mu": 0.5}), target.logdensity({"mu": 0.5})))
        True
    """
    arrays, static = eqx.partition(target, eqx.is_array)

    def on_shard(arrays: Any, *args: Any) -> Any:
        return fn(eqx.combine(arrays, static).on_data_shard(DATA_AXIS, mesh.size), *args)

    def run(*args: Any) -> Any:
        sharded = jax.shard_map(
            on_shard,
            mesh=mesh,
            in_specs=(target.data_specs(DATA_AXIS),) + (PartitionSpec(),) * len(args),
            out_specs=PartitionSpec(),
            check_vma=True,
        )
        return sharded(arrays, *args)

    return run


def shard_data(target: Target, mesh: Mesh) -> Target:
    """``target`` with its arrays placed on ``mesh`` once, before a data-parallel run: each
    device holds its block of every subsampled plate's data (``target.data_specs``) and the
    other arrays whole.

    Every process of a multi-process run passes the same full data; each places only its
    own devices' blocks (``jax.make_array_from_callback``), so the Target's arrays become
    global arrays without any transfer between processes.

    Example:
        >>> import jax, jax.numpy as jnp, numpyro, numpyro.distributions as dist
        >>> import bayescore as bc
        >>> from bayescore.core.driver import shard_data
        >>> def model(y):
        ...     mu = numpyro.sample("mu", dist.Normal(0, 1))
        ...     with numpyro.plate("data", len(y), subsample_size=2) as idx:
        ...         numpyro.sample("y", dist.Normal(mu, 1), obs=y[idx])
        >>> target = bc.Target.from_numpyro(model, jnp.arange(4.0))
        >>> mesh = jax.sharding.Mesh(jax.devices()[:1], ("data",))
        >>> shard_data(target, mesh).model_args[0].sharding.spec
        P('data',)
    """
    arrays, static = eqx.partition(target, eqx.is_array)

    def place(leaf: Any, spec: PartitionSpec) -> Array:
        sharding = NamedSharding(mesh, spec)
        if isinstance(leaf, jax.Array) and leaf.sharding == sharding:
            return leaf
        host = np.asarray(leaf)
        return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

    return eqx.combine(jax.tree.map(place, arrays, target.data_specs(DATA_AXIS)), static)


def _spans_processes(mesh: Mesh) -> bool:
    return len({device.process_index for device in mesh.devices.flat}) > 1


def process_local(tree: Any) -> Any:
    """``tree`` with every global array (a multi-process run's) replaced by this process's
    whole copy: a fully replicated array's local shard, any other gathered from all
    processes (then every process must call it). Other leaves are returned as they are.

    Example:
        >>> import jax.numpy as jnp
        >>> from bayescore.core.driver import process_local
        >>> process_local({"x": jnp.ones(2), "n": 3})["x"].shape
        (2,)
    """

    def local(leaf: Any) -> Any:
        if not isinstance(leaf, jax.Array) or leaf.is_fully_addressable:
            return leaf
        if leaf.is_fully_replicated:
            return leaf.addressable_data(0)
        return jnp.asarray(multihost_utils.process_allgather(leaf, tiled=True))

    return jax.tree.map(local, tree)


class _Phase(eqx.Module):
    """The static configuration of one compiled loop (hashable: it keys the jit cache)."""

    method: Any
    num_warmup: int
    num_steps: int  # of the whole phase (for progress); one call runs `length` of them
    thin: int
    progress_every: int
    mesh: Mesh | None
    length: int = 0  # 0: all num_steps in one call
    on_fault: str = "raise"


FAULT_POLICIES = ("raise", "drop_chain", "restart_from_last_good")


def finite_state(state: Any) -> Array:
    """Whether every floating-point leaf of a chain's state is finite (a scalar bool).

    Example:
        >>> import jax.numpy as jnp
        >>> from bayescore.core.driver import finite_state
        >>> bool(finite_state({"x": jnp.ones(3), "lp": jnp.array(-jnp.inf)}))
        False
    """
    finite = jnp.bool_(True)
    for leaf in jax.tree.leaves(state):
        if jnp.issubdtype(jnp.result_type(leaf), jnp.inexact):
            finite &= jnp.all(jnp.isfinite(leaf))
    return finite


def _guarded(step: Any, on_fault: str) -> Any:
    """``step`` that also returns whether its new state has a NaN or inf; with
    ``on_fault="restart_from_last_good"`` such a state is replaced by the state before the
    step (the step is rejected), so the chain carries on from its last finite state."""

    def guarded(key: Array, state: Any) -> tuple[Any, Any, Array]:
        new, info = step(key, state)
        fault = ~finite_state(new)
        if on_fault == "restart_from_last_good":
            new = jax.tree.map(lambda n, o: jnp.where(fault, o, n), new, state)
        return new, info, fault

    return guarded


def _over_chains(phase: _Phase, fn: Any, target: Target, shared: tuple, *chain_args: Any) -> Any:
    """Run ``fn(target, *shared, *chain_args)`` with chain-batched ``chain_args`` (and
    ``shared`` the same for every chain) on one or many devices."""
    arrays, static = eqx.partition(target, eqx.is_array)

    def local(arrays: Any, *args: Any) -> Any:
        return fn(eqx.combine(arrays, static), *args)

    if phase.mesh is None:
        return local(arrays, *shared, *chain_args)
    if phase.mesh.axis_names == (DATA_AXIS,):
        return over_data_shards(fn, target, phase.mesh)(*shared, *chain_args)
    replicated = (PartitionSpec(),) * len(shared)
    chains = PartitionSpec(CHAIN_AXIS)
    sharded = jax.shard_map(
        local,
        mesh=phase.mesh,
        in_specs=(PartitionSpec(), *replicated) + (chains,) * len(chain_args),
        out_specs=chains,
        check_vma=False,
    )
    out = sharded(arrays, *shared, *chain_args)
    if _spans_processes(phase.mesh):
        # Every process reads the whole result: gather the chains onto every device.
        out = jax.lax.with_sharding_constraint(out, NamedSharding(phase.mesh, PartitionSpec()))
    return out


def _scan_steps(
    phase: _Phase,
    transition: Any,
    chain_keys: Array,
    carry: Any,
    start: Array,
    progress_offset: int,
) -> tuple[Any, Any]:
    """``lax.scan`` of a chain-vmapped transition over steps ``start, ..., start + length - 1``
    of the phase; outputs stacked as (chain, step, ...)."""
    on_first_device = phase.mesh is None

    over_chains = _vmap_chains(transition, chain_keys.shape[0])
    chain_keys = unrolled(chain_keys)  # the same draws, hashed without JAX's rolled CPU loop

    def body(carry: Any, step: Array) -> tuple[Any, Any]:
        keys = jax.vmap(jax.random.fold_in, (0, None))(chain_keys, step)
        carry, out = over_chains(keys, carry)
        if phase.progress_every:
            first = on_first_device or jax.lax.axis_index(phase.mesh.axis_names[0]) == 0
            tick(step, phase.progress_every, phase.num_steps, progress_offset, phase.thin, first)
        return carry, out

    length = phase.length or phase.num_steps
    carry, outs = jax.lax.scan(body, carry, start + jnp.arange(length))
    return carry, jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), outs)


def _vmap_chains(fn: Any, num_chains: int) -> Any:
    """``jax.vmap(fn)``, or ``fn`` on the squeezed chain axis when there is one chain.

    A single chain skips the batching: a vmapped gather of minibatch rows and the batched
    matrix products after it run about 15 % slower on CPU than their unbatched forms.
    """
    if num_chains != 1:
        return jax.vmap(fn)

    def single(*args: Any) -> Any:
        out = fn(*jax.tree.map(lambda x: x[0], args))
        return jax.tree.map(lambda x: jnp.expand_dims(x, 0), out)

    return single


@eqx.filter_jit
def _warmup_init(phase: _Phase, target: Target, positions: Any, init_keys: Array) -> Any:
    def run(target: Target, positions: Any, init_keys: Array) -> Any:
        return jax.vmap(phase.method.warmup(target, phase.num_warmup).init)(positions, init_keys)

    return _over_chains(phase, run, target, (), positions, init_keys)


@eqx.filter_jit
def _warmup_steps(
    phase: _Phase, target: Target, start: Array, chain_keys: Array, states: Any
) -> Any:
    """Warmup steps ``start, ..., start + phase.length - 1``: the states after them, and
    whether each step left a NaN or inf in the state, ``(chain, step)``."""

    def run(target: Target, start: Array, chain_keys: Array, states: Any) -> Any:
        step = _guarded(phase.method.warmup(target, phase.num_warmup).step, phase.on_fault)

        def transition(key: Array, state: Any) -> tuple[Any, Array]:
            state, _, fault = step(key, state)
            return state, fault

        return _scan_steps(phase, transition, chain_keys, states, start, 0)

    return _over_chains(phase, run, target, (start,), chain_keys, states)


@eqx.filter_jit
def _tune(phase: _Phase, target: Target, warmup_states: Any) -> Any:
    """``(parameters, states)`` per chain: what warmup tuned, and the chains' states."""

    def run(target: Target, warmup_states: Any) -> Any:
        return jax.vmap(functools.partial(phase.method.tune, target))(warmup_states)

    return _over_chains(phase, run, target, (), warmup_states)


@eqx.filter_jit
def _draw_steps(phase: _Phase, target: Target, start: Array, chain_keys: Array, carry: Any) -> Any:
    """Draws ``start, ..., start + phase.length - 1`` from ``carry = (parameters, states)``:
    the new carry, the draws and their statistics, each ``(chain, draw, ...)``."""
    method: Method = phase.method

    def run(target: Target, start: Array, chain_keys: Array, carry: Any) -> Any:
        def transition(key: Array, carry: tuple) -> tuple:
            parameters, state = carry
            step = _guarded(method.kernel(target, parameters).step, phase.on_fault)
            if phase.thin == 1:
                state, info, fault = step(key, state)
            else:

                def thinned(s: Any, k: Array) -> tuple:
                    s, info, fault = step(k, s)
                    return s, (info, fault)

                state, (infos, faults) = jax.lax.scan(
                    thinned, state, jax.random.split(key, phase.thin)
                )
                info, fault = jax.tree.map(lambda x: x[-1], infos), jnp.any(faults)
            stats = sample_stats(target, state, info) | {"nonfinite": fault}
            return (parameters, state), (state.position, stats)

        carry, (draws, stats) = _scan_steps(
            phase, transition, chain_keys, carry, start, phase.num_warmup
        )
        return carry, draws, stats

    return _over_chains(phase, run, target, (start,), chain_keys, carry)


def _warmup(
    phase: _Phase, target: Target, chain_keys: Array, positions: Any, init_keys: Array
) -> Any:
    """The whole warmup phase in one call: the chains' warmup states after it."""
    states = _warmup_init(phase, target, positions, init_keys)
    if phase.num_steps == 0:
        return states
    return _warmup_steps(phase, target, jnp.int32(0), chain_keys, states)[0]


def _draw(phase: _Phase, target: Target, chain_keys: Array, warmup_states: Any) -> Any:
    """Tune, then the whole sampling phase in one call: ``(parameters, draws, stats)``."""
    carry = _tune(phase, target, warmup_states)
    (parameters, _), draws, stats = _draw_steps(phase, target, jnp.int32(0), chain_keys, carry)
    return parameters, draws, stats


def _chunks(done: int, total: int, every: int) -> list[tuple[int, int]]:
    """``(start, length)`` of the chunks that take a phase from ``done`` to ``total`` steps."""
    return [(start, min(every, total - start)) for start in range(done, total, every)]


def run_keys(key: PRNGKeyArray, num_chains: int) -> tuple[Array, Array, Array, Array]:
    """The keys of one ``bc.sample`` run: ``(init_key, state_keys, warmup_keys, sample_keys)``.

    ``init_key`` draws the initial positions; the others are per chain, shape ``(num_chains,)``:
    ``state_keys`` for the kernels' ``init``, ``warmup_keys`` and ``sample_keys`` are the chain
    keys of the two phases (step ``t`` uses ``fold_in(chain_key, t)``). Exposed so that
    benchmarks and tests can replay a run by hand.

    Example:
        >>> import jax
        >>> from bayescore.core.driver import run_keys
        >>> [k.shape for k in run_keys(jax.random.key(0), 4)]
        [(), (4,), (4,), (4,)]
    """
    init_key, state_key, warmup_key, sample_key = jax.random.split(key, 4)
    return (
        init_key,
        jax.random.split(state_key, num_chains),
        jax.random.split(warmup_key, num_chains),
        jax.random.split(sample_key, num_chains),
    )


def sample_stats(target: Target, state: Any, info: Any) -> dict[str, Array]:
    """Per-draw statistics for ArviZ: ``lp`` and the scalar fields of ``info``.

    BlackJAX's names are mapped to ArviZ's (``is_divergent`` → ``diverging``,
    ``num_integration_steps`` → ``n_steps``, ``num_trajectory_expansions`` → ``tree_depth``).

    Example:
        >>> import blackjax, jax, jax.numpy as jnp
        >>> import bayescore as bc
        >>> target = bc.Target.from_logdensity(lambda p: -p["x"] ** 2, {"x": 0.0})
        >>> mala = blackjax.mala(target.logdensity, step_size=0.5)
        >>> state, info = mala.step(jax.random.key(0), mala.init({"x": 1.0}))
        >>> sorted(sample_stats(target, state, info))
        ['acceptance_rate', 'is_accepted', 'lp']
    """
    logdensity = getattr(state, "logdensity", None)
    if logdensity is None and hasattr(info, "lp_estimate"):
        # Stochastic-gradient kernels report their minibatch estimate; a full-data
        # evaluation per draw would cost more than the step itself.
        stats = {}
    else:
        stats = {"lp": target.logdensity(state.position) if logdensity is None else logdensity}
    fields = info._asdict() if hasattr(info, "_asdict") else {}
    for name, value in fields.items():
        if isinstance(value, (jax.Array, np.ndarray, float, int, bool)) and jnp.ndim(value) == 0:
            stats[ARVIZ_NAMES.get(name, name)] = jnp.asarray(value)
    return stats


def _initial_positions(target: Target, init_params: Mapping[str, Any], num_chains: int) -> Any:
    values = jax.tree.map(jnp.asarray, init_params)
    if target.density_fn is None:
        missing = [site.name for site in target.latent if site.name not in values]
        if missing:
            raise ArgumentError(
                f"init_params has no value for latent site(s) {missing}. Give a value for "
                f"each of {[site.name for site in target.latent]}."
            )
        shapes = {site.name: site.shape for site in target.latent}
        per_chain = {name: jnp.ndim(values[name]) > len(shapes[name]) for name in shapes}
        values = {
            name: values[name]
            if per_chain[name]
            else jnp.broadcast_to(values[name], (num_chains, *shapes[name]))
            for name in shapes
        }
    else:
        example = target.example_params.tree
        values = jax.tree.map(
            lambda v, e: (
                v if jnp.ndim(v) > len(e.shape) else jnp.broadcast_to(v, (num_chains, *e.shape))
            ),
            values,
            example,
        )
    for leaf in jax.tree.leaves(values):
        if leaf.shape[0] != num_chains:
            raise ArgumentError(
                f"init_params has a leading axis of {leaf.shape[0]} but num_chains="
                f"{num_chains}. Give one value per site, or one per chain."
            )
    positions, finite = _unconstrain_and_check(target, values)
    for name, leaf in named_leaves(positions):
        if not np.all(np.isfinite(np.asarray(leaf))):
            raise InitializationError(
                f"init_params['{name}'] lies outside the support of site '{name}' (its "
                "unconstrained value is not finite). Pass a value inside the support."
            )
    finite = np.asarray(finite)
    if not finite.all():
        chain = int(np.argmin(finite))
        bad = jax.tree.map(lambda leaf: leaf[chain], positions)
        raise InitializationError(
            f"init_params gives a non-finite log density or gradient for chain {chain}. "
            f"{target.explain_nonfinite(bad)} Move the starting values inside the support."
        )
    return positions


@eqx.filter_jit
def _unconstrain_and_check(target: Target, values: Any) -> tuple[Any, Array]:
    """Unconstrained starting positions per chain, and whether density and gradient are finite."""
    positions = jax.vmap(target.unconstrain)(values)
    logdensity, grad = jax.vmap(target.logdensity_and_grad)(positions)
    finite = jnp.isfinite(logdensity)
    for leaf in jax.tree.leaves(grad):
        finite &= jnp.all(jnp.isfinite(leaf.reshape(leaf.shape[0], -1)), axis=1)
    return positions, finite
