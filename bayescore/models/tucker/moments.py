r"""Per-index sums of Kronecker (or Hadamard) products of per-entry moments, chunked.

Conditional EP for a functional Tucker model needs, for every unique index value :math:`s`
of a mode, sums over the entries :math:`n` that share it of Kronecker products of the other
modes' moments,

.. math::

    \sum_{n:\,i^n_k = s} w_n \bigotimes_{j} M_j(n) \quad (M_j(n) \in \mathbb R^{r_j\times r_j}
    \text{ or } \mathbb R^{r_j}),

(Fang et al. 2024, "Functional Bayesian Tucker Decomposition for Continuous-indexed Tensor
Data", ICLR, §4.2: the messages of entries sharing an index value add up). The per-entry
products are formed a chunk of entries at a time inside ``lax.scan`` and summed into their
segments with ``jax.ops.segment_sum``, so memory is ``chunk_size`` products plus the
``num_segments`` sums, never one product per entry.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int

# Default elements (floats) of per-entry products held at once: 2**22 doubles = 32 MiB.
CHUNK_ELEMENTS = 2**22


def aggregate_first(num_segments: int, aggregate_size: int, num_entries: int, size: int) -> bool:
    """Whether ``num_segments`` sums of ``aggregate_size`` floats fit in ``O(N R^K)`` memory.

    Summing products per segment before contracting them costs fewer operations when
    segments are few (many entries share an index value); when they are many, contracting
    each chunk first keeps memory within ``max(CHUNK_ELEMENTS, num_entries * size)``.

    Example:
        >>> from bayescore.models.tucker.moments import aggregate_first
        >>> aggregate_first(100, 49**2, 13_000, 343), aggregate_first(13_000, 49**2, 13_000, 343)
        (True, False)
    """
    return num_segments * aggregate_size <= max(CHUNK_ELEMENTS, num_entries * size)


def chunk_size_for(num_entries: int, product_size: int, budget: int = CHUNK_ELEMENTS) -> int:
    """Entries per chunk so that a chunk of products of ``product_size`` floats fits ``budget``.

    Example:
        >>> from bayescore.models.tucker.moments import chunk_size_for
        >>> chunk_size_for(10_000, 343**2, budget=2**22)
        35
    """
    return int(max(1, min(num_entries, budget // max(1, product_size))))


def _kron_rows(factors: Sequence[Array], hadamard: bool) -> Array:
    """Per-row Kronecker (or Hadamard) product of ``(n, r)`` vectors or ``(n, r, r)`` matrices."""
    result = factors[0]
    for factor in factors[1:]:
        if hadamard:
            result = result * factor
        elif result.ndim == 2:
            result = (result[:, :, None] * factor[:, None, :]).reshape(result.shape[0], -1)
        else:
            n, a, b = result.shape
            _, c, d = factor.shape
            result = (result[:, :, None, :, None] * factor[:, None, :, None, :]).reshape(
                n, a * c, b * d
            )
    return result


def segment_kron_sum(
    factors: Sequence[Float[Array, "entry ..."]],
    segment_ids: Int[Array, " entry"],
    num_segments: int,
    *,
    weights: Float[Array, " entry"] | None = None,
    hadamard: bool = False,
    chunk_size: int | None = None,
    transform: Callable[[Array], Array] | None = None,
) -> Float[Array, "segment ..."]:
    r""":math:`\sum_{n:\,\mathrm{id}_n = s} w_n\,T\big(\bigotimes_j F_j(n)\big)` for every
    segment ``s``.

    Args:
        factors: per-entry vectors ``(N, r_j)`` or matrices ``(N, r_j, r_j)``, all of one
            kind; Kronecker order is the list order (the first factor varies slowest). An
            empty list is the scalar 1 per entry (shape ``(N, 1)``; ``(N, 1, 1)`` is not
            inferable, so pass a ones factor for matrices).
        segment_ids: ``(N,)`` segment of each entry, in ``[0, num_segments)``.
        num_segments: number of segments (static).
        weights: ``(N,)`` per-entry weights :math:`w_n` (default 1).
        hadamard: elementwise products instead of Kronecker ones (the CP model).
        chunk_size: entries per chunk (default from :func:`chunk_size_for`).
        transform: :math:`T`, a linear map applied to a chunk of products (batched over its
            leading axis) before they are summed, e.g. a contraction to a smaller shape, so
            the sums never hold the products themselves (default: identity).

    Returns:
        ``(num_segments, prod r_j)`` or ``(num_segments, prod r_j, prod r_j)`` sums, or
        ``(num_segments, *T's output shape)``.

    Example:
        >>> import jax.numpy as jnp
        >>> from bayescore.models.tucker.moments import segment_kron_sum
        >>> a, b = jnp.ones((3, 2)), jnp.arange(6.0).reshape(3, 2)
        >>> segment_kron_sum([a, b], jnp.array([0, 1, 0]), 2, chunk_size=2).tolist()
        [[4.0, 6.0, 4.0, 6.0], [2.0, 3.0, 2.0, 3.0]]
    """
    num_entries = segment_ids.shape[0]
    if not factors:
        dtype = jnp.result_type(float) if weights is None else weights.dtype
        factors = [jnp.ones((num_entries, 1), dtype)]
    dtype = jnp.result_type(*factors)
    if weights is None:
        weights = jnp.ones(num_entries, dtype)
    sizes = [f.shape[1] for f in factors]
    width = sizes[0] if hadamard else math.prod(sizes)
    is_matrix = factors[0].ndim == 3
    product_size = width * width if is_matrix else width
    if chunk_size is None:
        chunk_size = chunk_size_for(num_entries, product_size)
    chunk_size = max(1, min(int(chunk_size), num_entries))
    num_chunks = -(-num_entries // chunk_size)
    padding = num_chunks * chunk_size - num_entries
    product_shape = (width, width) if is_matrix else (width,)
    if transform is None:
        transform = lambda products: products  # noqa: E731
    out_shape = jax.eval_shape(transform, jax.ShapeDtypeStruct((1, *product_shape), dtype))
    out_shape = (num_segments, *out_shape.shape[1:])

    def pad(x, value=0):
        return jnp.pad(x, [(0, padding)] + [(0, 0)] * (x.ndim - 1), constant_values=value)

    def chunks(x):
        return x.reshape(num_chunks, chunk_size, *x.shape[1:])

    # Padded entries get segment id num_segments, which segment_sum drops, and weight 0.
    ids = chunks(pad(segment_ids, num_segments))
    weights = chunks(pad(weights.astype(dtype)))
    factors = [chunks(pad(f)) for f in factors]

    def add_chunk(total, inputs):
        ids, weights, *factors = inputs
        products = transform(_kron_rows(factors, hadamard))
        products = products * weights.reshape(-1, *([1] * (products.ndim - 1)))
        return total + jax.ops.segment_sum(products, ids, num_segments), None

    if num_chunks == 1:
        total, _ = add_chunk(
            jnp.zeros(out_shape, dtype), (ids[0], weights[0], *[f[0] for f in factors])
        )
        return total
    total, _ = jax.lax.scan(add_chunk, jnp.zeros(out_shape, dtype), (ids, weights, *factors))
    return total
