r"""The key tree: one JAX key per address, so a program's random choices do not depend on the
order in which its sites run.

A site at address :math:`a` (a string, or a tuple of strings, integers and nested tuples such as
``("f", 3, "y")``) draws with the key

.. math::

    k_a = \mathrm{fold\_in}(k, h_0(a)), \qquad h_0(a) = \text{the first 32 bits of
    BLAKE2b}(\mathrm{repr}(\bar a)),

with :math:`\bar a` the address in canonical form (NumPy and JAX scalars become Python
numbers). Adding a site leaves every other site's key unchanged; this is the JAX form of
LazyPPL's tree of uniforms, with no hidden state (NumPyro's ``seed`` splits keys in execution
order instead).
"""

from __future__ import annotations

import functools
import hashlib
from typing import Any

import jax
import numpy as np
from jaxtyping import PRNGKeyArray

from bayescore.core.errors import ArgumentError

Address = str | tuple


def canonical(part: Any) -> Any:
    """The hashable, ``repr``-stable form of an address part or a memoized argument.

    Scalars of NumPy or JAX become Python numbers, arrays become nested tuples, lists become
    tuples; anything else unhashable raises :class:`~bayescore.core.errors.ArgumentError`.

    Example:
        >>> import jax.numpy as jnp
        >>> canonical(("f", jnp.int32(3), [1, 2]))
        ('f', 3, (1, 2))
    """
    if isinstance(part, str | int | float | bool | type(None)):
        return part
    if isinstance(part, tuple | list):
        return tuple(canonical(item) for item in part)
    if isinstance(part, np.ndarray | np.generic | jax.Array):
        array = np.asarray(part)
        return array.item() if array.ndim == 0 else canonical(array.tolist())
    try:
        hash(part)
    except TypeError:
        raise ArgumentError(
            f"address part {part!r} is not hashable: expected a string, a number, an array or "
            f"a tuple of them, found {type(part).__name__}. Pass a hashable name or argument."
        ) from None
    return part


def join(prefix: tuple, address: Address) -> Address:
    """The address of ``address`` inside the scope ``prefix``; a lone name stays a string.

    Example:
        >>> join(("f", 3), "y"), join((), "y"), join(("smc",), ("f", 0, "y"))
        (('f', 3, 'y'), 'y', ('smc', 'f', 0, 'y'))
    """
    full = prefix + (address if isinstance(address, tuple) else (address,))
    return full[0] if len(full) == 1 and isinstance(full[0], str) else full


@functools.lru_cache(maxsize=65536)
def _hash32(address: Address) -> int:
    digest = hashlib.blake2b(repr(address).encode(), digest_size=4).digest()
    return int.from_bytes(digest, "little")


def address_hash(address: Address) -> int:
    """The 32-bit hash :math:`h_0(a)` of an address, stable across runs and processes.

    Example:
        >>> address_hash(("f", 3, "y")) == address_hash(("f", 3, "y"))
        True
    """
    return _hash32(canonical(address))


def key_at(key: PRNGKeyArray, address: Address) -> PRNGKeyArray:
    """The key of the site at ``address``: ``fold_in(key, h_0(address))``.

    Example:
        >>> import jax
        >>> key = jax.random.key(0)
        >>> bool((jax.random.key_data(key_at(key, "x")) == jax.random.key_data(
        ...     key_at(key, "x"))).all())
        True
    """
    return jax.random.fold_in(key, address_hash(address))
