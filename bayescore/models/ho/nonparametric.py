r"""Non-parametric random objects, drawn lazily: Dirichlet processes, Poisson processes, streams.

* :func:`dp` is a Dirichlet process :math:`G \sim \mathrm{DP}(\alpha, H)` as a random
  distribution, by Sethuraman's stick-breaking (Statistica Sinica 1994):

  .. math::

      G = \sum_{k \ge 0} \pi_k \delta_{\theta_k}, \qquad
      \pi_k = \beta_k \prod_{j<k} (1 - \beta_j), \quad \beta_k \sim \mathrm{Beta}(1, \alpha),
      \quad \theta_k \sim H.

  A draw from :math:`G` is a uniform :math:`u` (site ``(name, "draw", n)``) and the first
  index :math:`k` with :math:`u < \sum_{j \le k} \pi_j`; sticks and atoms are drawn only when
  a draw reaches them, at ``(name, "stick", k)`` and ``(name, "atom", k)``. There is no
  truncation. Two draws are equal with probability :math:`1/(1 + \alpha)` (for a continuous
  :math:`H`), as in LazyPPL's ``dp`` (Dash et al., POPL 2023).
* :func:`poisson_process` is a homogeneous Poisson process on :math:`[0, \text{upper}]`: a count
  :math:`N \sim \mathrm{Poisson}(\text{rate} \cdot \text{upper})` and :math:`N` uniform points,
  each its own site, so trace MH may add and remove points.
* :func:`stream` is an infinite i.i.d. sequence whose :math:`i`-th element is drawn when
  first read (LazyPPL's ``iid``).
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from bayescore.core.errors import ArgumentError, check_positive_float, check_positive_int
from bayescore.models.ho.keys import canonical
from bayescore.models.ho.runtime import Frame, current_frame
from bayescore.models.ho.sites import sample_in_scope


def _check_distribution(name: str, value: Any) -> Any:
    if not isinstance(value, dist.Distribution):
        raise ArgumentError(
            f"{name} must be a NumPyro distribution, found {type(value).__name__}. Pass for "
            f"instance dist.Normal(0.0, 1.0)."
        )
    return value


class DirichletProcess:
    """A random distribution :math:`G \\sim \\mathrm{DP}(\\alpha, H)` (see :func:`dp`).

    Attributes:
        name: the prefix of its sites' addresses.
        alpha: the concentration :math:`\\alpha`.
        base: the base distribution :math:`H` (a NumPyro distribution).
        sticks: the stick proportions :math:`\\beta_k` drawn so far; ``atoms`` the
            :math:`\\theta_k`.
        num_draws: the number of draws taken from :math:`G`.

    Example:
        >>> import jax, numpyro.distributions as dist
        >>> from bayescore.models.ho.measure import Random
        >>> def two_draws():
        ...     g = dp("g", 1.0, dist.Normal())
        ...     return g.sample_index(), g.sample_index()
        >>> first, second = Random.from_model(two_draws).draw(jax.random.key(0))
        >>> first >= 0 and second >= 0
        True
    """

    def __init__(self, name: Any, alpha: float, base: Any, frame: Frame, prefix: tuple):
        self.name = canonical(name)
        self.alpha = alpha
        self.base = base
        self.frame = frame
        self.prefix = prefix
        self.sticks: list[float] = []
        self.atoms: list[Any] = []
        self.num_draws = 0

    def weight(self, index: int) -> float:
        """:math:`\\pi_k`, breaking the sticks up to ``index`` if needed.

        Example:
            >>> import jax, numpyro.distributions as dist
            >>> from bayescore.models.ho.measure import Random
            >>> g = Random.from_model(lambda: dp("g", 1.0, dist.Normal())).draw(
            ...     jax.random.key(0))
            >>> 0.0 < g.weight(0) < 1.0
            True
        """
        while len(self.sticks) <= index:
            stick = sample_in_scope(
                self.frame,
                self.prefix,
                (self.name, "stick", len(self.sticks)),
                dist.Beta(1.0, self.alpha),
            )
            self.sticks.append(float(stick))
        remaining = float(np.prod([1.0 - stick for stick in self.sticks[:index]]))
        return self.sticks[index] * remaining

    def atom(self, index: int) -> Any:
        """:math:`\\theta_k`, drawn from the base at ``(name, "atom", k)`` when first asked.

        Example:
            >>> import jax, numpyro.distributions as dist
            >>> from bayescore.models.ho.measure import Random
            >>> g = Random.from_model(lambda: dp("g", 1.0, dist.Normal())).draw(
            ...     jax.random.key(0))
            >>> bool(g.atom(2) == g.atom(2)), len(g.atoms)
            (True, 3)
        """
        while len(self.atoms) <= index:
            self.atoms.append(
                sample_in_scope(
                    self.frame, self.prefix, (self.name, "atom", len(self.atoms)), self.base
                )
            )
        return self.atoms[index]

    def sample_index(self) -> int:
        """Draw :math:`x \\sim G` and return the index :math:`k` of its atom (a cluster label).

        Example:
            >>> import jax, numpyro.distributions as dist
            >>> from bayescore.models.ho.measure import Random
            >>> def label():
            ...     return dp("g", 0.5, dist.Normal()).sample_index()
            >>> Random.from_model(label).draw(jax.random.key(0)) >= 0
            True
        """
        uniform = float(
            sample_in_scope(
                self.frame,
                self.prefix,
                (self.name, "draw", self.num_draws),
                dist.Uniform(0.0, 1.0),
            )
        )
        self.num_draws += 1
        index, cumulative = 0, self.weight(0)
        while uniform >= cumulative:
            index += 1
            cumulative += self.weight(index)
        return index

    def sample(self) -> Any:
        """Draw :math:`x \\sim G`: the atom :math:`\\theta_k` of :meth:`sample_index`.

        Example:
            >>> import jax, numpyro.distributions as dist
            >>> from bayescore.models.ho.measure import Random
            >>> def draw():
            ...     return dp("g", 0.5, dist.Normal()).sample()
            >>> Random.from_model(draw).draw(jax.random.key(0)).shape
            ()
        """
        return self.atom(self.sample_index())

    def __repr__(self) -> str:
        return f"DirichletProcess({self.name!r}, alpha={self.alpha}, {len(self.sticks)} sticks)"


def dp(name: Any, alpha: float, base: Any) -> DirichletProcess:
    """A Dirichlet process :math:`G \\sim \\mathrm{DP}(\\alpha, H)` in the running program,
    drawn lazily by stick-breaking (the module docstring); ``G.sample()`` draws from it.

    Args:
        name: the prefix of its sites' addresses.
        alpha: the concentration :math:`\\alpha > 0`.
        base: the base distribution :math:`H`, a NumPyro distribution.

    Example:
        >>> import jax, numpyro.distributions as dist
        >>> from bayescore.models.ho.measure import Random
        >>> def three_draws():
        ...     g = dp("g", 0.3, dist.Normal())
        ...     return [float(g.sample()) for _ in range(3)]
        >>> len(Random.from_model(three_draws).draw(jax.random.key(0)))
        3
    """
    alpha = check_positive_float(
        "alpha", alpha, hint="Pass a concentration alpha > 0 (larger: more atoms in use)."
    )
    base = _check_distribution("base", base)
    frame = current_frame(required="ho.dp")
    return DirichletProcess(name, alpha, base, frame, tuple(frame.scope))


def poisson_process(name: Any, rate: float, upper: float) -> Any:
    """The points of a Poisson process of constant ``rate`` on :math:`[0, \\text{upper}]`,
    sorted: :math:`N \\sim \\mathrm{Poisson}(\\text{rate} \\cdot \\text{upper})` at
    ``(name, "count")``, then :math:`N` points :math:`\\mathrm{U}(0, \\text{upper})` at
    ``(name, i)``.

    Example:
        >>> import jax
        >>> from bayescore.models.ho.measure import Random
        >>> points = Random.from_model(poisson_process, "p", 3.0, 2.0).draw(jax.random.key(0))
        >>> points.ndim, bool((points >= 0).all() & (points <= 2).all())
        (1, True)
    """
    hint = "Pass a rate of points per unit length and an interval [0, upper], upper > 0."
    rate = check_positive_float("rate", rate, allow_zero=True, hint=hint)
    upper = check_positive_float("upper", upper, hint=hint)
    current_frame(required="ho.poisson_process")
    label = canonical(name)
    count = int(numpyro.sample((label, "count"), dist.Poisson(rate * upper)))
    points = [numpyro.sample((label, index), dist.Uniform(0.0, upper)) for index in range(count)]
    return jnp.asarray(np.sort(np.asarray(points, dtype=np.float64)), dtype=float)


class Stream:
    """An infinite i.i.d. sequence, read lazily: ``s[i]`` is drawn at ``(name, i)`` (see
    :func:`stream`).

    Example:
        >>> import jax, numpyro.distributions as dist
        >>> from bayescore.models.ho.measure import Random
        >>> s = Random.from_model(lambda: stream("s", dist.Normal())).draw(jax.random.key(0))
        >>> len(s.take(3)), bool(s[1] == s.take(2)[1])
        (3, True)
    """

    def __init__(self, name: Any, distribution: Any, frame: Frame, prefix: tuple):
        self.name = canonical(name)
        self.distribution = distribution
        self.frame = frame
        self.prefix = prefix
        self.drawn: dict[int, Any] = {}

    def __getitem__(self, index: int) -> Any:
        index = check_positive_int("index", index, allow_zero=True)
        if index not in self.drawn:
            self.drawn[index] = sample_in_scope(
                self.frame, self.prefix, (self.name, index), self.distribution
            )
        return self.drawn[index]

    def take(self, count: int) -> list:
        """The first ``count`` elements.

        Example:
            >>> import jax, numpyro.distributions as dist
            >>> from bayescore.models.ho.measure import Random
            >>> def first_two():
            ...     return stream("s", dist.Bernoulli(0.5)).take(2)
            >>> len(Random.from_model(first_two).draw(jax.random.key(0)))
            2
        """
        return [self[index] for index in range(check_positive_int("count", count, allow_zero=True))]

    def __repr__(self) -> str:
        return f"Stream({self.name!r}, {len(self.drawn)} drawn)"


def stream(name: Any, distribution: Any) -> Stream:
    """An infinite i.i.d. sequence of draws of ``distribution``, each drawn when first read.

    Example:
        >>> import jax, numpyro, numpyro.distributions as dist
        >>> from bayescore.models.ho.measure import Measure
        >>> def model():
        ...     noise = stream("noise", dist.Normal())
        ...     numpyro.sample("y", dist.Normal(noise[0] + noise[5], 1.0), obs=0.3)
        ...     return noise
        >>> _, _, trace = Measure.from_model(model).run(jax.random.key(0))
        >>> list(trace)
        [('noise', 0), ('noise', 5), 'y']
    """
    distribution = _check_distribution("distribution", distribution)
    frame = current_frame(required="ho.stream")
    return Stream(name, distribution, frame, tuple(frame.scope))
