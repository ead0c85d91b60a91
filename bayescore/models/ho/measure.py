r"""``Random[A]`` and ``Measure[A]``: the semantic objects of higher-order programs.

Following quasi-Borel semantics (Heunen, Kammar, Staton, Yang, LICS 2017, Sec. V), a random
element is a deterministic function of one source of randomness; here the source is a JAX key
tree (:mod:`~bayescore.models.ho.keys`). Two kinds of program:

* ``Random[A]``: a probability distribution, ``draw(key) -> A``. It is *affine* (LazyPPL's
  ``Prob``): it may not score, so unused randomness can be dropped; a score inside raises
  :class:`~bayescore.models.ho.runtime.ScoreInRandomError`.
* ``Measure[A]``: an unnormalised measure (LazyPPL's ``Meas``, monad-bayes's ``MonadMeasure``),
  ``run(key) -> (value, log_weight, trace)``, with

  .. math::

      \int h \, d\mu = \mathbb{E}_{\text{key}}\big[e^{\text{log\_weight}}\, h(\text{value})\big].

Both wrap a *body*: a Python function of no arguments that uses NumPyro primitives
(``numpyro.sample``, ``numpyro.factor``, ``numpyro.deterministic``), so a NumPyro model is a
program as it stands (:meth:`Measure.from_model`). ``bind`` runs its two halves under the
scopes ``0`` and ``1``; the monad laws hold in distribution, never key for key.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from typing import Any

import numpyro
from jaxtyping import PRNGKeyArray

from bayescore.core.errors import ArgumentError
from bayescore.models.ho.runtime import Frame, Site, current_frame, run_frame, scope


def _body_of(program: Any, args: tuple = (), kwargs: dict | None = None) -> Callable[[], Any]:
    if isinstance(program, Random):
        return program.body
    if isinstance(program, Measure):
        return program.body
    if callable(program):
        return functools.partial(program, *args, **(kwargs or {}))
    raise ArgumentError(
        f"program must be a Measure, a Random or a NumPyro model (a callable), found "
        f"{type(program).__name__}. Wrap a model with Measure.from_model(model, *args)."
    )


def call(name: Any, program: Any, *args: Any, **kwargs: Any) -> Any:
    """Run a sub-program under the scope ``name`` and return its value (maybe a function).

    ``program`` is a :class:`Measure`, a :class:`Random` or a NumPyro model called with
    ``*args, **kwargs``; its sites get addresses ``(name, ...)`` and its scores weight the
    calling program. A ``Random`` stays affine inside: a score in it raises.

    Example:
        >>> import jax, numpyro, numpyro.distributions as dist
        >>> def prior():
        ...     slope = numpyro.sample("slope", dist.Normal(0.0, 3.0))
        ...     return lambda x: slope * x
        >>> def model():
        ...     f = call("prior", prior)
        ...     numpyro.sample("y", dist.Normal(f(1.0), 0.5), obs=2.0)
        ...     return f
        >>> f, log_weight, trace = Measure.from_model(model).run(jax.random.key(0))
        >>> list(trace), callable(f)
        ([('prior', 'slope'), 'y'], True)
    """
    body = _body_of(program, args, kwargs)
    frame = current_frame(required="ho.call")
    affine = isinstance(program, Random)
    with scope(name):
        frame.affine += affine
        try:
            return body()
        finally:
            frame.affine -= affine


@dataclasses.dataclass(frozen=True)
class Random[A]:
    """A probability distribution on ``A`` given by a sampler: ``draw(key) -> A``.

    Attributes:
        body: a function of no arguments using NumPyro sample sites, none observed.

    Example:
        >>> import jax, numpyro.distributions as dist
        >>> coin = Random.from_distribution(dist.Bernoulli(0.5), "coin")
        >>> pair = coin.bind(lambda a: coin.map(lambda b: (int(a), int(b))))
        >>> pair.draw(jax.random.key(0)) in {(0, 0), (0, 1), (1, 0), (1, 1)}
        True
    """

    body: Callable[[], A]

    @staticmethod
    def pure[T](value: T) -> Random[T]:
        """The point mass :math:`\\delta_x`.

        Example:
            >>> import jax
            >>> Random.pure(3).draw(jax.random.key(0))
            3
        """
        return Random(lambda: value)

    @staticmethod
    def from_distribution(distribution: Any, name: str = "x") -> Random[Any]:
        """One NumPyro distribution as a ``Random``, drawn at the site ``name``.

        Example:
            >>> import jax, numpyro.distributions as dist
            >>> Random.from_distribution(dist.Normal(), "z").draw(jax.random.key(0)).shape
            ()
        """
        return Random(lambda: numpyro.sample(name, distribution))

    @staticmethod
    def from_model[T](model: Callable[..., T], *args: Any, **kwargs: Any) -> Random[T]:
        """A NumPyro model with no observed or factor site, as a ``Random`` of its return value.

        Example:
            >>> import jax, numpyro, numpyro.distributions as dist
            >>> def line():
            ...     a = numpyro.sample("a", dist.Normal())
            ...     return lambda x: a * x
            >>> f = Random.from_model(line).draw(jax.random.key(0))
            >>> float(f(0.0))
            0.0
        """
        return Random(functools.partial(model, *args, **kwargs))

    def map[B](self, function: Callable[[A], B]) -> Random[B]:
        """The push-forward :math:`P(g)`: draw ``x``, return ``g(x)``.

        Example:
            >>> import jax
            >>> Random.pure(2).map(lambda x: x + 1).draw(jax.random.key(0))
            3
        """
        return Random(lambda: function(self.body()))

    def bind[B](self, continuation: Callable[[A], Random[B]]) -> Random[B]:
        """Draw ``x`` (under scope ``0``), then draw from ``continuation(x)`` (under scope ``1``).

        Example:
            >>> import jax
            >>> Random.pure(2).bind(lambda x: Random.pure(x * 5)).draw(jax.random.key(0))
            10
        """

        def body() -> B:
            value = call(0, self)
            return call(1, continuation(value))

        return Random(body)

    def draw(self, key: PRNGKeyArray) -> A:
        """One draw; the same key gives the same value.

        Example:
            >>> import jax, numpyro.distributions as dist
            >>> coin = Random.from_distribution(dist.Bernoulli(0.5))
            >>> int(coin.draw(jax.random.key(1))) == int(coin.draw(jax.random.key(1)))
            True
        """
        return run_frame(Frame(key=key, affine=1), self.body)

    def measure(self) -> Measure[A]:
        """The same distribution as a (normalised) ``Measure``.

        Example:
            >>> import jax
            >>> Random.pure(1).measure().run(jax.random.key(0))[:2]
            (1, 0.0)
        """
        return Measure(lambda: call("random", self))


@dataclasses.dataclass(frozen=True)
class Measure[A]:
    """An unnormalised measure on ``A``: ``run(key) -> (value, log_weight, trace)``.

    Attributes:
        body: a function of no arguments using NumPyro primitives; observed and factor sites
            add to the log weight.

    Example:
        >>> import jax, numpyro, numpyro.distributions as dist
        >>> def sprinkler():
        ...     rain = numpyro.sample("rain", dist.Bernoulli(0.3))
        ...     numpyro.sample("wet", dist.Bernoulli(0.9 * rain + 0.2 * (1 - rain)), obs=0)
        ...     return rain
        >>> value, log_weight, trace = Measure.from_model(sprinkler).run(jax.random.key(0))
        >>> sorted(trace), trace["wet"].observed
        (['rain', 'wet'], True)
    """

    body: Callable[[], A]

    @staticmethod
    def from_model[T](model: Callable[..., T], *args: Any, **kwargs: Any) -> Measure[T]:
        """A NumPyro model as a ``Measure`` of its return value (which may be a function).

        Latent sites are drawn from their priors with address-based keys; observed sites and
        ``numpyro.factor`` sites add to the log weight.

        Example:
            >>> import jax, numpyro, numpyro.distributions as dist
            >>> def model(y):
            ...     mu = numpyro.sample("mu", dist.Normal())
            ...     numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)
            ...     return mu
            >>> mu, log_weight, trace = Measure.from_model(model, 0.5).run(jax.random.key(0))
            >>> bool(abs(log_weight - trace["y"].log_prob) < 1e-6)
            True
        """
        return Measure(functools.partial(model, *args, **kwargs))

    @staticmethod
    def pure[T](value: T) -> Measure[T]:
        """The point mass :math:`\\delta_x` (weight 1).

        Example:
            >>> import jax
            >>> Measure.pure("a").run(jax.random.key(0))
            ('a', 0.0, {})
        """
        return Measure(lambda: value)

    @staticmethod
    def score(log_weight: float, name: str = "score") -> Measure[None]:
        """Weight by :math:`e^{\\text{log\\_weight}}` (a ``numpyro.factor`` site ``name``).

        Example:
            >>> import jax
            >>> Measure.score(-1.0).run(jax.random.key(0))[1]
            -1.0
        """
        return Measure(lambda: numpyro.factor(name, log_weight))

    def map[B](self, function: Callable[[A], B]) -> Measure[B]:
        """The push-forward of the measure by ``function``.

        Example:
            >>> import jax
            >>> Measure.pure(2).map(lambda x: x * x).run(jax.random.key(0))[0]
            4
        """
        return Measure(lambda: function(self.body()))

    def bind[B](self, continuation: Callable[[A], Measure[B] | Random[B]]) -> Measure[B]:
        """Run this measure (scope ``0``), then ``continuation(value)`` (scope ``1``).

        Example:
            >>> import jax
            >>> m = Measure.pure(2).bind(lambda x: Measure.score(-x).map(lambda _: x))
            >>> m.run(jax.random.key(0))[:2]
            (2, -2.0)
        """

        def body() -> B:
            value = call(0, self)
            return call(1, continuation(value))

        return Measure(body)

    def condition(self, predicate: Callable[[A], bool], name: str = "condition") -> Measure[A]:
        """Restrict the measure to ``{x : predicate(x)}`` (a factor of 0 or :math:`-\\infty`).

        Example:
            >>> import jax
            >>> Measure.pure(3).condition(lambda x: x > 5).run(jax.random.key(0))[1]
            -inf
        """

        def body() -> A:
            value = call(0, self)
            numpyro.factor(name, 0.0 if bool(predicate(value)) else -math.inf)
            return value

        return Measure(body)

    def run(self, key: PRNGKeyArray) -> tuple[A, float, dict[Any, Site]]:
        """Run once: the value, the log weight and the trace (address -> :class:`Site`).

        Example:
            >>> import jax, numpyro.distributions as dist
            >>> m = Random.from_distribution(dist.Normal(), "z").measure()
            >>> list(m.run(jax.random.key(0))[2])
            [('random', 'z')]
        """
        frame = Frame(key=key)
        value = run_frame(frame, self.body)
        return value, frame.log_weight, frame.trace
