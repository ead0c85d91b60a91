r"""The compiled tier of trace MH and PMMH: a static program's chain as one ``lax.scan``.

For a static program (:func:`~bayescore.inference.programs.compiled.analyse`: the same
:math:`n` latent sites on every run) a state is a vector of latent values :math:`x`, their log
priors :math:`\log p_a(x_a)` and the log weight :math:`\ell(x)`. Each kernel of
:mod:`~bayescore.inference.programs.trace_mh` is a *regeneration proposal*
:math:`(\tilde x, m, c)` (:func:`propose`): values to replay :math:`\tilde x`, a mask
:math:`m` of the sites redrawn from their priors, and a log correction :math:`c`,

* ``single_site()``: :math:`\tilde x = x`, :math:`m = e_j` with :math:`j` uniform on the
  :math:`n` sites, :math:`c = 0`;
* ``lazy(p)``: :math:`\tilde x = x`, :math:`m_a \sim \mathrm{Bernoulli}(p)` independently,
  :math:`c = 0`;
* ``restart(q, inner)``: :math:`m = 1` (a fresh prior run) with probability :math:`q`, else
  the inner kernel's proposal;
* ``site_kernel(a, q)``: :math:`\tilde x_a \sim q(\cdot \mid x_a)`, the other sites replayed,
  :math:`m = 0`, :math:`c = \log q(x_a \mid \tilde x_a) - \log q(\tilde x_a \mid x_a)`.

One replayed run of the program (:func:`run_regenerated`), in which a handler redraws each
masked site from the distribution it meets in *this* run (later sites see the new values;
the key of site :math:`a` is :math:`\mathrm{fold\_in}(k, h_0(a))`, as in a root frame, or
:math:`k` for every site under ``single_site``, which uses one draw per step), gives
:math:`x'`, :math:`\ell(x')` and the log priors :math:`\log p'_a(x'_a)`, and

.. math::

    \log \alpha = \ell(x') - \ell(x) + \sum_{a:\, m_a = 0} \big[\log p'_a(x'_a)
        - \log p_a(x_a)\big] + c,

the single-site ratio of trace MH (Wingate, Stuhlmüller, Goodman, AISTATS 2011) with its
dimension correction :math:`n / n' = 1`, since a static program has the same sites on every
run (:func:`log_acceptance`). The whole chain (all ``num_steps`` steps) is one ``lax.scan``;
the start is the eager tier's (the first of ``max_init_tries`` prior runs with a finite
weight, :func:`~bayescore.inference.programs.trace_mh.start`), so both tiers start from the
same state.

Sites drawn inside a memoized function (``ho.mem``) run under a frame handler of their own,
out of the regeneration handler's reach: a program with such sites runs in the eager tier.

PMMH (:func:`pmmh_kernel`) is this chain on the program ``θ ~ parameters;
factor(log Ẑ(θ))``, :math:`\hat Z(θ)` from the compiled SMC of ``model(θ)`` with θ an input.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
from jax.scipy.special import logsumexp
from jaxtyping import Array, Bool, Float, PRNGKeyArray
from numpyro.primitives import Messenger

from bayescore.inference.programs import compiled
from bayescore.inference.programs.population import Population, as_body
from bayescore.inference.programs.trace_mh import (
    Chain,
    Lazy,
    Restart,
    SingleSite,
    SiteKernel,
    latent_addresses,
    single_site,
    start,
)
from bayescore.models.ho.keys import address_hash, key_at
from bayescore.models.ho.measure import call
from bayescore.models.ho.runtime import Frame, current_frame


class State(NamedTuple):
    """A state of a compiled chain.

    Attributes:
        key: the key of the run that made the state (its ``numpyro.prng_key`` values).
        latents: the latent sites' values, in run order.
        log_priors: :math:`\\log p_a(x_a)` of each latent site, ``(n,)``.
        log_weight: :math:`\\ell(x)`, the observed and factor sites' log density.
        log_likelihoods: each observed or factor site's log density, in run order (their sum
            is ``log_weight``); read by a move targeting a prefix of the program
            (:func:`chain_step` with a ``stage``).
    """

    key: PRNGKeyArray
    latents: list
    log_priors: Float[Array, " site"]
    log_weight: Float[Array, ""]
    log_likelihoods: Float[Array, " observed"] | None = None


class _Regenerate(Messenger):
    """Redraws the masked latent sites from the distributions they meet in this run; the
    frame then replays the redrawn value, scoring it under the same distribution."""

    def __init__(self, frame: Frame, redraw: dict):
        super().__init__(fn=None)
        self.frame, self.redraw, self.met = frame, redraw, set()

    def process_message(self, msg: dict) -> None:
        if msg["type"] != "sample" or msg["is_observed"]:
            return
        address = self.frame.address(msg["name"])
        if address in self.redraw:
            flag, draw = self.redraw[address]
            replay = self.frame.replay
            replay[address] = jnp.where(flag, draw(msg["fn"], address), replay[address])
            self.met.add(address)


def run_regenerated(
    body: Callable,
    structure: compiled.Structure,
    key: PRNGKeyArray,
    replay: list,
    regenerate: Bool[Array, " site"],
    fresh: list | None = None,
    one_key: bool = False,
) -> tuple[Any, State]:
    """One run of a static program: latent site :math:`a` replays ``replay[a]``, or, where
    ``regenerate[a]``, a draw from the prior it meets in this run (``fresh[a]`` instead of a
    draw, when given: enumeration tests pass the values). Traceable; returns the program's
    value and the new :class:`State`.

    Site :math:`a` draws with the key ``fold_in(key, h0(a))``, or, with
    ``one_key`` (for a proposal that redraws at most one site, where draws sharing a key
    are never used together), every site with ``key``: alike sites then compute the same
    random numbers, which XLA compiles once.

    Example:
        >>> import jax, jax.numpy as jnp, numpyro, numpyro.distributions as dist
        >>> def model():
        ...     x = numpyro.sample("x", dist.Normal())
        ...     return numpyro.sample("z", dist.Normal(x, 1.0))
        >>> structure = compiled.analyse(model)
        >>> _, state = run_regenerated(model, structure, jax.random.key(0), [1.0, 2.0],
        ...                            jnp.array([False, True]), fresh=[0.0, 1.0])
        >>> [float(v) for v in state.latents], float(state.log_priors[1]) == float(
        ...     dist.Normal().log_prob(0.0))
        ([1.0, 1.0], True)
    """
    latent = structure.latent_addresses

    if one_key:
        site_keys = [key] * len(latent)
    elif fresh is None and latent:
        # every site's key fold_in(key, h0(a)) in one vectorised threefry: XLA compiles one
        # hash, not one per site
        hashes = np.array([address_hash(a) for a in latent], np.uint32)
        site_keys = jax.vmap(jax.random.fold_in, (None, 0))(key, hashes)

    def draw_of(k: int) -> Callable:
        if fresh is not None:
            return lambda distribution, address: fresh[k]
        return lambda distribution, address: distribution.sample(site_keys[k])

    redraw = {a: (regenerate[k], draw_of(k)) for k, a in enumerate(latent)}
    handlers = []

    def regenerating() -> Any:
        handlers.append(_Regenerate(current_frame(), redraw))
        with handlers[-1]:
            return body()

    value, frame = compiled.run_traced(regenerating, key, dict(zip(latent, replay, strict=True)))
    compiled._check_sites(frame, structure, len(structure.addresses))
    missed = [a for a in latent if a not in handlers[0].met]
    if missed:
        raise compiled.StructureChanged(
            f"sites {missed} are drawn inside a memoized function (ho.mem), which the "
            f"compiled trace-MH tier cannot redraw"
        )
    latent_addresses(frame.trace)  # refuses a latent site without a density
    trace = frame.trace

    def stacked(addresses: tuple) -> Float[Array, " site"]:
        if not addresses:
            return jnp.zeros(0)
        return jnp.stack([jnp.asarray(trace[a].log_prob, float) for a in addresses])

    return value, State(
        key,
        [trace[a].value for a in latent],
        stacked(latent),
        jnp.asarray(frame.log_weight, float),
        stacked(structure.observed_addresses),
    )


def propose(
    kernel: Any,
    key: PRNGKeyArray,
    state: State,
    latent: tuple,
    eligible: Bool[Array, " site"] | None = None,
) -> tuple:
    """The regeneration proposal ``(replay, regenerate, log_correction)`` of ``kernel`` from
    ``state`` (the module docstring's :math:`(\\tilde x, m, c)`). A kernel that cannot move
    (no latent sites; a site kernel for a site the program does not have) gets
    :math:`c = -\\infty`: its steps are rejected, as in the eager tier.

    With ``eligible`` (a traceable mask) the kernel acts on the eligible sites alone, as if
    the program had only those: ``single_site`` picks one of them, ``lazy`` and ``restart``
    redraw none of the others, a site kernel for an ineligible site (or ``single_site``
    with no eligible site) gets :math:`c = -\\infty`. Resample-move SMC moves a particle's
    prefix this way (:mod:`~bayescore.inference.programs.compiled_rmsmc`).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from bayescore.inference.programs.trace_mh import single_site
        >>> state = State(jax.random.key(0), [0.0, 1.0], jnp.zeros(2), jnp.zeros(()))
        >>> _, regenerate, correction = propose(single_site(), jax.random.key(1), state, ("a", "b"))
        >>> int(regenerate.sum()), float(correction)
        (1, 0.0)
        >>> _, regenerate, _ = propose(single_site(), jax.random.key(1), state, ("a", "b"),
        ...                            eligible=jnp.array([False, True]))
        >>> regenerate.tolist()
        [False, True]
    """
    num_sites = len(latent)
    keep_all = jnp.zeros(num_sites, bool)
    if isinstance(kernel, Restart):
        coin_key, inner_key = jax.random.split(key)
        replay, regenerate, correction = propose(kernel.inner, inner_key, state, latent, eligible)
        restart = jax.random.uniform(coin_key) < kernel.q
        fresh = restart if eligible is None else restart & eligible
        return replay, regenerate | fresh, jnp.where(restart, 0.0, correction)
    if not num_sites or (isinstance(kernel, SiteKernel) and kernel.address not in latent):
        return state.latents, keep_all, jnp.asarray(-jnp.inf)
    if isinstance(kernel, SingleSite):
        if eligible is None:
            chosen = jax.random.randint(key, (), 0, num_sites)
            return state.latents, jnp.arange(num_sites) == chosen, jnp.asarray(0.0)
        count = jnp.sum(eligible)
        rank = jax.random.randint(key, (), 0, jnp.maximum(count, 1))
        # the rank-th eligible site
        chosen = eligible & (jnp.cumsum(eligible) == rank + 1)
        return state.latents, chosen, jnp.where(count > 0, 0.0, -jnp.inf)
    if isinstance(kernel, Lazy):
        redraw = jax.random.uniform(key, (num_sites,)) < kernel.p
        return (
            state.latents,
            redraw if eligible is None else redraw & eligible,
            jnp.asarray(0.0),
        )
    index = latent.index(kernel.address)
    current = jnp.asarray(state.latents[index])
    proposed, log_forward, log_backward = kernel.proposal(key, current)
    replay = list(state.latents)
    # the chain's carry has fixed types: the proposal's value takes the site's dtype and shape
    replay[index] = jnp.broadcast_to(jnp.asarray(proposed, current.dtype), current.shape)
    correction = jnp.asarray(log_backward - log_forward, float)
    if eligible is not None:
        correction = jnp.where(eligible[index], correction, -jnp.inf)
    return replay, keep_all, correction


def log_acceptance(
    old: State,
    new: State,
    regenerate: Bool[Array, " site"],
    log_correction: Any,
    prefix: tuple[Bool[Array, " site"], Bool[Array, " observed"]] | None = None,
) -> Float[Array, ""]:
    r""":math:`\log \alpha` of the module docstring: the weight ratio, the replayed sites'
    prior ratio and the proposal's correction.

    With ``prefix = (latent_in, observed_in)``, masks of the latent and of the observed
    sites of a prefix of the program (those of stage :math:`\le t`), the ratio targets the
    prefix measure :math:`\gamma_t` instead: only the prefix's observed sites weigh and only
    its replayed latent sites enter the prior ratio,

    .. math::

        \log \alpha_t = \sum_{o \in O_t} \big[\log p'_o(y_o) - \log p_o(y_o)\big]
            + \sum_{a \in A_t,\, m_a = 0} \big[\log p'_a(x'_a) - \log p_a(x_a)\big] + c,

    exact for :math:`\gamma_t` since no site of the prefix reads a later one.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> old = State(None, [0.0, 0.0], jnp.array([-1.0, -2.0]), jnp.array(-3.0))
        >>> new = State(None, [1.0, 0.0], jnp.array([-5.0, -1.5]), jnp.array(-2.0))
        >>> float(log_acceptance(old, new, jnp.array([True, False]), 0.0))
        1.5
        >>> old = old._replace(log_likelihoods=jnp.array([-1.0, -2.0]))
        >>> new = new._replace(log_likelihoods=jnp.array([-0.5, 0.0]))
        >>> prefix = (jnp.array([True, False]), jnp.array([True, False]))
        >>> float(log_acceptance(old, new, jnp.array([True, False]), 0.0, prefix))
        0.5
    """
    if prefix is None:
        replayed = jnp.where(regenerate, 0.0, new.log_priors - old.log_priors)
        return new.log_weight - old.log_weight + jnp.sum(replayed) + log_correction
    latent_in, observed_in = prefix
    # where, not a product: a site past the prefix may have a log density of -inf or nan
    replayed = jnp.where(latent_in & ~regenerate, new.log_priors - old.log_priors, 0.0)
    weighed = jnp.where(observed_in, new.log_likelihoods - old.log_likelihoods, 0.0)
    return jnp.sum(weighed) + jnp.sum(replayed) + log_correction


def prefix_masks(structure: compiled.Structure, stage: Any) -> tuple:
    """``(latent_in, observed_in)``: which latent and which observed sites (each in run
    order) belong to the prefix measure :math:`\\gamma_t`, the program suspended after its
    :math:`(t+1)`-th observed site: those of stage :math:`\\le t` (``stage`` traceable).

    Example:
        >>> import numpyro, numpyro.distributions as dist
        >>> def model():
        ...     x = numpyro.sample("x", dist.Normal())
        ...     numpyro.sample("y", dist.Normal(x, 1.0), obs=0.5)
        ...     z = numpyro.sample("z", dist.Normal(x, 1.0))
        ...     numpyro.sample("w", dist.Normal(z, 1.0), obs=0.5)
        >>> latent_in, observed_in = prefix_masks(compiled.analyse(model), 0)
        >>> latent_in.tolist(), observed_in.tolist()
        ([True, False], [True, False])
    """
    latent_stages = [s for s, a in zip(structure.stages, structure.latent, strict=True) if a]
    observed_stages = [s for s, o in zip(structure.stages, structure.observed, strict=True) if o]
    return (
        jnp.asarray(latent_stages, jnp.int32).reshape(-1) <= stage,
        jnp.asarray(observed_stages, jnp.int32).reshape(-1) <= stage,
    )


def chain_step(body: Callable, structure: compiled.Structure, kernel: Any) -> Callable:
    """``(state, key, stage=None) -> (state, accepted)``: one compiled trace-MH step
    (traceable). With a ``stage`` :math:`t` (traceable) the step targets the prefix measure
    :math:`\\gamma_t`: it proposes on the latent sites of stage :math:`\\le t` alone
    (:func:`propose` with ``eligible``) and accepts by the prefix's sites alone
    (:func:`log_acceptance` with ``prefix``); the later sites are replayed, their values
    meaningless to :math:`\\gamma_t`.

    Example:
        >>> import jax, jax.numpy as jnp, numpyro, numpyro.distributions as dist
        >>> from bayescore.inference.programs.trace_mh import single_site
        >>> def model():
        ...     x = numpyro.sample("x", dist.Normal())
        ...     numpyro.sample("y", dist.Normal(x, 1.0), obs=0.5)
        >>> structure = compiled.analyse(model)
        >>> _, state = run_regenerated(model, structure, jax.random.key(0), [0.0],
        ...                            jnp.array([False]))
        >>> step = jax.jit(chain_step(model, structure, single_site()))
        >>> new, accepted = step(state, jax.random.key(1))
        >>> new.latents[0].shape, accepted.dtype
        ((), dtype('bool'))
    """
    latent = structure.latent_addresses
    one_key = isinstance(kernel, SingleSite)  # one site redrawn per step

    def step(state: State, key: PRNGKeyArray, stage: Any = None) -> tuple[State, Bool[Array, ""]]:
        proposal_key, run_key, accept_key = jax.random.split(key, 3)
        prefix = None if stage is None else prefix_masks(structure, stage)
        eligible = None if prefix is None else prefix[0]
        replay, regenerate, correction = propose(kernel, proposal_key, state, latent, eligible)
        _, new = run_regenerated(body, structure, run_key, replay, regenerate, one_key=one_key)
        log_ratio = log_acceptance(state, new, regenerate, correction, prefix)
        accepted = jnp.log(jax.random.uniform(accept_key)) < log_ratio
        return jax.tree.map(lambda a, b: jnp.where(accepted, a, b), new, state), accepted

    return step


@compiled._per_precision
def chain_kernel(
    body: Callable, kernel: Any, num_steps: int, max_init_tries: int, affine: int = 0
) -> Callable[[PRNGKeyArray], Chain]:
    """``key -> Chain``: ``num_steps`` compiled steps of ``kernel`` from the eager tier's
    first state (:func:`~bayescore.inference.programs.trace_mh.start`, the key split alike).

    Example:
        >>> import jax, numpyro, numpyro.distributions as dist
        >>> from bayescore.inference.programs.trace_mh import lazy
        >>> def model():
        ...     x = numpyro.sample("x", dist.Normal())
        ...     numpyro.sample("y", dist.Normal(x, 1.0), obs=0.5)
        ...     return x
        >>> chain = chain_kernel(model, lazy(0.5), 50, 10)(jax.random.key(0))
        >>> len(chain.values), chain.particles.latents["x"].shape
        (50, (50,))
    """
    structure = compiled.analyse(body)
    latent = structure.latent_addresses
    step = chain_step(body, structure, kernel)

    @jax.jit
    def run(step_key: PRNGKeyArray, state: State) -> tuple:
        def one(state: State, index: Any) -> tuple:
            state, accepted = step(state, jax.random.fold_in(step_key, index))
            return state, (state.key, state.latents, state.log_weight, accepted)

        return jax.lax.scan(one, state, jnp.arange(num_steps))[1]

    def call(key: PRNGKeyArray) -> Chain:
        init_key, step_key, _ = jax.random.split(key, 3)
        # the first state by one eager prior run (usually): cheaper than compiling a prior
        # run, whose every site draws
        _, frame = start(body, init_key, affine, max_init_tries)
        trace = frame.trace
        state = State(
            frame.key,
            [
                jnp.asarray(trace[a].value, aval.dtype)
                for a, aval in zip(latent, structure.latent_avals, strict=True)
            ],
            jnp.asarray([trace[a].log_prob for a in latent], float),
            jnp.asarray(frame.log_weight, float),
            jnp.asarray([trace[a].log_prob for a in structure.observed_addresses], float),
        )
        keys, latents, log_weights, accepted = run(step_key, state)
        particles = compiled.Particles(
            body, structure, keys, {a: np.asarray(v) for a, v in zip(latent, latents, strict=True)}
        )
        return chain_of(particles, log_weights, accepted)

    return call


def chain_of(particles: compiled.Particles, log_weights: Any, accepted: Any) -> Chain:
    """The :class:`~bayescore.inference.programs.Chain` of a compiled run: its steps are
    ``particles`` (device arrays, one row per step); values, per-step latents and observed
    sites are built when read, the final trace by one replay when first read.

    Example:
        >>> import jax, numpy as np, numpyro, numpyro.distributions as dist
        >>> def model():
        ...     return numpyro.sample("x", dist.Normal())
        >>> keys = jax.random.split(jax.random.key(0), 2)
        >>> particles = compiled.Particles(model, compiled.analyse(model), keys,
        ...                                {"x": np.array([0.5, 1.5])})
        >>> chain = chain_of(particles, np.zeros(2), np.array([True, False]))
        >>> chain.values[1].item(), chain.latents[0]["x"].item(), chain.trace["x"].value.item()
        (1.5, 0.5, 1.5)
    """
    structure, count = particles.structure, particles.num_particles
    names = [a for a in structure.latent_addresses if isinstance(a, str)]

    def final_trace() -> dict:
        last = {a: particles.latents[a][count - 1] for a in structure.latent_addresses}
        return compiled.run_traced(particles.body, particles.keys[count - 1], last)[1].trace

    def latents(index: int) -> dict:
        return {a: np.asarray(particles.latents[a][index]) for a in names}

    def observed(index: int) -> dict:
        return {
            a: site
            for a, site in particles.trace(index).items()
            if isinstance(a, str) and site.observed
        }

    return Chain(
        compiled.LazySequence(particles.value, count, particles),
        np.asarray(log_weights, dtype=np.float64),
        np.asarray(accepted, dtype=bool),
        compiled.LazyMapping(final_trace),
        compiled.LazySequence(latents, count, particles),
        compiled.LazySequence(observed, count, particles),
    )


@dataclasses.dataclass(frozen=True)
class _ModelBody:
    """:math:`θ \\mapsto` the body of ``model(θ)``; equal for equal models, so compiled
    kernels are cached per model."""

    model: Callable

    def __call__(self, theta: Any) -> Callable:
        return as_body(self.model(theta))


SMC_KEY = "pmmh_smc"  # the address of the inner SMC's key under a state's run key


@compiled._per_precision
def pmmh_kernel(
    parameters: Any,
    model: Callable,
    num_particles: int,
    scheme: Callable,
    ess_threshold: float,
    num_steps: int,
    max_init_tries: int,
) -> Callable[[PRNGKeyArray], Chain]:
    """``key -> Chain``: PMMH (:mod:`~bayescore.inference.programs.pmmh`) compiled whole,
    for static ``parameters`` and a ``model`` static for a traced :math:`θ`: compiled
    single-site trace MH on the program ``θ ~ parameters; factor(log Ẑ(θ))``, where
    :math:`\\hat Z(θ)` is the compiled SMC of ``model(θ)``
    (:func:`~bayescore.inference.programs.compiled.argument_smc_kernel`, θ an input) keyed
    by the run's key, so every proposal gets a fresh estimate and a rejection keeps the
    current one. The values ``(θ, population)`` are rebuilt when read (the population by
    rerunning its SMC with its key).

    Example:
        >>> import jax, numpyro, numpyro.distributions as dist
        >>> import blackjax.smc.resampling as resampling
        >>> from bayescore.models import ho
        >>> prior = ho.Random.from_distribution(dist.Normal(), "theta")
        >>> def model(theta):
        ...     def body():
        ...         x = numpyro.sample("x", dist.Normal(theta, 1.0))
        ...         numpyro.sample("y", dist.Normal(x, 1.0), obs=0.5)
        ...     return ho.from_model(body)
        >>> run = pmmh_kernel(prior, model, 8, resampling.systematic, 0.5, 20, 10)
        >>> chain = run(jax.random.key(0))
        >>> theta, population = chain.values[3]
        >>> difference = abs(population.log_evidence - chain.log_weights[3])
        >>> population.num_particles, bool(difference < 1e-5)
        (8, True)
    """
    parameters_body = as_body(parameters)
    theta_shape = jax.eval_shape(
        lambda key: compiled.run_traced(parameters_body, key)[0], jax.random.key(0)
    )
    leaves, treedef = jax.tree.flatten(theta_shape)
    if not all(isinstance(leaf, jax.ShapeDtypeStruct) for leaf in leaves):
        raise compiled.StructureChanged("the parameters' value is not a pytree of arrays")
    try:
        inner, rebuild = compiled.argument_smc_kernel(
            _ModelBody(model), treedef, tuple(leaves), num_particles, scheme, ess_threshold
        )
    except (compiled.StructureChanged, jax.errors.JAXTypeError) as error:
        raise compiled.StructureChanged(
            f"model {compiled.program_name(model)!r} is not static for a traced theta "
            f"({compiled._describe(error)})"
        ) from error

    def outer() -> Any:
        theta = call("parameters", parameters)
        key = key_at(current_frame(required="pmmh").root().key, SMC_KEY)
        _, _, log_weights = inner(key, theta)
        numpyro.factor("log_evidence", logsumexp(log_weights) - np.log(num_particles))
        return theta

    run = chain_kernel(outer, single_site(), num_steps, max_init_tries)
    parameters_structure = compiled.analyse(parameters_body)

    def chained(key: PRNGKeyArray) -> Chain:
        chain = run(key)
        steps = chain.particles
        # θ by replaying the parameters alone (their sites are the chain's, in run order)
        thetas = compiled.Particles(
            parameters_body,
            parameters_structure,
            steps.keys,
            dict(
                zip(
                    parameters_structure.latent_addresses,
                    [steps.latents[a] for a in steps.structure.latent_addresses],
                    strict=True,
                )
            ),
        )

        def value(index: int) -> tuple:
            theta = thetas.value(index)
            smc_key = key_at(steps.keys[index], SMC_KEY)
            return theta, Population.from_particles(*rebuild(smc_key, theta))

        return chain._replace(values=compiled.LazySequence(value, len(chain.values), steps))

    return chained
