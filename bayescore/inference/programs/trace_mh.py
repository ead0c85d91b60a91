r"""Trace Metropolis–Hastings on programs, with four kernels.

A state is a trace :math:`x` (latent sites :math:`A`, values :math:`x_a`, log weight
:math:`\ell(x)` of its observed and factor sites). Every kernel proposes a new run of the
program in which some latent values are *replayed* by address (sites not met before are drawn
from their priors, sites no longer met are dropped) and accepts it with an MH ratio in which
the fresh and dropped sites' priors cancel against the proposal. With :math:`R` the replayed
sites met again and :math:`p'_a` their priors in the new context:

* :func:`single_site` regenerates one uniformly chosen site from its prior:

  .. math::

      \alpha = \min\Big(1, \frac{e^{\ell(x')}}{e^{\ell(x)}}
          \prod_{a \in R} \frac{p'_a(x_a)}{p_a(x_a)} \, \frac{n}{n'}\Big),

  :math:`n/n'` the dimension correction of monad-bayes's ``mhTransWithBool`` (Ścibior et al.,
  POPL 2018, Sec. 7; Wingate, Stuhlmüller, Goodman, AISTATS 2011);
* :func:`lazy` (LazyPPL's ``mh p``) regenerates every site independently with probability
  :math:`p`, and accepts with the same ratio without :math:`n/n'`: the choices on sites met
  by both runs have the same probability :math:`p^{|G|}(1-p)^{|R|}` forwards and backwards
  (:math:`G` the regenerated sites met again), and the choices on the other sites do not
  change the proposal;
* :func:`restart` (LazyPPL's ``mhirreducible``) proposes a fresh run from the prior with
  probability :math:`q` (an independence proposal: :math:`\alpha = \min(1,
  e^{\ell(x') - \ell(x)})`), else makes a step of its inner kernel; a mixture with fixed weights
  of invariant kernels is invariant, and the prior moves make it irreducible;
* :func:`site_kernel` moves one site :math:`a` by a user proposal :math:`q` and replays all
  the others:

  .. math::

      \alpha = \min\Big(1, \frac{e^{\ell(x')}}{e^{\ell(x)}}
          \frac{p'_a(x'_a)}{p_a(x_a)} \prod_{b \in R} \frac{p'_b(x_b)}{p_b(x_b)}
          \frac{q(x_a \mid x'_a)}{q(x'_a \mid x_a)}\Big);

  a state without the site is left as it is.

:func:`kernel_move` makes one step as a program whose choices (the chosen sites, the restart
coin, the acceptance) are sites: :func:`~bayescore.inference.programs.enumerate` integrates it
exactly, which is how the kernels' invariance is tested.

This module is the eager tier (Python re-execution, any control flow); on a static program
:func:`trace_mh` runs the compiled tier of
:mod:`~bayescore.inference.programs.compiled_mh` (the whole chain one ``lax.scan``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from jaxtyping import PRNGKeyArray

from bayescore.core.errors import (
    ArgumentError,
    InitializationError,
    ModelError,
    check_positive_int,
)
from bayescore.inference.programs import compiled
from bayescore.inference.programs.population import as_body
from bayescore.models.ho.keys import address_hash, canonical
from bayescore.models.ho.measure import Measure, Random
from bayescore.models.ho.runtime import Frame, Site, run_frame, run_nested


class SingleSite(NamedTuple):
    """The single-site prior-regeneration kernel (see the module docstring)."""


class Lazy(NamedTuple):
    """LazyPPL's ``mh p``: every site regenerated with probability ``p``."""

    p: float


class Restart(NamedTuple):
    """A fresh prior run with probability ``q``, else a step of ``inner``."""

    q: float
    inner: Any


class SiteKernel(NamedTuple):
    """A user proposal for the site ``address``; the other sites replayed."""

    address: Any
    proposal: Callable


def single_site() -> SingleSite:
    """The kernel that regenerates one uniformly chosen latent site from its prior.

    Example:
        >>> single_site()
        SingleSite()
    """
    return SingleSite()


def _check_probability(name: str, value: Any, allow_zero: bool) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        value = math.nan
    if not (0.0 <= value <= 1.0) or (value == 0.0 and not allow_zero):
        low = "0 <=" if allow_zero else "0 <"
        raise ArgumentError(f"{name} must be a probability, {low} {name} <= 1, found {value}.")
    return value


def lazy(p: float) -> Lazy:
    """LazyPPL's ``mh p``: regenerate each latent site independently with probability ``p``
    (``p`` about one over the number of sites is close to single-site MH, ``p = 1`` is an
    independence sampler from the prior).

    Example:
        >>> lazy(0.5)
        Lazy(p=0.5)
    """
    return Lazy(_check_probability("p", p, allow_zero=False))


def restart(q: float, inner: Any = None) -> Restart:
    """With probability ``q`` propose a fresh run from the prior, else step with ``inner``
    (default :func:`single_site`): LazyPPL's ``mhirreducible`` when ``inner`` is
    :func:`lazy`.

    Example:
        >>> restart(0.1, lazy(0.2))
        Restart(q=0.1, inner=Lazy(p=0.2))
    """
    inner = single_site() if inner is None else _check_kernel(inner)
    return Restart(_check_probability("q", q, allow_zero=True), inner)


def random_walk(scale: float) -> Callable:
    """A symmetric Gaussian random-walk proposal for :func:`site_kernel`.

    Example:
        >>> import jax
        >>> value, forward, backward = random_walk(0.5)(jax.random.key(0), 1.0)
        >>> forward == backward == 0.0
        True
    """
    scale = float(scale)
    if not scale > 0.0:
        raise ArgumentError(f"scale must be positive, found {scale}.")

    def proposal(key: PRNGKeyArray, value: Any) -> tuple[Any, float, float]:
        value = jnp.asarray(value)
        return value + scale * jax.random.normal(key, value.shape), 0.0, 0.0

    return proposal


def site_kernel(address: Any, proposal: Callable) -> SiteKernel:
    """A user proposal for one site (a name, or the tuple address of a nested site).

    ``proposal(key, value)`` returns ``(new_value, log_q_forward, log_q_backward)``, the log
    densities of the move and of its reverse (:func:`random_walk` is a symmetric one). The
    other latent sites are replayed; a state without the site is left as it is.

    Example:
        >>> site_kernel("slope", random_walk(0.3)).address
        'slope'
    """
    if not callable(proposal):
        raise ArgumentError(
            f"proposal must be a function (key, value) -> (new value, log q forward, log q "
            f"backward), found {type(proposal).__name__}."
        )
    return SiteKernel(canonical(address), proposal)


def _check_kernel(kernel: Any) -> Any:
    if not isinstance(kernel, SingleSite | Lazy | Restart | SiteKernel):
        raise ArgumentError(
            f"kernel must be single_site(), lazy(p), restart(q, inner) or site_kernel(address, "
            f"proposal), found {type(kernel).__name__}. Pass one of those."
        )
    return kernel


class Chain(NamedTuple):
    """Draws of trace MH.

    Attributes:
        values: the program's value after each step.
        log_weights: the log weight :math:`\\ell` of each state.
        accepted: whether each step's proposal was accepted.
        trace: the final trace.
        latents: each step's values of the latent sites whose addresses are strings
            (``{name: value}``; a step that rejects shares its predecessor's dict).
        observed: each step's observed sites whose addresses are strings (``{name: Site}``,
            shared likewise), for the pointwise log-likelihood of ``to_arviz``.

    A compiled chain keeps its steps as arrays (:attr:`particles`); its values, latents,
    observed sites and final trace are built when read.

    Example:
        >>> chain = Chain([1, 2], np.zeros(2), np.array([True, False]), {})
        >>> chain.acceptance_rate
        0.5
    """

    values: list
    log_weights: np.ndarray
    accepted: np.ndarray
    trace: dict[Any, Site]
    latents: list | None = None
    observed: list | None = None

    @property
    def acceptance_rate(self) -> float:
        return float(np.mean(self.accepted))

    @property
    def particles(self) -> Any:
        """The steps of a compiled chain as device arrays, one row per step
        (:class:`~bayescore.inference.programs.compiled.Particles`; ``None`` for the eager
        tier)."""
        return getattr(self.latents, "particles", None)


def latent_addresses(trace: dict[Any, Site]) -> list:
    """The addresses of a trace's latent sites; refuses sites MH cannot score.

    Example:
        >>> import numpyro.distributions as dist
        >>> latent_addresses({"x": Site(1, -0.7, False, dist.Bernoulli(0.5))})
        ['x']
    """
    latent = []
    for address, site in trace.items():
        if site.is_latent:
            if not getattr(site.distribution, "has_density", True):
                raise ModelError(
                    f"site {address!r} ({type(site.distribution).__name__}) has no density, so "
                    f"trace MH cannot score a move that keeps or changes it. Use "
                    f"resampler='multinomial' inside programs run by trace MH, or pmmh."
                )
            latent.append(address)
    return latent


def _replayed_ratio(old_trace: dict, new_trace: dict, replay: dict) -> float:
    """:math:`\\sum_{a \\in R} \\log p'_a(x_a) - \\log p_a(x_a)` over the replayed sites met."""
    return sum(
        new_trace[a].log_prob - old_trace[a].log_prob
        for a, site in new_trace.items()
        if site.is_latent and a in replay
    )


def log_acceptance(
    old_trace: dict[Any, Site],
    old_log_weight: float,
    new_trace: dict[Any, Site],
    new_log_weight: float,
    replay: dict[Any, Any],
) -> float:
    r""":math:`\log` of the single-site acceptance ratio in the module docstring.

    Example:
        >>> import numpyro.distributions as dist
        >>> old = {"x": Site(0, -0.7, False, dist.Bernoulli(0.5))}
        >>> new = {"x": Site(1, -0.7, False, dist.Bernoulli(0.5))}
        >>> log_acceptance(old, -2.0, new, -1.0, {})
        1.0
    """
    old_latent = [a for a, site in old_trace.items() if site.is_latent]
    new_latent = [a for a, site in new_trace.items() if site.is_latent]
    return (
        new_log_weight
        - old_log_weight
        + _replayed_ratio(old_trace, new_trace, replay)
        + math.log(len(old_latent))
        - math.log(len(new_latent))
    )


class _NumpyChoices:
    """The kernels' choices drawn by a NumPy generator, proposals run as root frames."""

    def __init__(self, body: Callable, key: PRNGKeyArray, rng: Any, affine: int):
        self.body, self.key, self.rng, self.affine = body, key, rng, affine

    def categorical(self, name: str, n: int) -> int:
        return int(self.rng.integers(n))

    def bernoulli(self, name: Any, p: float) -> bool:
        return bool(self.rng.uniform() < p)

    def bernoullis(self, name: str, p: float, n: int) -> list[bool]:
        return list(self.rng.uniform(size=n) < p)

    def accept(self, log_ratio: float) -> bool:
        return bool(math.log(self.rng.uniform()) < log_ratio)

    def run(self, name: str, replay: dict) -> tuple[Any, Frame]:
        key = self.key if name == "proposal" else jax.random.fold_in(self.key, 1)
        frame = Frame(key=key, replay=replay, affine=self.affine)
        return run_frame(frame, self.body), frame

    def proposal_key(self) -> PRNGKeyArray:
        return jax.random.fold_in(self.key, 2)


class _SiteChoices:
    """The kernels' choices as sites of the running program under ``address``."""

    def __init__(self, body: Callable, address: tuple, key: PRNGKeyArray | None):
        self.body, self.address, self.key = body, address, key

    def categorical(self, name: str, n: int) -> int:
        probs = jnp.ones(n) / n
        return int(numpyro.sample(self.address + (name,), dist.Categorical(probs=probs)))

    def bernoulli(self, name: Any, p: float) -> bool:
        return bool(numpyro.sample(self.address + (name,), dist.Bernoulli(probs=p)))

    def bernoullis(self, name: str, p: float, n: int) -> list[bool]:
        return [self.bernoulli((name, i), p) for i in range(n)]

    def accept(self, log_ratio: float) -> bool:
        probability = 1.0 if not log_ratio < 0.0 else math.exp(log_ratio)
        return self.bernoulli("accept", probability)

    def run(self, name: str, replay: dict) -> tuple[Any, Frame]:
        value, frame, _ = run_nested(self.body, self.address + (name,), replay=replay)
        return value, frame

    def proposal_key(self) -> PRNGKeyArray | None:
        if self.key is None:
            return None
        return jax.random.fold_in(self.key, np.uint32(address_hash(self.address)))


def _step(kernel: Any, state: tuple, choices: Any) -> tuple[tuple, bool]:
    """One step of ``kernel`` from ``state = (value, frame)``; returns the new state and
    whether the proposal was accepted."""
    value, frame = state
    trace = frame.trace
    latent = latent_addresses(trace)
    if isinstance(kernel, Restart):
        if choices.bernoulli("restart", kernel.q):
            new_value, new_frame = choices.run("restart", {})
            log_ratio = new_frame.log_weight - frame.log_weight
        else:
            return _step(kernel.inner, state, choices)
    elif not latent:
        return state, False
    elif isinstance(kernel, SingleSite):
        chosen = latent[choices.categorical("site", len(latent))]
        replay = {a: trace[a].value for a in latent if a != chosen}
        new_value, new_frame = choices.run("proposal", replay)
        log_ratio = log_acceptance(
            trace, frame.log_weight, new_frame.trace, new_frame.log_weight, replay
        )
    elif isinstance(kernel, Lazy):
        regenerate = choices.bernoullis("regenerate", kernel.p, len(latent))
        if not any(regenerate):  # the proposal is the state itself
            return state, True
        replay = {a: trace[a].value for a, r in zip(latent, regenerate, strict=True) if not r}
        new_value, new_frame = choices.run("proposal", replay)
        log_ratio = (
            new_frame.log_weight
            - frame.log_weight
            + _replayed_ratio(trace, new_frame.trace, replay)
        )
    else:  # SiteKernel
        if kernel.address not in latent:
            return state, False
        proposed, log_forward, log_backward = kernel.proposal(
            choices.proposal_key(), trace[kernel.address].value
        )
        replay = {a: trace[a].value for a in latent}
        replay[kernel.address] = proposed
        new_value, new_frame = choices.run("proposal", replay)
        log_ratio = (
            new_frame.log_weight
            - frame.log_weight
            + _replayed_ratio(trace, new_frame.trace, replay)
            + float(log_backward)
            - float(log_forward)
        )
    if frame.log_weight == -math.inf:  # a state of weight zero (only inside enumeration)
        log_ratio = 0.0
    if choices.accept(log_ratio):
        return (new_value, new_frame), True
    return state, False


def kernel_move(
    kernel: Any,
    program: Measure | Random | Callable,
    value: Any,
    frame: Frame,
    address: tuple,
    key: PRNGKeyArray | None = None,
) -> tuple[Any, Frame]:
    """One step of ``kernel`` from the state ``(value, frame)``, run inside a program: the
    kernel's choices are sites under ``address`` and its proposals nested runs, so
    :func:`~bayescore.inference.programs.enumerate` integrates the step exactly. ``key`` is
    the key of a :func:`site_kernel` proposal (``None`` without one).

    Example:
        >>> import numpyro, numpyro.distributions as dist
        >>> from bayescore.inference import programs
        >>> from bayescore.models import ho
        >>> from bayescore.models.ho.runtime import run_nested
        >>> m = ho.from_model(lambda: int(numpyro.sample("x", dist.Bernoulli(0.3))))
        >>> def moved():
        ...     value, frame, _ = run_nested(as_body(m), ("start",))
        ...     return kernel_move(lazy(0.5), m, value, frame, ("move",))[0]
        >>> round(programs.enumerate(ho.Measure(moved)).probability(lambda x: x == 1), 12)
        0.3
    """
    body = as_body(program) if isinstance(program, Measure | Random) else program
    return _step(_check_kernel(kernel), (value, frame), _SiteChoices(body, address, key))[0]


def start(body: Callable, key: PRNGKeyArray, affine: int, max_init_tries: int) -> tuple[Any, Frame]:
    """A chain's first state ``(value, frame)``: the first of ``max_init_tries`` prior runs
    (keys ``fold_in(key, i)``) with a finite log weight; both tiers start here.

    Example:
        >>> import jax, numpyro
        >>> value, frame = start(lambda: numpyro.factor("w", -1.0), jax.random.key(0), 0, 3)
        >>> frame.log_weight
        -1.0
    """
    for attempt in range(max_init_tries):
        frame = Frame(key=jax.random.fold_in(key, attempt), affine=affine)
        value = run_frame(frame, body)
        if frame.log_weight > -math.inf:
            latent_addresses(frame.trace)  # refuses a latent site without a density
            return value, frame
    raise InitializationError(
        f"all {max_init_tries} prior runs of the program had weight zero (log weight "
        f"-inf), so trace MH has no state to start from. Check the program's conditions, "
        f"or pass a larger max_init_tries."
    )


def _string_latents(trace: dict[Any, Site]) -> dict[str, Any]:
    return {
        a: np.asarray(site.value)
        for a, site in trace.items()
        if isinstance(a, str) and site.is_latent
    }


def _string_observed(trace: dict[Any, Site]) -> dict[str, Site]:
    return {a: site for a, site in trace.items() if isinstance(a, str) and site.observed}


def trace_mh(
    program: Measure | Random,
    num_steps: int,
    key: PRNGKeyArray,
    kernel: Any = None,
    *,
    max_init_tries: int = 100,
    tier: str = "auto",
) -> Chain:
    """Run ``num_steps`` steps of trace MH with ``kernel`` (default :func:`single_site`) from a
    draw of the prior.

    The chain starts at the first of ``max_init_tries`` prior runs with a finite log weight
    (a chain started at weight zero would reject forever, monad-bayes issue #121).

    ``tier="auto"`` runs a static program (the same sites and shapes on every run) in the
    compiled tier: the whole chain is one ``lax.scan`` in ``jax.jit``, every kernel a
    regeneration proposal (:mod:`~bayescore.inference.programs.compiled_mh`); a dynamic
    program, a site kernel whose proposal does not trace (``float()`` of its value), or
    sites drawn inside ``ho.mem`` run in the eager tier, with one ``INFO`` notice naming
    the program and the reason. ``"compiled"`` forces the compiled tier (raising
    :class:`~bayescore.inference.programs.DynamicProgramError` where it cannot run),
    ``"eager"`` the eager one. Both tiers start from the same state and sample the same
    chain law; their moves use different random numbers.

    Example:
        >>> import jax, numpyro, numpyro.distributions as dist
        >>> from bayescore.models import ho
        >>> def coin():
        ...     x = numpyro.sample("x", dist.Bernoulli(0.5))
        ...     numpyro.factor("w", 0.0 if x else -1.0)
        ...     return int(x)
        >>> chain = trace_mh(ho.from_model(coin), 20, jax.random.key(0), restart(0.2, lazy(0.5)))
        >>> len(chain.values), set(chain.values) <= {0, 1}, chain.latents[0].keys()
        (20, True, dict_keys(['x']))
        >>> def static():  # no Python control flow on random values: the compiled tier
        ...     x = numpyro.sample("x", dist.Normal())
        ...     numpyro.sample("y", dist.Normal(x, 0.5), obs=1.0)
        ...     return x
        >>> chain = trace_mh(ho.from_model(static), 200, jax.random.key(0))
        >>> chain.particles.latents["x"].shape, 0.0 < chain.acceptance_rate < 1.0
        ((200,), True)
    """
    from bayescore.inference.programs import compiled_mh  # it builds on this module's kernels

    num_steps = check_positive_int("num_steps", num_steps)
    max_init_tries = check_positive_int("max_init_tries", max_init_tries)
    kernel = _check_kernel(single_site() if kernel is None else kernel)
    body = as_body(program)
    affine = 1 if isinstance(program, Random) else 0
    outcome = compiled.attempt(
        tier,
        body,
        "trace_mh",
        lambda _: compiled_mh.chain_kernel(body, kernel, num_steps, max_init_tries, affine),
        key,
    )
    if outcome is not None:
        return outcome
    init_key, step_key, choice_key = jax.random.split(key, 3)
    rng = np.random.default_rng(np.asarray(jax.random.key_data(choice_key)).tolist())
    value, frame = start(body, init_key, affine, max_init_tries)
    values, log_weights, accepted = [], np.empty(num_steps), np.zeros(num_steps, dtype=bool)
    latents, observed = [], []
    current = _string_latents(frame.trace)
    current_observed = _string_observed(frame.trace)
    for step in range(num_steps):
        choices = _NumpyChoices(body, jax.random.fold_in(step_key, step), rng, affine)
        (value, new_frame), accepted[step] = _step(kernel, (value, frame), choices)
        if new_frame is not frame:
            frame, current = new_frame, _string_latents(new_frame.trace)
            current_observed = _string_observed(new_frame.trace)
        values.append(value)
        latents.append(current)
        observed.append(current_observed)
        log_weights[step] = frame.log_weight
    return Chain(values, log_weights, accepted, frame.trace, latents, observed)
