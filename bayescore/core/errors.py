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
