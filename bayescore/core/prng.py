"""JAX's default PRNG with its hash unrolled, for the keys that compiled loops draw from.

JAX lowers the Threefry-2x32 hash on CPU as a five-iteration ``while`` loop (to keep
compile times down), and XLA runs each of those loops as a separate sequence of small
kernels. A compiled step that derives its key (``fold_in``), splits it per draw and then
draws runs three such loops, whose fixed cost is a third of a variational step of a small
flow on CPU. On other backends JAX already emits the unrolled form.

:func:`unrolled` rewraps a Threefry key in a PRNG implementation whose key derivation
(``split`` and ``fold_in`` of JAX's partitionable Threefry, its default) computes the same
hash written with ``jax.numpy``, so it lowers unrolled; its ``random_bits`` is JAX's own.
The keys and the random bits are the original key's, only faster to reach (a float
computed from them inside a larger compiled program, such as a gamma variate's rejection
loop, may be fused differently and round apart in the last place). :func:`optimise
<bayescore.core.optimise.optimise>` and the sampling driver apply it to the keys inside
their compiled loops. Written here: JAX exposes no switch for its CPU lowering.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.random import define_prng_impl, threefry_prng_impl
from jaxtyping import Array, PRNGKeyArray

_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_PARITY = np.uint32(0x1BD11BDA)


def threefry_2x32(k1: Array, k2: Array, x1: Array, x2: Array) -> tuple[Array, Array]:
    """The Threefry-2x32 hash (20 rounds) of the counter pairs ``(x1, x2)`` under the key
    ``(k1, k2)``, all ``uint32``: the function of ``jax.extend.random.threefry_2x32``,
    unrolled.

    Example:
        >>> import numpy as np
        >>> from bayescore.core.prng import threefry_2x32
        >>> zero = np.zeros(1, np.uint32)
        >>> [hex(int(v[0])) for v in threefry_2x32(zero, zero, zero, zero)]  # known answer
        ['0x6b200159', '0x99ba4efe']
    """
    keys = (k1, k2, k1 ^ k2 ^ _PARITY)
    x1, x2 = x1 + keys[0], x2 + keys[1]
    for i in range(5):
        for rotation in _ROTATIONS[i % 2]:
            x1 = x1 + x2
            x2 = (x2 << np.uint32(rotation)) | (x2 >> np.uint32(32 - rotation))
            x2 = x1 ^ x2
        x1 = x1 + keys[(i + 1) % 3]
        x2 = x2 + keys[(i + 2) % 3] + np.uint32(i + 1)
    return x1, x2


def _counters(shape: tuple[int, ...]) -> tuple[Array, Array]:
    """The high and low words of the row-major index of every element of ``shape`` (fewer
    than 2**32 elements: the high words are zero)."""
    low = jnp.arange(int(np.prod(shape, dtype=np.int64)), dtype=jnp.uint32).reshape(shape)
    return jnp.zeros_like(low), low


def _seed(seed: Array) -> Array:
    return jax.random.key_data(jax.random.key(seed))


def _split(key: Array, shape: tuple[int, ...]) -> Array:
    if int(np.prod(shape, dtype=np.int64)) >= 2**32:  # counters need a high word: JAX's own
        return threefry_prng_impl.split(key, shape)
    first, second = threefry_2x32(key[0], key[1], *_counters(shape))
    return jnp.stack([first, second], axis=first.ndim)


def _fold_in(key: Array, data: Array) -> Array:
    # JAX's threefry_seed of a uint32: high word 0, low word the data
    data = jnp.asarray(data, jnp.uint32).reshape(1)
    first, second = threefry_2x32(key[0], key[1], jnp.zeros_like(data), data)
    return jnp.concatenate([first, second])


def _random_bits(key: Array, bit_width: int, shape: tuple[int, ...]) -> Array:
    # JAX's own, rolled loop and all: it materialises the bits once. Unrolled, XLA fuses the
    # 20 rounds into every consumer of the draws (each fusion of a step's forward and
    # backward pass that reads them), which costs more than the loop.
    return threefry_prng_impl.random_bits(key, bit_width, shape)


_IMPL = define_prng_impl(
    key_shape=(2,),
    seed=_seed,
    split=_split,
    random_bits=_random_bits,
    fold_in=_fold_in,
    name="threefry2x32_unrolled",
    tag="bcfry",
)


def unrolled(keys: PRNGKeyArray) -> PRNGKeyArray:
    """``keys`` (of any shape) with ``split`` and ``fold_in`` unrolled when they are JAX's
    default Threefry keys and JAX derives them partitionably (its default); other keys as
    they are.

    The new keys give the old ones' random bits (and hence their draws, to the rounding of
    the program that transforms the bits).

    Example:
        >>> import jax
        >>> from bayescore.core.prng import unrolled
        >>> key = jax.random.key(0)
        >>> bool((jax.random.normal(unrolled(key), (3,)) == jax.random.normal(key, (3,))).all())
        True
    """
    threefry = str(jax.random.key_impl(keys)) == "threefry2x32"
    if not (threefry and jax.config.jax_threefry_partitionable):
        return keys
    return jax.random.wrap_key_data(jax.random.key_data(keys), impl=_IMPL)


__all__ = ["threefry_2x32", "unrolled"]
