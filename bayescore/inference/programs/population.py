r"""Populations of weighted particles: importance sampling, resampling, collapse.

A population :math:`\{(x_i, w_i)\}_{i=1}^N` represents the measure
:math:`\frac1N\sum_i w_i \delta_{x_i}`, an unbiased estimate of the program's measure
:math:`\mu` (monad-bayes's ``PopulationT``; Ścibior et al., POPL 2018, Sec. 5). Its evidence
estimate is :math:`\hat Z = \frac1N \sum_i w_i`.

Every transformer here is a program in its own right: called without a key it returns a
:class:`~bayescore.models.ho.Measure` whose random choices (the particles' draws, the
resampling indices, collapse's pick) are sites, so
:func:`~bayescore.inference.programs.enumerate` can integrate them out exactly; called with a
key it runs that program once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import blackjax.smc.resampling as resampling
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from jaxtyping import PRNGKeyArray
from numpyro.distributions import constraints

from bayescore.core.errors import ArgumentError, check_positive_int
from bayescore.inference.programs import compiled
from bayescore.models.ho.measure import Measure, Random
from bayescore.models.ho.runtime import Site, run_nested


class Population(NamedTuple):
    """Weighted particles: values, their traces and their log weights.

    Attributes:
        values: the particles' values (anything a program returns, functions included).
        traces: each particle's trace, address -> :class:`~bayescore.models.ho.Site`.
        log_weights: :math:`\\log w_i`, float64 ``(N,)``.

    Example:
        >>> population = Population([0, 1], [{}, {}], np.log([1.0, 3.0]))
        >>> round(population.log_evidence, 6), population.expectation(lambda v: v)
        (0.693147, 0.75)
    """

    values: list
    traces: list[dict[Any, Site]]
    log_weights: np.ndarray

    @property
    def num_particles(self) -> int:
        return len(self.values)

    @property
    def log_evidence(self) -> float:
        """:math:`\\log \\hat Z = \\log \\frac1N \\sum_i w_i`."""
        return float(np.logaddexp.reduce(self.log_weights) - np.log(self.num_particles))

    @staticmethod
    def from_particles(particles: compiled.Particles, log_weights: Any) -> Population:
        """The Population of a compiled run: values and traces built when read.

        Example:
            >>> import jax, numpyro, numpyro.distributions as dist
            >>> def model():
            ...     return numpyro.sample("x", dist.Normal())
            >>> particles, log_weights = compiled.importance_kernel(model, 3)(jax.random.key(0))
            >>> population = Population.from_particles(particles, log_weights)
            >>> len(population.values), population.log_evidence
            (3, 0.0)
        """
        count = particles.num_particles
        return Population(
            compiled.LazySequence(particles.value, count, particles),
            compiled.LazySequence(particles.trace, count, particles),
            np.asarray(log_weights, dtype=np.float64),
        )

    @property
    def particles(self) -> compiled.Particles | None:
        """The device arrays of a compiled run (``None`` for the eager tier)."""
        return getattr(self.traces, "particles", None)

    def normalized_weights(self) -> np.ndarray:
        """:math:`\\bar w_i = w_i / \\sum_j w_j` (uniform if every weight is zero)."""
        log_weights = np.asarray(self.log_weights, dtype=np.float64)
        if np.all(log_weights == -np.inf):
            return np.full(self.num_particles, 1.0 / self.num_particles)
        weights = np.exp(log_weights - np.max(log_weights))
        return weights / weights.sum()

    def ess(self) -> float:
        """Kish's effective sample size :math:`1 / \\sum_i \\bar w_i^2`."""
        return float(1.0 / np.sum(self.normalized_weights() ** 2))

    def expectation(self, function: Callable[[Any], Any]) -> float:
        """The self-normalised estimate :math:`\\sum_i \\bar w_i f(x_i)`."""
        weights = self.normalized_weights()
        return float(
            sum(w * np.asarray(function(v)) for w, v in zip(weights, self.values, strict=True))
        )


def as_body(program: Any) -> Callable[[], Any]:
    """The body of a program: a Measure's or Random's, or a NumPyro model without arguments.

    Example:
        >>> from bayescore.models import ho
        >>> as_body(ho.Measure.pure(3))()
        3
    """
    if isinstance(program, Measure | Random):
        return program.body
    if callable(program):
        return program
    raise ArgumentError(
        f"program must be a Measure, a Random or a NumPyro model without arguments, found "
        f"{type(program).__name__}. Wrap a model with ho.from_model(model, *args)."
    )


def check_program_tier(tier: str, transformer: str) -> None:
    """Without a key a transformer returns a program, whose choices are sites: eager only.

    Example:
        >>> check_program_tier("auto", "smc")
    """
    if compiled.check_tier(tier) == "compiled":
        raise ArgumentError(
            f"{transformer}(..., tier='compiled') needs a key: without one it returns a program "
            f"whose own choices are sites (for enumerate), which is of the eager tier. Pass a "
            f"key, or tier='auto'."
        )


def run_program(program: Measure, key: PRNGKeyArray | None) -> Any:
    """``program`` itself without a key, else the value of one run of it.

    Example:
        >>> import jax
        >>> from bayescore.models import ho
        >>> run_program(ho.Measure.pure(3), jax.random.key(0))
        3
    """
    return program if key is None else program.run(key)[0]


def latent_values(trace: dict[Any, Site]) -> dict[Any, Any]:
    """The replay map of a trace: the values of its latent sites.

    Example:
        >>> import numpyro.distributions as dist
        >>> latent_values({"x": Site(1, -0.7, False, dist.Bernoulli(0.5)),
        ...                "y": Site(0, -0.1, True, dist.Bernoulli(0.1))})
        {'x': 1}
    """
    return {address: site.value for address, site in trace.items() if site.is_latent}


def importance(
    program: Measure | Random,
    num_particles: int,
    key: PRNGKeyArray | None = None,
    *,
    tier: str = "auto",
) -> Population | Measure[Population]:
    """Likelihood-weighted importance sampling: :math:`x_i` from the prior,
    :math:`w_i = e^{\\ell(x_i)}` (observed and factor sites), so
    :math:`\\mathbb{E}[\\frac1N\\sum_i w_i \\delta_{x_i}] = \\mu` and :math:`\\hat Z` is
    unbiased.

    Particle ``i``'s draws are the sites ``("importance", i, ...)`` of the returned program.
    With a key, a static program runs its particles vmapped in one compiled program
    (:mod:`~bayescore.inference.programs.compiled`); ``tier`` (``"auto"``, ``"compiled"``,
    ``"eager"``) forces a tier. Without a key the program is of the eager tier.

    Example:
        >>> import jax, numpyro, numpyro.distributions as dist
        >>> from bayescore.models import ho
        >>> def model():
        ...     numpyro.factor("w", -1.0)
        ...     return numpyro.sample("x", dist.Normal())
        >>> population = importance(ho.from_model(model), 4, jax.random.key(0))
        >>> population.num_particles, population.log_evidence
        (4, -1.0)
    """
    num_particles = check_positive_int("num_particles", num_particles)
    body = as_body(program)
    if key is None:
        check_program_tier(tier, "importance")
    else:
        outcome = compiled.attempt(
            tier,
            body,
            "importance",
            lambda _: compiled.importance_kernel(body, num_particles),
            key,
        )
        if outcome is not None:
            return Population.from_particles(*outcome)

    def run() -> Population:
        values, traces, log_weights = [], [], []
        for index in range(num_particles):
            value, frame, _ = run_nested(body, ("importance", index))
            values.append(value)
            traces.append(frame.trace)
            log_weights.append(frame.log_weight)
        return Population(values, traces, np.asarray(log_weights, dtype=np.float64))

    return run_program(Measure(run), key)


class _Ancestors(dist.Distribution):
    """Ancestor indices from one of BlackJAX's resampling schemes (a sampler, no density)."""

    support = constraints.nonnegative_integer
    has_enumerate_support = False
    has_density = False
    pytree_data_fields = ("weights",)
    pytree_aux_fields = ("scheme", "num_samples")
    enumerate_hint = "Resample with scheme='multinomial' to enumerate resampling exactly."

    def __init__(self, weights: Any, scheme: Callable, num_samples: int):
        self.weights = jnp.asarray(weights)
        self.scheme = scheme
        self.num_samples = num_samples
        super().__init__(batch_shape=(num_samples,))

    def sample(self, key: PRNGKeyArray, sample_shape: tuple = ()) -> Any:
        return self.scheme(key, self.weights, self.num_samples)

    def log_prob(self, value: Any) -> Any:
        return jnp.zeros(jnp.shape(value))


SCHEMES = {
    "multinomial": resampling.multinomial,
    "systematic": resampling.systematic,
    "stratified": resampling.stratified,
    "residual": resampling.residual,
}


def check_scheme(scheme: str | Callable) -> str | Callable:
    """Return ``scheme`` if it names a resampling scheme or is a callable, else raise.

    Example:
        >>> check_scheme("systematic")
        'systematic'
    """
    if callable(scheme) or scheme in SCHEMES:
        return scheme
    raise ArgumentError(
        f"scheme must be one of {sorted(SCHEMES)} or a function (key, weights, num_samples) "
        f"-> indices, found {scheme!r}. Pass scheme='systematic', for instance."
    )


def ancestors(weights: np.ndarray, scheme: str | Callable, name: Any = "resample") -> np.ndarray:
    """Draw ancestor indices at the site ``name`` of the running program.

    Multinomial resampling is ``N`` independent ``Categorical(weights)`` draws, a site
    ``enumerate`` can list; the other schemes call BlackJAX's index functions.

    Example:
        >>> import jax
        >>> from bayescore.models import ho
        >>> program = ho.Measure(lambda: ancestors(np.array([0.0, 1.0]), "systematic"))
        >>> program.run(jax.random.key(0))[0].tolist()
        [1, 1]
    """
    num = len(weights)
    if scheme == "multinomial":
        distribution = dist.Categorical(probs=jnp.asarray(weights)).expand([num])
    else:
        distribution = _Ancestors(weights, SCHEMES.get(scheme, scheme), num)
    return np.asarray(numpyro.sample(name, distribution))


def resample(
    population: Population | Measure[Population],
    scheme: str | Callable = "systematic",
    key: PRNGKeyArray | None = None,
) -> Population | Measure[Population]:
    """Resample: :math:`N` ancestors :math:`a_j` with :math:`E[\\#\\{j: a_j = i\\}] = N \\bar
    w_i`, every new weight :math:`\\hat Z`, so the total weight is preserved.

    Args:
        population: a Population, or a program whose value is one.
        scheme: ``"multinomial"``, ``"systematic"``, ``"stratified"``, ``"residual"``
            (BlackJAX's index functions), or a function ``(key, weights, n) -> indices``.
        key: run the resampling now (else return the program).

    Example:
        >>> import jax
        >>> population = Population(["a", "b"], [{}, {}], np.array([0.0, -np.inf]))
        >>> resample(population, "systematic", jax.random.key(0)).values
        ['a', 'a']
    """
    scheme = check_scheme(scheme)

    def run_on(current: Population) -> Population:
        indices = ancestors(current.normalized_weights(), scheme)
        return Population(
            [current.values[i] for i in indices],
            [current.traces[i] for i in indices],
            np.full(current.num_particles, current.log_evidence),
        )

    if isinstance(population, Measure):
        program = population.bind(lambda current: Measure(lambda: run_on(current)))
    else:
        program = Measure(lambda: run_on(_check_population(population)))
    return run_program(program, key)


def _check_population(population: Any) -> Population:
    if not isinstance(population, Population):
        raise ArgumentError(
            f"population must be a Population (from importance or smc), found "
            f"{type(population).__name__}. Pass the result of importance(...) or smc(...)."
        )
    return population


def collapse(population: Population | Measure[Population]) -> Measure[Any]:
    """The measure of one particle: pick :math:`i` with probability :math:`\\bar w_i`, weight
    by :math:`\\hat Z` (monad-bayes's ``collapse``). Since
    :math:`\\mathbb{E}[\\hat Z \\bar w_i \\delta_{x_i}] = \\mu`, it preserves the measure in
    expectation over the population's randomness: ``enumerate(collapse(smc(m, ...)))``
    equals ``enumerate(m)``.

    Example:
        >>> import jax
        >>> population = Population(["a", "b"], [{}, {}], np.array([0.0, -np.inf]))
        >>> value, log_weight, _ = collapse(population).run(jax.random.key(0))
        >>> value, round(log_weight, 6)
        ('a', -0.693147)
    """

    def run_on(current: Population) -> Any:
        current = _check_population(current)
        evidence = current.log_evidence
        index = numpyro.sample("collapse", dist.Categorical(probs=current.normalized_weights()))
        numpyro.factor("evidence", evidence)
        return current.values[int(index)]

    if isinstance(population, Measure):
        return population.bind(lambda current: Measure(lambda: run_on(current)))
    return Measure(lambda: run_on(population))
