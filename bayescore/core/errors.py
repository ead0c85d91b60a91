"""Errors raised by bayescore.

Every error a user can trigger is a :class:`BayescoreError`. A message names the offending
argument or model site, says what was expected and what was found, and says what to do.
The children also derive from the matching built-in exception (``ValueError``, ``TypeError``)
so code that already catches those keeps working.

Example:
    >>> import bayescore as bc
    >>> try:
    ...     bc.core.errors.check_positive_int("num_chains", 0)
    ... except bc.BayescoreError as error:
    ...     print(error)
    num_chains must be a positive integer, got 0. Pass num_chains=1 or more.
"""

from __future__ import annotations

import math
import operator


class BayescoreError(Exception):
    """Base class of every error bayescore raises on purpose."""


class ArgumentError(BayescoreError, ValueError):
    """An argument of a public function has an invalid value or type."""


class DataError(BayescoreError, ValueError):
    """Data passed to a model contains values a model cannot use (NaN, inf)."""


class ShapeError(BayescoreError, ValueError):
    """Shapes disagree: data vs plate sizes, or parameters vs the model's sites."""


class ModelError(BayescoreError, ValueError):
    """The model cannot be traced, or has a site a backend cannot handle."""


class DiscreteLatentError(ModelError):
    """A gradient-based backend was given a model with discrete latent sites."""


class InitializationError(BayescoreError, RuntimeError):
    """No starting point with a finite log density and gradient was found."""


class NumericalError(BayescoreError, RuntimeError):
    """A chain reached a state with NaN or infinite values (``bc.sample(on_fault="raise")``)."""


def check_positive_int(name: str, value: object, *, allow_zero: bool = False) -> int:
    """Return ``value`` as an ``int`` or raise :class:`ArgumentError` naming ``name``.

    Example:
        >>> check_positive_int("num_samples", 10)
        10
    """
    smallest = 0 if allow_zero else 1
    try:
        as_int = operator.index(value)  # rejects floats, bools stay ints below
    except TypeError:
        as_int = None
    if as_int is None or isinstance(value, bool) or as_int < smallest:
        kind = "non-negative" if allow_zero else "positive"
        raise ArgumentError(
            f"{name} must be a {kind} integer, got {value!r}. Pass {name}={smallest} or more."
        )
    return as_int


def check_positive_float(
    name: str, value: object, *, allow_zero: bool = False, hint: str = ""
) -> float:
    """Return ``value`` as a finite positive ``float`` or raise :class:`ArgumentError`.

    Example:
        >>> check_positive_float("step_size", 0.1)
        0.1
        >>> check_positive_float("step_size", -1.0)
        Traceback (most recent call last):
        ...
        bayescore.core.errors.ArgumentError: step_size must be a finite positive number, got -1.0.
    """
    try:
        as_float = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        as_float = math.nan
    if isinstance(value, bool) or not math.isfinite(as_float) or as_float < 0.0:
        as_float = math.nan
    if math.isnan(as_float) or (as_float == 0.0 and not allow_zero):
        kind = "non-negative" if allow_zero else "positive"
        raise ArgumentError(
            f"{name} must be a finite {kind} number, got {value!r}." + (f" {hint}" if hint else "")
        )
    return as_float


def check_interval(
    name: str,
    value: object,
    low: float,
    high: float,
    *,
    closed: str = "neither",
    hint: str = "",
) -> float:
    """Return ``value`` as a ``float`` in the interval from ``low`` to ``high``, or raise.

    ``closed`` says which ends belong to the interval: ``"neither"``, ``"left"``, ``"right"``
    or ``"both"``. Non-numbers (strings, complex numbers, booleans) and NaN raise
    :class:`ArgumentError` naming ``name``.

    Example:
        >>> check_interval("alpha", 0.99, 0.0, 1.0)
        0.99
        >>> check_interval("alpha", 1.0, 0.0, 1.0)
        Traceback (most recent call last):
        ...
        bayescore.core.errors.ArgumentError: alpha must be in (0, 1), got 1.0.
    """
    try:
        as_float = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        as_float = math.nan
    left_ok = as_float >= low if closed in ("left", "both") else as_float > low
    right_ok = as_float <= high if closed in ("right", "both") else as_float < high
    if isinstance(value, bool) or not (left_ok and right_ok):
        opening = "[" if closed in ("left", "both") else "("
        closing = "]" if closed in ("right", "both") else ")"
        raise ArgumentError(
            f"{name} must be in {opening}{low:g}, {high:g}{closing}, got {value!r}."
            + (f" {hint}" if hint else "")
        )
    return as_float


def check_array(
    name: str,
    value: object,
    *,
    ndim: int | tuple[int, ...] | None = None,
    allow_empty: bool = False,
    finite: bool = True,
    hint: str = "",
) -> object:
    """Return ``value`` as a real floating array, or raise an error naming ``name``.

    Strings, complex numbers and objects raise :class:`ArgumentError`; a rank other than
    ``ndim`` (one rank or a tuple of them) or no entries raise :class:`ShapeError`; NaN or inf
    (with ``finite=True``) raise :class:`DataError`. A traced JAX array (inside ``jit``), or
    any array with ``finite=False``, is checked for dtype and shape only and returned as it
    is; anything else comes back as a NumPy array of its own float dtype (float64 for
    integers and booleans).

    Example:
        >>> check_array("x", [[1.0, 2.0]], ndim=2).shape
        (1, 2)
        >>> check_array("x", [1.0, float("nan")])
        Traceback (most recent call last):
        ...
        bayescore.core.errors.DataError: x has 1 NaN/inf value(s), first at index (1,). ...
    """
    import numpy as np

    suffix = f" {hint}" if hint else ""
    dtype = getattr(value, "dtype", None)
    # Without a finiteness check an array's dtype and shape suffice: no copy to the host.
    lazy = dtype is not None and hasattr(value, "shape")
    traced = lazy and type(value).__name__.endswith("Tracer")
    if not (traced or (lazy and not finite)):
        try:
            array = np.asarray(value)
        except Exception as error:  # ragged lists, objects numpy cannot hold
            raise ArgumentError(
                f"{name} must be an array of real numbers, got {type(value).__name__} "
                f"({error}).{suffix}"
            ) from error
        dtype, lazy = array.dtype, False
    try:
        kind = np.dtype(dtype).kind
    except TypeError:  # JAX's extended dtypes (PRNG keys)
        kind = "V"
    if kind not in "biuf":
        raise ArgumentError(
            f"{name} must hold real numbers, got dtype {dtype}. Convert it to a float array "
            f"(complex, string and object arrays are not data).{suffix}"
        )
    found = tuple(value.shape) if lazy else array.shape  # type: ignore[union-attr]
    ranks = (ndim,) if isinstance(ndim, int) else ndim
    if ranks is not None and len(found) not in ranks:
        expected = " or ".join(str(rank) for rank in ranks)
        raise ShapeError(f"{name} must have {expected} dimension(s), got shape {found}.{suffix}")
    if not allow_empty and math.prod(found) == 0:
        raise ShapeError(f"{name} is empty (shape {found}); pass at least one value.{suffix}")
    if lazy:
        return value
    if array.dtype.kind != "f":
        array = array.astype(np.float64)
    if finite and not np.all(np.isfinite(array)):
        bad = np.argwhere(~np.isfinite(array))
        raise DataError(
            f"{name} has {len(bad)} NaN/inf value(s), first at index "
            f"{tuple(int(i) for i in bad[0])}. Drop or fix those entries.{suffix}"
        )
    return array
