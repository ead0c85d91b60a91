r"""Exact inference for finite discrete programs, by enumeration of every execution path.

For a program whose latent sites all have finite supports, the measure it denotes is

.. math::

    \mu = \sum_{\text{paths } \omega} \Big(\prod_{a \in \omega} p_a(\omega_a)\Big)
        e^{\ell(\omega)} \, \delta_{v(\omega)}, \qquad
    Z = \mu(1), \qquad P(v) = \mu(\{v\}) / Z,

with :math:`\ell(\omega)` the log weight of the path's observed and factor sites. The paths
are found by re-execution with substitution (monad-bayes's ``Enumerator``): run the program;
at the first site with no value yet, stop and branch on its support (values of probability
zero are pruned); repeat until every run completes. A vector site enumerates the product of
its elements' supports. Inference transformers run by this module (``smc``, ``importance``,
``resample``, ``collapse`` without a key) expose their own random choices as sites, so
``enumerate(collapse(smc(m, ...)))`` is exact too.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np

from bayescore.core.errors import ModelError, check_positive_int
from bayescore.models.ho.keys import canonical
from bayescore.models.ho.measure import Measure, Random
from bayescore.models.ho.runtime import Branch, Frame, run_frame


class NotEnumerableError(ModelError):
    """A site of the program has no finite support, or too many paths to list."""


class Table(NamedTuple):
    """The exact normalised distribution of a program's value, and its log evidence.

    Attributes:
        values: the distinct values (in the order first met).
        probabilities: their posterior probabilities, float64, summing to 1.
        log_evidence: :math:`\\log Z`, the log total weight of the unnormalised measure.

    Example:
        >>> table = Table([0, 1], np.array([0.25, 0.75]), 0.0)
        >>> table.probability(lambda v: v == 1), table.expectation(lambda v: 2 * v)
        (0.75, 1.5)
    """

    values: list
    probabilities: np.ndarray
    log_evidence: float

    def probability(self, event: Callable[[Any], bool]) -> float:
        """:math:`P(\\text{event}(v))` under the table."""
        return float(
            sum(p for v, p in zip(self.values, self.probabilities, strict=True) if event(v))
        )

    def expectation(self, function: Callable[[Any], Any]) -> float:
        """:math:`\\mathbb{E}[f(v)]` under the table."""
        return float(
            sum(p * function(v) for v, p in zip(self.values, self.probabilities, strict=True))
        )

    def as_dict(self) -> dict:
        """``{value: probability}`` (values in canonical, hashable form)."""
        return {
            canonical(v): float(p) for v, p in zip(self.values, self.probabilities, strict=True)
        }


def _candidates(distribution: Any, address: Any) -> list:
    if not getattr(distribution, "has_enumerate_support", False):
        hint = getattr(distribution, "enumerate_hint", "")
        raise NotEnumerableError(
            f"site {address!r} has a {type(distribution).__name__} distribution, expected one "
            f"with a finite support (Bernoulli, Categorical, DiscreteUniform, ...). "
            + (hint or "Use importance, smc or trace_mh for programs with such sites.")
        )
    support = np.asarray(distribution.enumerate_support(expand=True))
    log_probs = np.asarray(distribution.log_prob(jnp.asarray(support)))
    batch_shape = tuple(distribution.batch_shape)
    if not batch_shape:
        return [support[k] for k in range(support.shape[0]) if log_probs[k] > -math.inf]
    num_values = support.shape[0]
    flat_support = support.reshape(num_values, -1, *distribution.event_shape)
    flat_log_probs = log_probs.reshape(num_values, -1)
    per_element = [
        [k for k in range(num_values) if flat_log_probs[k, j] > -math.inf]
        for j in range(flat_support.shape[1])
    ]
    count = math.prod(len(options) for options in per_element)
    if count > 100_000:
        raise NotEnumerableError(
            f"site {address!r} is a vector of {flat_support.shape[1]} discrete values with "
            f"{count} joint values, expected at most 100000. Enumerate a smaller program "
            f"(fewer particles, shorter vectors) or use a sampling method."
        )
    columns = np.arange(flat_support.shape[1])
    return [
        flat_support[np.asarray(choice), columns].reshape(support.shape[1:])
        for choice in itertools.product(*per_element)
    ]


def _group_key(value: Any) -> Any:
    try:
        key = canonical(value)
        hash(key)
        return key
    except (TypeError, ModelError, ValueError):
        return ("__unhashable__", id(value))


def enumerate(program: Measure | Random, max_paths: int = 1_000_000) -> Table:  # noqa: A001
    """The exact distribution of a finite discrete program's value, and its log evidence.

    Args:
        program: a :class:`~bayescore.models.ho.Measure` or ``Random`` whose latent sites all
            have finite supports (inference transformers' own choices included).
        max_paths: refuse programs with more execution paths than this.

    Returns:
        A :class:`Table`; values equal after canonicalisation (arrays -> numbers) are merged.

    Example:
        >>> import numpyro, numpyro.distributions as dist
        >>> from bayescore.models import ho
        >>> def control_flow():
        ...     x = numpyro.sample("x", dist.Bernoulli(0.5))
        ...     y = numpyro.sample("y", dist.Bernoulli(0.4 if x else 0.7))
        ...     numpyro.factor("same", 0.0 if x == y else -float("inf"))
        ...     return int(x)
        >>> table = enumerate(ho.from_model(control_flow))
        >>> round(table.probability(lambda x: x == 1), 6)  # 4/7
        0.571429
    """
    max_paths = check_positive_int("max_paths", max_paths)
    body = program.body if isinstance(program, Measure | Random) else Measure(program).body
    affine = 1 if isinstance(program, Random) else 0
    pending: list[dict] = [{}]
    leaves: dict[Any, list] = {}
    num_paths = 0
    while pending:
        substitution = pending.pop()
        frame = Frame(replay=substitution, branch=True, affine=affine)
        try:
            value = run_frame(frame, body)
        except Branch as branch:
            options = _candidates(branch.distribution, branch.address)
            pending.extend({**substitution, branch.address: v} for v in reversed(options))
            continue
        num_paths += 1
        if num_paths > max_paths:
            raise NotEnumerableError(
                f"the program has more than max_paths={max_paths} execution paths. Pass a "
                f"larger max_paths, or use a sampling method."
            )
        log_prob = frame.log_weight + sum(s.log_prob for s in frame.trace.values() if s.is_latent)
        if log_prob == -math.inf:
            continue
        entry = leaves.setdefault(_group_key(value), [value, []])
        entry[1].append(log_prob)
    if not leaves:
        raise ModelError(
            "every execution path of the program has weight zero (log weight -inf), so its "
            "measure is zero and has no normalised distribution. Check the conditions."
        )
    values = [entry[0] for entry in leaves.values()]
    log_masses = np.array([np.logaddexp.reduce(np.array(entry[1])) for entry in leaves.values()])
    log_evidence = float(np.logaddexp.reduce(log_masses))
    return Table(values, np.exp(log_masses - log_evidence), log_evidence)
