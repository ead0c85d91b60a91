"""The unrolled Threefry keys draw exactly the bits that JAX's own Threefry keys draw, and the
compiled loops that use them (bc.fit, bc.sample) see the original keys' draws."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from bayescore.core.optimise import optimise
from bayescore.core.prng import threefry_2x32, unrolled

DRAWS = {
    "normal": lambda key, shape: jax.random.normal(key, shape),
    "uniform": lambda key, shape: jax.random.uniform(key, shape),
    "bits8": lambda key, shape: jax.random.bits(key, shape, jnp.uint8),
    "bits16": lambda key, shape: jax.random.bits(key, shape, jnp.uint16),
    "bits32": lambda key, shape: jax.random.bits(key, shape, jnp.uint32),
    "randint": lambda key, shape: jax.random.randint(key, shape, -50, 50),
    "gamma": lambda key, shape: jax.random.gamma(key, 2.5, shape),
    "split": lambda key, shape: jax.random.key_data(jax.random.split(key, shape)),
    "fold_in": lambda key, shape: jax.random.key_data(
        jax.vmap(jax.random.fold_in, (None, 0))(key, jnp.arange(max(1, int(np.prod(shape)))))
    ),
    "permutation": lambda key, shape: jax.random.permutation(key, 17),
}


@pytest.mark.parametrize("draw", sorted(DRAWS))
def test_unrolled_keys_draw_the_bits_of_threefry_keys(draw):
    fn = DRAWS[draw]
    for seed, shape in [(0, ()), (2**32 - 1, (3,)), (12345, (2, 5, 1))]:
        key = jax.random.key(seed)
        eager = np.asarray(fn(unrolled(key), shape))
        np.testing.assert_array_equal(eager, np.asarray(fn(key, shape)))
        if shape != (3,):
            continue
        # compiled, the key rewrapped inside the program as the loops do (one case: each
        # compile costs seconds)
        compiled = jax.jit(lambda k, shape=shape: fn(unrolled(k), shape))(key)
        original = jax.jit(lambda k, shape=shape: fn(k, shape))(key)
        if jnp.issubdtype(original.dtype, jnp.floating):
            # the same bits; XLA fuses their float transform (gamma's rejection loop) with
            # other neighbours in the two programs, which may round the last place apart
            np.testing.assert_array_max_ulp(np.asarray(compiled), np.asarray(original), 4)
        else:
            np.testing.assert_array_equal(np.asarray(compiled), np.asarray(original))


def test_batched_keys_and_derived_keys_stay_identical():
    keys = jax.random.split(jax.random.key(3), 4)
    step = jnp.int32(12345)

    def chain(keys):
        keys = jax.vmap(jax.random.fold_in, (0, None))(keys, step)
        first, second = jax.vmap(jax.random.split)(keys).T
        return jax.vmap(lambda a, b: jax.random.normal(a, (3,)) + jax.random.uniform(b))(
            first, second
        )

    np.testing.assert_array_equal(np.asarray(chain(unrolled(keys))), np.asarray(chain(keys)))


def test_hash_is_threefry_on_the_random123_known_answers():
    # Salmon et al. (2011), Random123's known-answer vectors for Threefry-2x32, 20 rounds
    cases = [
        ((0, 0), (0, 0), (0x6B200159, 0x99BA4EFE)),
        ((0xFFFFFFFF, 0xFFFFFFFF), (0xFFFFFFFF, 0xFFFFFFFF), (0x1CB996FC, 0xBB002BE7)),
        ((0x13198A2E, 0x03707344), (0x243F6A88, 0x85A308D3), (0xC4923A9C, 0x483DF7A0)),
    ]
    for key, count, expected in cases:
        words = [np.array([v], np.uint32) for v in (*key, *count)]
        got = tuple(int(v[0]) for v in threefry_2x32(*words))
        assert got == expected


def test_other_implementations_are_left_alone():
    key = jax.random.key(0, impl="rbg")
    assert unrolled(key) is key


def test_partitionable_off_leaves_keys_alone():
    key = jax.random.key(0)
    with jax.threefry_partitionable(False):
        assert unrolled(key) is key


def test_optimise_draws_what_the_original_key_draws():
    """``optimise`` hashes with the unrolled key: step ``t`` sees ``fold_in(key, t)``'s draw."""
    key = jax.random.key(11)

    def loss(params, key):
        return jnp.sum(params**2), jax.random.normal(key)

    _, _, draws = optimise(loss, jnp.ones(2), optax.sgd(0.1), key, 5, progress=False)
    expected = [jax.random.normal(jax.random.fold_in(key, t)) for t in range(5)]
    np.testing.assert_array_equal(np.asarray(draws), np.asarray(expected))
