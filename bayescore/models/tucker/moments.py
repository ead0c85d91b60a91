r"""Per-index sums of Kronecker (or Hadamard) products of per-entry moments, chunked.

Conditional EP for a functional Tucker model needs, for every unique index value :math:`s`
of a mode, sums over the entries :math:`n` that share it of Kronecker products of the other
modes' moments,

.. math::

    \sum_{n:\,i^n_k = s} w_n \bigotimes_{j} M_j(n) \quad (M_j(n) \in \mathbb R^{r_j\times r_j}
    \text{ or } \mathbb R^{r_j}),

(Fang et al. 2024, "Functional Bayesian Tucker Decomposition for Continuous-indexed Tensor
Data", ICLR, §4.2: the messages of entries sharing an index value add up). The entries are
sorted by segment into rows of at most :math:`L` entries of one segment; a row's weighted
sum of Kronecker products is one matrix product,
:math:`\sum_l \operatorname{vec}(w_l M_1(l))\,\operatorname{vec}(\bigotimes_{j>1}
M_j(l))^\top` (of upper triangles only when the matrices are symmetric), rearranged into
Kronecker order; the rows are summed into their segments with ``jax.ops.segment_sum``, a
chunk of rows at a time inside ``lax.scan``. So memory is a chunk of rows (their entries'
factors, one product per row) plus the ``num_segments`` sums, never one product per entry,
and the products' multiply-adds run as matrix products rather than as scattered additions.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

# Default elements (floats) of a chunk's factors and products held at once: 2**22 doubles = 32 MiB.
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


def _packing(size: int, symmetric: bool) -> tuple[np.ndarray, np.ndarray]:
    """Flat positions kept of a ``(size, size)`` matrix (its upper triangle if ``symmetric``,
    else all) and, per ``(i, j)``, the kept position that holds its value."""
    if not symmetric:
        flat = np.arange(size * size)
        return flat, flat.reshape(size, size)
    rows, columns = np.triu_indices(size)
    unpacking = np.zeros((size, size), np.int64)
    unpacking[rows, columns] = unpacking[columns, rows] = np.arange(rows.size)
    return rows * size + columns, unpacking


def _row_layout(
    segment_ids: Array, num_segments: int, row_length: int, num_rows: int
) -> tuple[Array, Array]:
    """Entries grouped by segment into rows of ``row_length`` slots (a segment may fill several
    rows; a row holds one segment). Returns the ``(num_rows, row_length)`` entry of each slot
    (``N`` for an empty slot) and the segment of each row (``num_segments`` for an empty row).
    """
    num_entries = segment_ids.shape[0]
    order = jnp.argsort(segment_ids, stable=True)
    sorted_ids = segment_ids[order]
    counts = jnp.zeros(num_segments, jnp.int32).at[segment_ids].add(1)
    starts = jnp.cumsum(counts) - counts
    rank = jnp.arange(num_entries) - starts[sorted_ids]
    segment_rows = (counts + row_length - 1) // row_length
    row_starts = jnp.cumsum(segment_rows) - segment_rows
    row = row_starts[sorted_ids] + rank // row_length
    entries = jnp.full((num_rows, row_length), num_entries, segment_ids.dtype)
    entries = entries.at[row, rank % row_length].set(order.astype(segment_ids.dtype))
    row_segments = jnp.full(num_rows, num_segments, segment_ids.dtype)
    return entries, row_segments.at[row].set(sorted_ids)


def segment_kron_sum(
    factors: Sequence[Float[Array, "entry ..."]],
    segment_ids: Int[Array, " entry"],
    num_segments: int,
    *,
    weights: Float[Array, " entry"] | None = None,
    hadamard: bool = False,
    chunk_size: int | None = None,
    transform: Callable[[Array], Array] | None = None,
    symmetric: bool = False,
) -> Float[Array, "segment ..."]:
    r""":math:`\sum_{n:\,\mathrm{id}_n = s} w_n\,T\big(\bigotimes_j F_j(n)\big)` for every
    segment ``s``.

    By rows of entries sorted by segment, one matrix product per row (see the module
    docstring): no product of all factors is formed per entry.

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
            the sums never hold the products themselves (default: identity). Being linear,
            it is applied to sums of products over the entries of a row.
        symmetric: the matrix factors are symmetric (second moments), so each row's product
            is formed from their upper triangles only and unpacked after summing.

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
    segment_ids = jnp.asarray(segment_ids)
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
    product_shape = (width, width) if is_matrix else (width,)
    product_size = math.prod(product_shape)
    identity = transform is None
    if identity:
        transform = lambda products: products  # noqa: E731
    out_shape = jax.eval_shape(transform, jax.ShapeDtypeStruct((1, *product_shape), dtype))
    out_shape = (num_segments, *out_shape.shape[1:])
    # Elements per entry (its factors and the Kronecker product of all but the first) and
    # per row (the row's product) set the rows per chunk.
    entry_size = sum(math.prod(f.shape[1:]) for f in factors)
    if not hadamard and len(factors) > 1:
        entry_size += math.prod(math.prod(f.shape[1:]) for f in factors[1:])
    row_length = -(-num_entries // num_segments)
    if chunk_size is None:
        row_length = min(row_length, chunk_size_for(num_entries, entry_size))
        rows_per_chunk = max(1, CHUNK_ELEMENTS // (row_length * entry_size + product_size))
    else:
        row_length = max(1, min(row_length, int(chunk_size)))
        rows_per_chunk = max(1, int(chunk_size) // row_length)
    # Σ_s ceil(count_s / L) <= (N + S (L - 1)) / L rows hold every entry.
    num_rows = (num_entries + num_segments * (row_length - 1)) // row_length
    rows_per_chunk = min(rows_per_chunk, num_rows)
    num_chunks = -(-num_rows // rows_per_chunk)
    entries, row_segments = _row_layout(
        segment_ids, num_segments, row_length, num_chunks * rows_per_chunk
    )
    # Empty slots read entry N, a row of zeros appended to every factor and the weights.
    factors = [jnp.concatenate([f, jnp.zeros((1, *f.shape[1:]), dtype)]) for f in factors]
    weights = jnp.concatenate([weights.astype(dtype), jnp.zeros(1, dtype)])

    kronecker = not hadamard and len(factors) > 1
    if kronecker and is_matrix:
        first_size, rest_size = sizes[0], width // sizes[0]
        first_packing, first_unpacking = _packing(first_size, symmetric)
        rest_packing, rest_unpacking = _packing(rest_size, symmetric)
        # Row (i, k), column (j, l) of the Kronecker product is F₁[i, j] · rest[k, l].
        unpacking = (
            first_unpacking[:, None, :, None] * len(rest_packing) + rest_unpacking[None, :, None, :]
        ).reshape(width, width)
        packed_shape = (len(first_packing), len(rest_packing))
    else:
        packed_shape = product_shape

    def row_sums(entries):
        rows = entries.shape[0]
        gathered = [f[entries.reshape(-1)] for f in factors]
        row_weights = weights[entries].reshape(rows, row_length)
        if not kronecker:
            products = _kron_rows(gathered, hadamard).reshape(rows, row_length, -1)
            return jnp.einsum("rl,rlp->rp", row_weights, products).reshape(rows, *packed_shape)
        first = gathered[0].reshape(rows, row_length, -1)
        rest = _kron_rows(gathered[1:], hadamard=False).reshape(rows, row_length, -1)
        if is_matrix:
            first, rest = first[..., first_packing], rest[..., rest_packing]
        blocks = jnp.einsum("rlf,rlg->rfg", first * row_weights[..., None], rest)
        return blocks.reshape(rows, *packed_shape)

    def unpack(sums):
        if not kronecker:
            return sums
        if not is_matrix:
            return sums.reshape(sums.shape[0], width)
        return sums.reshape(sums.shape[0], -1)[:, unpacking]

    if identity:  # sum packed rows, unpack the segment sums once

        def add_chunk(total, inputs):
            entries, segments = inputs
            return total + jax.ops.segment_sum(
                row_sums(entries), segments, num_segments, indices_are_sorted=True
            ), None

        out_shape, finish = (num_segments, *packed_shape), unpack
    else:

        def add_chunk(total, inputs):
            entries, segments = inputs
            sums = transform(unpack(row_sums(entries)))
            return total + jax.ops.segment_sum(
                sums, segments, num_segments, indices_are_sorted=True
            ), None

        finish = lambda total: total  # noqa: E731

    entries = entries.reshape(num_chunks, rows_per_chunk, row_length)
    row_segments = row_segments.reshape(num_chunks, rows_per_chunk)
    if num_chunks == 1:
        total, _ = add_chunk(jnp.zeros(out_shape, dtype), (entries[0], row_segments[0]))
    else:
        total, _ = jax.lax.scan(add_chunk, jnp.zeros(out_shape, dtype), (entries, row_segments))
    return finish(total)
