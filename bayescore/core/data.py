r"""Epoch-wise minibatches drawn on the device, inside ``lax.scan``, in O(batch) per step.

Stochastic-gradient samplers visit the data in epochs: each epoch is a fresh random permutation
of the ``N`` indices, cut into ``N // B`` batches of ``B``. Materialising the permutation costs
O(N) memory per chain and a sort per epoch, and under ``vmap`` a ``lax.cond`` that would redraw
it only at epoch starts becomes a select that redraws it at every step. Here the permutation is
never stored: the ``i``-th index of epoch ``e`` is :math:`\pi_e(i)`, where :math:`\pi_e` is a
keyed Feistel network (a pseudorandom permutation, Luby & Rackoff 1988) on :math:`[0, ab)`,
:math:`ab \ge N` the closest product of two near-square radices (Black & Rogaway's mixed-radix
FE2, 2002), restricted to :math:`[0, N)` by cycle walking (apply :math:`\pi_e` again until the
value falls below ``N``; rare, since :math:`ab - N` is small). Batch ``j`` of epoch ``e`` is
:math:`\pi_e(jB), \dots, \pi_e(jB + B - 1)`: every step costs O(B) integer operations, the
state is a key and a step counter, and within an epoch no index repeats. Each index is equally
likely at each step, so the ``N / B``-scaled minibatch log density is unbiased; over an epoch
(``B`` dividing ``N``) the batches cover every index exactly once. The last ``N mod B``
positions of each permutation are skipped.

``num_shards`` stratifies the batch for data-parallel runs: the data are cut into
``num_shards`` contiguous blocks of ``N / num_shards``, and each block contributes its own
epoch-wise batch of ``B / num_shards`` from its own permutation. The indices depend on
``num_shards``, not on how many devices run them, so one device reproduces a sharded run.

Written by hand: neither JAX nor NumPyro has a stateless permutation sampler.

Example:
    >>> import jax, numpy as np
    >>> from bayescore.core.data import minibatch_indices
    >>> key = jax.random.key(0)
    >>> epoch = np.concatenate([np.asarray(minibatch_indices(key, t, 10, 5)) for t in (0, 1)])
    >>> sorted(epoch.tolist()) == list(range(10))
    True
"""

from __future__ import annotations

import math
import zlib
from typing import Any

import jax
import jax.numpy as jnp
from jaxtyping import Array, PRNGKeyArray

from bayescore.core.errors import ArgumentError

ROUNDS = 6  # Feistel rounds (4 already give a strong pseudorandom permutation)


def _mix(x: Array, key: Array) -> Array:
    """A 32-bit integer hash of ``x`` keyed by ``key`` (murmur3's finaliser)."""
    x = x ^ key
    x = x * jnp.uint32(0x85EBCA6B)
    x = x ^ (x >> 13)
    x = x * jnp.uint32(0xC2B2AE35)
    return x ^ (x >> 16)


def _radices(num_data: int) -> tuple[int, int]:
    """``(a, b)`` with ``a * b >= num_data`` as small as possible, ``a <= b <= 4a`` roughly.

    The Feistel network runs on ``[0, a*b)``; cycle walking repeats it for the ``a*b - N``
    values past the end, so the closest product makes walks rare (often none at all).
    """
    root = math.isqrt(num_data - 1) + 1  # ceil(sqrt(N))
    best = (root, root)
    for a in range(root, max(2, (root + 1) // 2) - 1, -1):
        b = -(-num_data // a)
        if a * b < best[0] * best[1]:
            best = (a, b)
    return best


def _feistel(x: Array, round_keys: Array, radices: tuple[int, int]) -> Array:
    """The keyed Feistel permutation of ``[0, a*b)`` on mixed radices (Black & Rogaway's FE2).

    ``x = L b + R`` with ``L < a``, ``R < b``; a round maps ``(L, R)`` to ``(R, (L + F(R)) mod
    a)``, so the halves swap radices each round, and an even number of rounds returns to
    ``(L, R)`` in ``(Z_a, Z_b)``.
    """
    a, b = radices
    left, right = x // jnp.uint32(b), x % jnp.uint32(b)
    for r in range(ROUNDS):
        size = jnp.uint32(a if r % 2 == 0 else b)  # the radix of ``left`` in this round
        left, right = right, (left + _mix(right, round_keys[r]) % size) % size
    return left * jnp.uint32(b) + right


def permute(key: PRNGKeyArray, positions: Array, num_data: int) -> Array:
    """``π(positions)`` for the random permutation ``π`` of ``range(num_data)`` named by ``key``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from bayescore.core.data import permute
        >>> values = permute(jax.random.key(1), jnp.arange(7), 7)
        >>> sorted(values.tolist())
        [0, 1, 2, 3, 4, 5, 6]
    """
    if num_data <= 1:
        return jnp.zeros(jnp.shape(positions), jnp.int32)
    radices = _radices(num_data)
    round_keys = jax.random.bits(key, (ROUNDS,), jnp.uint32)
    x = _feistel(jnp.ravel(jnp.asarray(positions)).astype(jnp.uint32), round_keys, radices)
    if radices[0] * radices[1] > num_data:  # cycle-walk the values past the end
        x = jax.lax.while_loop(
            lambda x: jnp.any(x >= num_data),
            lambda x: jnp.where(x >= num_data, _feistel(x, round_keys, radices), x),
            x,
        )
    return x.astype(jnp.int32).reshape(jnp.shape(positions))


def check_batching(num_data: int, batch_size: int, num_shards: int = 1, what: str = "") -> None:
    """Raise :class:`ArgumentError` unless the sizes allow epoch-wise (sharded) batches."""
    where = f" of {what}" if what else ""
    if batch_size < 1 or batch_size > num_data:
        raise ArgumentError(
            f"batch size{where} must be in [1, {num_data}], got {batch_size}. Set the plate's "
            "subsample_size accordingly."
        )
    if num_shards < 1:
        raise ArgumentError(f"num_shards must be a positive integer, got {num_shards}.")
    if num_data % num_shards or batch_size % num_shards:
        raise ArgumentError(
            f"data size {num_data} and batch size {batch_size}{where} must both be divisible "
            f"by num_shards={num_shards}: each shard holds N / num_shards rows and draws "
            "B / num_shards of them per step. Pad or trim the data, or change the batch size."
        )


def minibatch_indices(
    key: PRNGKeyArray, step: Any, num_data: int, batch_size: int, num_shards: int = 1
) -> Array:
    """The ``batch_size`` indices of step ``step`` (traced) of the epoch-wise stream ``key``.

    Shard ``s`` of ``num_shards`` draws ``batch_size / num_shards`` indices from its own block
    ``[s N/S, (s+1) N/S)``; the result lists them shard by shard.

    Example:
        >>> import jax
        >>> from bayescore.core.data import minibatch_indices
        >>> minibatch_indices(jax.random.key(0), 3, 100, 8, num_shards=2).shape
        (8,)
    """
    check_batching(num_data, batch_size, num_shards)
    shard_size, shard_batch = num_data // num_shards, batch_size // num_shards
    batches_per_epoch = shard_size // shard_batch
    step = jnp.asarray(step, jnp.int32)
    epoch, within = step // batches_per_epoch, step % batches_per_epoch
    positions = within * shard_batch + jnp.arange(shard_batch, dtype=jnp.int32)

    def shard(s: Array) -> Array:
        epoch_key = jax.random.fold_in(jax.random.fold_in(key, s), epoch)
        return s * shard_size + permute(epoch_key, positions, shard_size)

    return jax.vmap(shard)(jnp.arange(num_shards, dtype=jnp.int32)).reshape(batch_size)


def plate_key(key: PRNGKeyArray, name: str) -> PRNGKeyArray:
    """The stream key of the plate called ``name`` (stable under adding other plates)."""
    return jax.random.fold_in(key, zlib.crc32(name.encode()) & 0x7FFFFFFF)


def target_batch(
    target: Any, key: PRNGKeyArray, step: Any, num_shards: int = 1
) -> dict[str, Array]:
    """Indices of step ``step`` for every subsampled plate of ``target`` (``{}`` if none).

    Example:
        >>> import jax, jax.numpy as jnp, numpyro, numpyro.distributions as dist
        >>> import bayescore as bc
        >>> from bayescore.core.data import target_batch
        >>> def model(y):
        ...     mu = numpyro.sample("mu", dist.Normal(0, 1))
        ...     with numpyro.plate("data", len(y), subsample_size=2) as idx:
        ...         numpyro.sample("y", dist.Normal(mu, 1), obs=y[idx])
        >>> target = bc.Target.from_numpyro(model, jnp.arange(4.0))
        >>> target_batch(target, jax.random.key(0), 0)["data"].shape
        (2,)
    """
    return {
        plate.name: minibatch_indices(
            plate_key(key, plate.name), step, plate.size, plate.subsample_size, num_shards
        )
        for plate in target.subsample_plates
    }


__all__ = ["check_batching", "minibatch_indices", "permute", "plate_key", "target_batch"]
