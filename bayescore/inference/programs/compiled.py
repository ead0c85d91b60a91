r"""The compiled tier: the particles of a static program run under ``jax.vmap`` in ``jax.jit``.

A program is *static* when every run meets the same sites at the same addresses with the same
shapes, whatever its random values: no Python control flow on a random value, no memo table
keyed by one. A run is then a pure function of the key, so the frame handler of
:mod:`bayescore.models.ho.runtime` (which keeps log probs traced when they are tracers) runs
it under JAX tracing exactly as it runs it eagerly: same addresses, same site keys
:math:`\mathrm{fold\_in}(k, h_0(a))`.

* :func:`analyse` traces one run abstractly (``jax.eval_shape``): its sites, their stages
  (the number of observed sites before each) and whether the value is an array pytree; a
  tracing error (``TracerBoolConversionError``, ``ConcretizationTypeError``, ...) makes the
  program dynamic, with the error as the reason.
* Importance sampling is one vmapped run per particle.
* SMC with :math:`T` observed sites has :math:`T + 1` *stages*: stage :math:`t` draws the
  latent sites between the :math:`t`-th and :math:`(t+1)`-th observed sites, weights by the
  latter's log density and resamples when the ESS falls below the threshold. One run of the
  program, every latent replayed from an input, is traced once (vmapped over particles);
  each site's computation is its dead-code-eliminated *slice* (``dce_jaxpr``), which reads
  only the earlier latents it needs, so a Markov state-space model costs :math:`O(TN)`.
  Slices are compared as *templates* (scalar literals and constants made inputs): a run of
  stages with equal templates, reading earlier latents by stage offset, becomes one
  ``lax.scan`` over the stages' parameters; the others are unrolled. Ancestries are kept as
  index vectors and the particles' paths gathered when first read.

Tier choice (``tier="auto"``): :func:`attempt` runs the compiled tier when :func:`analyse`
finds the program static and its stages trace, and otherwise logs one ``INFO`` notice (logger
``bayescore.inference.programs.compiled``) naming the program and the reason, and the caller
runs the eager tier. ``tier="compiled"`` raises :class:`DynamicProgramError` instead. Both
tiers estimate the same measure; with the same key their draws differ (the eager tier keys a
particle's sites by ``("importance", i, ...)`` addresses; compiled importance folds the
address into per-particle keys, compiled SMC splits site :math:`a`'s :math:`N` particle keys
from :math:`\mathrm{fold\_in}(k, h_0(a))`, or draws a normal site's :math:`N` values
from that key at once).

Results stay on the device as arrays (:class:`Particles`); per-particle traces and values
are built when read, from one vmapped replay of the program.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax._src import core as jax_core  # Literal, Var: templates of the slices
from jax._src.interpreters import partial_eval as pe  # dce_jaxpr: per-site slices of a run
from jax.scipy.special import logsumexp
from jaxtyping import Array, Float, Int, PRNGKeyArray
from numpyro import distributions as dist
from numpyro.distributions.distribution import validation_enabled

from bayescore.core.errors import ArgumentError, ModelError
from bayescore.models.ho.keys import address_hash
from bayescore.models.ho.runtime import Frame, Site, Suspend, run_frame

logger = logging.getLogger(__name__)

TIERS = ("auto", "compiled", "eager")


class DynamicProgramError(ModelError):
    """The compiled tier was asked for a program whose structure is not static."""


class StructureChanged(Exception):  # noqa: N818 - a control signal of tracing, caught here
    """A traced stage met other sites than the program's analysed run."""


class Structure(NamedTuple):
    """The sites of a static program's run, in run order.

    Attributes:
        addresses: every site's address.
        observed: whether each site is observed (or a factor).
        latent: whether each site is a latent random choice.
        stages: the number of observed sites before each site.
        discrete: the addresses of latent sites with a discrete support.
        returns_arrays: the program's value is a pytree of arrays (else it is rebuilt by
            replay when read, e.g. a function).

    Example:
        >>> import numpyro, numpyro.distributions as dist
        >>> def model():
        ...     x = numpyro.sample("x", dist.Normal())
        ...     numpyro.sample("y", dist.Normal(x, 1.0), obs=0.5)
        ...     return numpyro.sample("z", dist.Normal(x, 1.0))
        >>> structure = analyse(model)
        >>> structure.latent_addresses, structure.stages, structure.num_observed
        (('x', 'z'), (0, 0, 1), 1)
    """

    addresses: tuple
    observed: tuple
    latent: tuple
    stages: tuple
    discrete: tuple
    returns_arrays: bool
    latent_avals: tuple = ()

    @property
    def num_observed(self) -> int:
        return sum(self.observed)

    @property
    def latent_addresses(self) -> tuple:
        return tuple(
            a for a, is_latent in zip(self.addresses, self.latent, strict=True) if is_latent
        )

    @property
    def observed_addresses(self) -> tuple:
        return tuple(a for a, obs in zip(self.addresses, self.observed, strict=True) if obs)

    def latent_at(self, stage: int) -> tuple:
        """The latent sites drawn between the ``stage``-th and ``stage + 1``-th observed site."""
        return tuple(
            a
            for a, is_latent, s in zip(self.addresses, self.latent, self.stages, strict=True)
            if is_latent and s == stage
        )

    def latent_before(self, stage: int) -> tuple:
        return tuple(
            a
            for a, is_latent, s in zip(self.addresses, self.latent, self.stages, strict=True)
            if is_latent and s < stage
        )


def program_name(body: Callable) -> str:
    """The name of a program's function, for messages (``functools.partial`` unwrapped).

    Example:
        >>> import functools
        >>> def model(y): ...
        >>> program_name(functools.partial(model, 1.0))
        'model'
    """
    function = body
    while isinstance(function, functools.partial):
        function = function.func
    return getattr(function, "__qualname__", None) or repr(function)


def _describe(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0] if lines else ''}".strip()[:300]


def run_traced(
    body: Callable, key: Any, replay: dict | None = None, suspend_after: int | None = None
) -> tuple[Any, Frame]:
    """One run of ``body`` in a root frame (values replayed from ``replay``, stopping after
    the ``suspend_after``-th observed site); the value is ``None`` when it stopped.

    Example:
        >>> import jax, numpyro, numpyro.distributions as dist
        >>> value, frame = run_traced(lambda: numpyro.sample("x", dist.Normal()), None, {"x": 1.0})
        >>> value, list(frame.trace)
        (1.0, ['x'])
    """
    frame = Frame(key=key, replay=replay or {}, suspend_after=suspend_after)
    try:
        # NumPyro's argument checks cannot raise on traced parameters: skip their cost
        with validation_enabled(False):
            value = run_frame(frame, body)
    except Suspend as signal:
        if signal.frame is not frame:
            raise
        value = None
    return value, frame


def _per_precision(function: Callable) -> Callable:
    """Cache ``function`` per arguments and per precision (``jax_enable_x64``): what it
    traces depends on both."""
    cached = functools.lru_cache(maxsize=32)(lambda x64, *args: function(*args))

    @functools.wraps(function)
    def wrapper(*args: Any) -> Any:
        return cached(bool(jax.config.jax_enable_x64), *args)

    return wrapper


def _is_array_leaf(leaf: Any) -> bool:
    return isinstance(leaf, jax.Array | np.ndarray | np.generic | int | float | bool)


def _arrays_only(tree: Any) -> bool:
    try:
        return all(_is_array_leaf(leaf) for leaf in jax.tree.leaves(tree))
    except Exception:  # noqa: BLE001 - an unflattenable value (dict with mixed keys, ...)
        return False


def analyse(body: Callable) -> Structure | str:
    """The :class:`Structure` of a static program, or the reason it is dynamic (a string).

    One run is traced abstractly with ``jax.eval_shape``; any error while tracing (Python
    control flow on a traced value raises ``TracerBoolConversionError``, ``int()`` of one
    ``TracerIntegerConversionError``, a memo table keyed by one ``TracerArrayConversionError``)
    makes the program dynamic. Results are cached per program body.

    Example:
        >>> import numpyro, numpyro.distributions as dist
        >>> def branching():
        ...     if numpyro.sample("x", dist.Bernoulli(0.5)):
        ...         numpyro.sample("y", dist.Normal())
        >>> analyse(branching).split(":")[0]
        'TracerBoolConversionError'
    """
    return _analyse(body, bool(jax.config.jax_enable_x64))


@functools.lru_cache(maxsize=64)
def _analyse(body: Callable, x64: bool) -> Structure | str:
    captured: dict[str, Any] = {}

    def run(key: PRNGKeyArray) -> Any:
        value, frame = run_traced(body, key)
        captured["value"], captured["frame"] = value, frame
        return jnp.asarray(frame.log_weight)

    try:
        jax.eval_shape(run, jax.random.key(0))
    except Exception as error:  # noqa: BLE001 - every tracing failure means "not static"
        return _describe(error)
    trace: dict[Any, Site] = captured["frame"].trace
    for address, site in trace.items():
        if site.distribution is not None and not _arrays_only(site.distribution):
            return (
                f"site {address!r}'s distribution ({type(site.distribution).__name__}) is not "
                f"a JAX pytree of arrays"
            )
    stages, count = [], 0
    for site in trace.values():
        stages.append(count)
        count += bool(site.observed)
    return Structure(
        addresses=tuple(trace),
        observed=tuple(bool(site.observed) for site in trace.values()),
        latent=tuple(site.is_latent for site in trace.values()),
        stages=tuple(stages),
        discrete=tuple(
            a
            for a, site in trace.items()
            if site.is_latent and getattr(site.distribution.support, "is_discrete", False)
        ),
        returns_arrays=_arrays_only(captured["value"]),
        latent_avals=tuple(
            jax.ShapeDtypeStruct(jnp.shape(site.value), jnp.result_type(site.value))
            for site in trace.values()
            if site.is_latent
        ),
    )


def check_tier(tier: str) -> str:
    """Return ``tier`` if it is ``"auto"``, ``"compiled"`` or ``"eager"``, else raise.

    Example:
        >>> check_tier("auto")
        'auto'
    """
    if tier not in TIERS:
        raise ArgumentError(
            f"tier must be one of {TIERS}, found {tier!r}. Pass tier='auto' to let bayescore "
            f"choose."
        )
    return tier


def attempt(
    tier: str, body: Callable, transformer: str, build: Callable[[Structure], Callable], key: Any
) -> Any:
    """Run ``build(structure)(key)`` in the compiled tier; ``None`` means: run the eager tier.

    With ``tier="auto"`` a dynamic program (or a stage that does not trace) logs one ``INFO``
    notice naming the program and the reason; with ``tier="compiled"`` it raises
    :class:`DynamicProgramError`.

    Example:
        >>> import numpyro, numpyro.distributions as dist
        >>> def branching():
        ...     if numpyro.sample("x", dist.Bernoulli(0.5)):
        ...         numpyro.sample("y", dist.Normal())
        >>> attempt("auto", branching, "importance", None, None) is None
        True
    """
    check_tier(tier)
    if tier == "eager":
        return None
    structure = analyse(body)
    reason = structure if isinstance(structure, str) else None
    if reason is None:
        try:
            return build(structure)(key)
        except (StructureChanged, jax.errors.JAXTypeError, jax.errors.JAXIndexError) as error:
            reason = _describe(error)
    name = program_name(body)
    if tier == "compiled":
        raise DynamicProgramError(
            f"{transformer}(tier='compiled') needs a static program (the same sites and shapes "
            f"on every run), but program {name!r} is dynamic: {reason}. Pass tier='auto' or "
            f"tier='eager' to run it by re-execution, or replace the Python control flow on "
            f"random values by jnp.where / lax.cond."
        )
    logger.info("%s: program %r runs in the eager tier (%s)", transformer, name, reason)
    return None


def _check_sites(frame: Frame, structure: Structure, count: int) -> None:
    met = tuple(frame.trace)
    if met != structure.addresses[:count]:
        raise StructureChanged(
            f"a stage met the sites {met}, expected {structure.addresses[:count]}"
        )


class Particles:
    """The particles of a compiled run, kept as device arrays.

    ``latents[a]`` holds site ``a``'s values ``(N, ...)``. Per-particle traces and values are
    built when read (:meth:`trace`, :meth:`value`) from one vmapped replay of the program,
    which also gives every site's batched values and the observed sites' pointwise log
    densities (:meth:`site_values`, :meth:`pointwise_log_prob`).

    Example:
        >>> import jax, numpyro, numpyro.distributions as dist
        >>> def model():
        ...     return numpyro.sample("x", dist.Normal())
        >>> particles = Particles(model, analyse(model), jax.random.split(jax.random.key(0), 3),
        ...                       {"x": jax.numpy.zeros(3)})
        >>> particles.trace(1)["x"].value.item(), particles.value(2).item()
        (0.0, 0.0)
    """

    def __init__(self, body: Callable, structure: Structure, keys: Any, latents: Any):
        self.body, self.structure, self.keys = body, structure, keys
        self._latents = latents  # a dict, or a function computing it on first read
        self.num_particles = int(keys.shape[0])
        self._replayed: tuple | None = None

    @property
    def latents(self) -> dict:
        """``{address: values (N, ...)}`` of the latent sites."""
        if callable(self._latents):
            self._latents = self._latents()
        return self._latents

    def replayed(self) -> tuple:
        """``(values or None, site values, site log probs, site distributions, pointwise log
        probs of the observed sites)``, batched over the particles."""
        if self._replayed is None:
            latents = [self.latents[a] for a in self.structure.latent_addresses]
            self._replayed = jax.device_get(_replay_kernel(self.body)(self.keys, latents))
        return self._replayed

    def site_values(self, address: Any) -> np.ndarray:
        """Site ``address``'s values, ``(N, ...)``."""
        return np.asarray(self.replayed()[1][self.structure.addresses.index(address)])

    def pointwise_log_prob(self, address: Any) -> np.ndarray:
        """Observed site ``address``'s log density per element of its batch shape,
        ``(N, *batch_shape)``."""
        return np.asarray(self.replayed()[4][self.structure.addresses.index(address)])

    def trace(self, index: int) -> dict[Any, Site]:
        _, values, log_probs, distributions, _ = self.replayed()
        structure = self.structure
        return {
            address: Site(
                values[j][index],
                float(log_probs[j][index]),
                structure.observed[j],
                None
                if distributions[j] is None
                else jax.tree.map(lambda leaf: leaf[index], distributions[j]),
            )
            for j, address in enumerate(structure.addresses)
        }

    def value(self, index: int) -> Any:
        if self.structure.returns_arrays:
            return jax.tree.map(lambda leaf: leaf[index], self.replayed()[0])
        # a function (or another non-array value): rebuilt by an eager replay of its latents
        replay = {a: np.asarray(v[index]) for a, v in self.latents.items()}
        return run_frame(Frame(key=self.keys[index], replay=replay), self.body)


class LazySequence(Sequence):
    """``[item(0), ..., item(n - 1)]``, each item built on first read and kept.

    Example:
        >>> squares = LazySequence(lambda i: i * i, 4)
        >>> list(squares), squares[-1]
        ([0, 1, 4, 9], 9)
    """

    def __init__(self, item: Callable[[int], Any], length: int, particles: Any = None):
        self._item, self._length, self._cache = item, length, {}
        self.particles = particles

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self._length))]
        index = int(index)
        if index < 0:
            index += self._length
        if not 0 <= index < self._length:
            raise IndexError(index)
        if index not in self._cache:
            self._cache[index] = self._item(index)
        return self._cache[index]


class LazyMapping(Mapping):
    """The mapping ``build()``, built on first read and kept.

    Example:
        >>> trace = LazyMapping(lambda: {"x": 1})
        >>> trace["x"], list(trace), len(trace)
        (1, ['x'], 1)
    """

    def __init__(self, build: Callable[[], Mapping]):
        self._build, self._built = build, None

    def _mapping(self) -> Mapping:
        if self._built is None:
            self._built = self._build()
        return self._built

    def __getitem__(self, key: Any) -> Any:
        return self._mapping()[key]

    def __iter__(self) -> Any:
        return iter(self._mapping())

    def __len__(self) -> int:
        return len(self._mapping())

    def __repr__(self) -> str:
        return repr(dict(self._mapping()))


@_per_precision
def _replay_kernel(body: Callable) -> Callable:
    structure = analyse(body)

    def particle(key: PRNGKeyArray, latents: list) -> tuple:
        value, frame = run_traced(
            body, key, dict(zip(structure.latent_addresses, latents, strict=True))
        )
        _check_sites(frame, structure, len(structure.addresses))
        sites = list(frame.trace.values())
        return (
            value if structure.returns_arrays else None,
            [site.value for site in sites],
            [jnp.asarray(site.log_prob) for site in sites],
            [site.distribution for site in sites],
            [site.distribution.log_prob(site.value) if site.observed else None for site in sites],
        )

    return jax.jit(jax.vmap(particle))


@_per_precision
def importance_kernel(body: Callable, num_particles: int) -> Callable:
    """``key -> (Particles, log weights)``: ``num_particles`` prior runs, vmapped and jitted.

    Example:
        >>> import jax, numpyro, numpyro.distributions as dist
        >>> def model():
        ...     x = numpyro.sample("x", dist.Normal())
        ...     numpyro.factor("w", -x**2)
        >>> particles, log_weights = importance_kernel(model, 5)(jax.random.key(0))
        >>> log_weights.shape, particles.latents["x"].shape
        ((5,), (5,))
    """
    structure = analyse(body)
    latent = structure.latent_addresses

    def particle(key: PRNGKeyArray) -> tuple:
        _, frame = run_traced(body, key)
        _check_sites(frame, structure, len(structure.addresses))
        return [frame.trace[a].value for a in latent], jnp.asarray(frame.log_weight, float)

    @jax.jit
    def run(key: PRNGKeyArray) -> tuple:
        keys = jax.random.split(key, num_particles)
        latents, log_weights = jax.vmap(particle)(keys)
        return keys, latents, log_weights

    def call(key: PRNGKeyArray) -> tuple[Particles, Float[Array, " particle"]]:
        keys, latents, log_weights = run(key)
        return Particles(
            body, structure, keys, dict(zip(latent, latents, strict=True))
        ), log_weights

    return call


def _normalised(log_weights: Float[Array, " particle"]) -> tuple:
    """The normalised weights (uniform when all are zero) and :math:`\\log \\hat Z`."""
    num = log_weights.shape[0]
    log_total = logsumexp(log_weights)
    dead = log_total == -jnp.inf
    weights = jnp.where(dead, 1.0 / num, jnp.exp(log_weights - jnp.where(dead, 0.0, log_total)))
    return weights, log_total - jnp.log(num)


def resampling_due(log_weights: Float[Array, " particle"], ess_threshold: float) -> Any:
    """Whether :func:`resample_step` resamples these weights:
    :math:`\\mathrm{ESS} = 1 / \\sum_i w_i^2 < \\text{ess\\_threshold} \\cdot N` (traceable).

    Example:
        >>> import jax.numpy as jnp
        >>> bool(resampling_due(jnp.array([0.0, -5.0]), 0.9)), bool(resampling_due(
        ...     jnp.zeros(2), 0.9))
        (True, False)
    """
    weights, _ = _normalised(log_weights)
    return jnp.sum(weights**2) * (ess_threshold * log_weights.shape[0]) > 1.0


def resample_step(
    key: PRNGKeyArray,
    log_weights: Float[Array, " particle"],
    scheme: Callable,
    ess_threshold: float,
) -> tuple[Float[Array, " particle"], Int[Array, " particle"]]:
    """Resample when :math:`\\mathrm{ESS} < \\text{ess\\_threshold} \\cdot N`: returns the new
    log weights (all :math:`\\log \\hat Z` after a resampling) and the ancestor indices
    (``arange(N)`` without one). Weights all zero count as uniform, as in the eager tier.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> import blackjax.smc.resampling as resampling
        >>> log_weights, indices = resample_step(
        ...     jax.random.key(0), jnp.array([0.0, -jnp.inf]), resampling.systematic, 1.0)
        >>> indices.tolist(), round(float(log_weights[0]), 4)
        ([0, 0], -0.6931)
    """
    num = log_weights.shape[0]
    weights, log_evidence = _normalised(log_weights)
    now = resampling_due(log_weights, ess_threshold)
    if ess_threshold >= 1.0:
        # it resamples at almost every stage: a select costs less than a branch, whose two
        # sides XLA cannot fuse with the gathers that follow
        drawn = jnp.asarray(scheme(key, weights, num), jnp.int32)
        indices = jnp.where(now, drawn, jnp.arange(num, dtype=jnp.int32))
    else:
        indices = jax.lax.cond(
            now,
            lambda: jnp.asarray(scheme(key, weights, num), jnp.int32),
            lambda: jnp.arange(num, dtype=jnp.int32),
        )
    return jnp.where(now, jnp.full_like(log_weights, log_evidence), log_weights), indices


def _site_jaxprs(
    body_of: Callable, arguments: list, structure: Structure, num_particles: int
) -> tuple:
    """The batched *joint* run of ``body_of(arguments)`` (every latent replayed from an
    input, the arguments inputs shared by the particles), traced once, and one
    dead-code-eliminated slice of it per site: a latent site's slice computes its
    distribution's leaves, an observed site's its log density, each from the earlier latents
    and the arguments it reads (its ``used`` inputs)."""
    latent = structure.latent_addresses
    treedefs: dict[Any, Any] = {}

    def joint(key: PRNGKeyArray, latents: list, arguments: list) -> list:
        body = body_of(arguments)
        _, frame = run_traced(body, key, dict(zip(latent, latents, strict=True)))
        _check_sites(frame, structure, len(structure.addresses))
        outputs = []
        for address in structure.addresses:
            site = frame.trace[address]
            if site.observed:
                outputs.append([jnp.asarray(site.log_prob, float)])
            elif site.is_latent:
                leaves, treedefs[address] = jax.tree.flatten(site.distribution)
                outputs.append(leaves)
            else:
                outputs.append([])
        return outputs

    keys = jax.eval_shape(lambda: jax.random.split(jax.random.key(0), num_particles))
    latents = [
        jax.ShapeDtypeStruct((num_particles, *aval.shape), aval.dtype)
        for aval in structure.latent_avals
    ]
    batched = jax.vmap(joint, in_axes=(0, 0, None))
    closed, shapes = jax.make_jaxpr(batched, return_shape=True)(keys, latents, arguments)
    jaxpr = pe.convert_constvars_jaxpr(closed.jaxpr)
    counts = [len(site_outputs) for site_outputs in shapes]
    slices, start = {}, 0
    for address, count in zip(structure.addresses, counts, strict=True):
        used_outputs = [start <= k < start + count for k in range(len(jaxpr.outvars))]
        start += count
        if count:
            sliced, used = pe.dce_jaxpr(jaxpr, used_outputs)
            slices[address] = (sliced, used)
    return closed.consts, slices, treedefs


WINDOW = 2  # a site reads earlier latents by stage offset up to this, by address beyond


class _SiteTemplate(NamedTuple):
    """A site's slice with its scalar literals and scalar constants made inputs: sites whose
    templates print alike compute alike, on their own parameters."""

    kind: str  # "latent" or "observed"
    text: str
    jaxpr: Any
    roles: tuple  # per used input: ("param",), ("const", i), ("keys",), ("here", k),
    # ("back", d, k): latent k of the stage d back, ("abs", address)
    treedef: Any
    params: list  # the values of the "param" inputs, then of the lifted literals
    reads: tuple  # the addresses of the latents it reads

    @property
    def signature(self) -> tuple:
        return (self.kind, self.text, self.roles, self.treedef)


def _lift_literals(jaxpr: Any) -> tuple[Any, list]:
    lifted, values = [], []

    def lift(var: Any) -> Any:
        if isinstance(var, jax_core.Literal):
            new = jax_core.Var(var.aval)
            lifted.append(new)
            values.append(np.asarray(var.val, dtype=var.aval.dtype))
            return new
        return var

    eqns = [eqn.replace(invars=[lift(v) for v in eqn.invars]) for eqn in jaxpr.eqns]
    outvars = [lift(v) for v in jaxpr.outvars]
    debug = jaxpr.debug_info
    if debug is not None:
        names = debug.arg_names
        debug = debug._replace(
            arg_names=None if names is None else (*names, *[""] * len(lifted)),
            result_paths=None,
        )
    template = jaxpr.replace(
        invars=[*jaxpr.invars, *lifted], eqns=eqns, outvars=outvars, debug_info=debug
    )
    return template, values


def _templates(structure: Structure, consts: list, slices: dict, treedefs: dict) -> dict:
    latent = structure.latent_addresses
    stage_of = {a: s for a, s in zip(structure.addresses, structure.stages, strict=True)}
    templates = {}
    for address, (sliced, used) in slices.items():
        stage = stage_of[address]
        roles, params, reads = [], [], []
        for i, is_used in enumerate(used):
            if not is_used:
                continue
            if i < len(consts):
                if np.size(consts[i]) == 1:
                    roles.append(("param",))
                    params.append(np.asarray(consts[i]))
                else:
                    roles.append(("const", i))
            elif i == len(consts):
                roles.append(("keys",))
            else:
                if i - len(consts) - 1 >= len(latent):
                    roles.append(("argument", i - len(consts) - 1 - len(latent)))
                    continue
                read = latent[i - len(consts) - 1]
                reads.append(read)
                back = stage - stage_of[read]
                position = structure.latent_at(stage_of[read]).index(read)
                if back == 0:
                    roles.append(("here", position))
                elif back <= WINDOW:
                    roles.append(("back", back, position))
                else:
                    roles.append(("abs", read))
        template, literals = _lift_literals(sliced)
        is_latent = address in treedefs
        templates[address] = _SiteTemplate(
            "latent" if is_latent else "observed",
            str(template),
            template,
            tuple(roles),
            treedefs.get(address),
            params + literals,
            tuple(reads),
        )
    return templates


def _plan(structure: Structure, templates: dict, min_run: int = 3) -> list:
    """Stages as ``("stage", s)`` (unrolled) and ``("scan", s0, s1)``: a run of stages whose
    sites have equal templates, read latents of the run within the window, and whose latents
    later stages read only from the window at its end."""
    num_stages = structure.num_observed + 1
    sites = [
        [
            a
            for a, st in zip(structure.addresses, structure.stages, strict=True)
            if st == s and a in templates
        ]
        for s in range(num_stages)
    ]
    signatures = [tuple(templates[a].signature for a in stage) for stage in sites]
    plan, s = [], 0
    while s < num_stages:
        end = s
        while end + 1 < num_stages - 1 and signatures[end + 1] == signatures[s]:
            end += 1
        depth = max(
            (r[1] for a in sites[s] for r in templates[a].roles if r[0] == "back"), default=0
        )
        first = max(s, depth)  # the window starts filled
        in_run = {a for t in range(first, end + 1) for a in structure.latent_at(t)}
        window = {a for t in range(end + 1 - depth, end + 1) for a in structure.latent_at(t)}
        leaks = any(
            read in in_run - window
            for stage in sites[end + 1 :]
            for a in stage
            for read in templates[a].reads
        )
        if s < num_stages - 1 and end + 1 - first >= min_run and not leaks:
            plan += [("stage", t) for t in range(s, first)] + [("scan", first, end + 1)]
        else:
            plan += [("stage", t) for t in range(s, end + 1)]
        s = end + 1
    return plan


@_per_precision
def smc_kernel(
    body: Callable, num_particles: int, scheme: Callable, ess_threshold: float
) -> Callable:
    """``key -> (Particles, log weights)``: SMC with one stage per observed site in one
    compiled program, runs of alike stages as a ``lax.scan`` (see the module docstring).

    Example:
        >>> import jax, numpyro, numpyro.distributions as dist
        >>> import blackjax.smc.resampling as resampling
        >>> def walk():
        ...     x = 0.0
        ...     for t in range(3):
        ...         x = numpyro.sample(f"x{t}", dist.Normal(x, 1.0))
        ...         numpyro.sample(f"y{t}", dist.Normal(x, 1.0), obs=0.5)
        >>> run = smc_kernel(walk, 8, resampling.systematic, 0.5)
        >>> particles, log_weights = run(jax.random.key(0))
        >>> sorted(particles.latents), log_weights.shape
        (['x0', 'x1', 'x2'], (8,))
    """
    structure = analyse(body)
    run, particles_of = _smc(lambda _: body, [], structure, num_particles, scheme, ess_threshold)

    def call(key: PRNGKeyArray) -> tuple[Particles, Float[Array, " particle"]]:
        keys, parts, log_weights = run(key, [])
        return particles_of(body, keys, parts), log_weights

    return call


@_per_precision
def argument_smc_kernel(
    model: Callable[[Any], Callable],
    treedef: Any,
    avals: tuple,
    num_particles: int,
    scheme: Callable,
    ess_threshold: float,
) -> tuple[Callable, Callable]:
    """SMC on the programs ``model(θ)`` with :math:`θ` an *input* of the compiled program
    (a pytree ``treedef`` of arrays shaped ``avals``), for a ``model`` static for a traced
    :math:`θ`: ``(run, call)``, ``run(key, θ) -> (keys, parts, log weights)`` traceable (θ
    may be a tracer of an enclosing program: PMMH), ``call(key, θ) -> (Particles, log
    weights)``. A ``model`` not static for a traced θ raises :class:`StructureChanged` or a
    JAX tracing error.

    Example:
        >>> import jax, jax.numpy as jnp, numpyro, numpyro.distributions as dist
        >>> import blackjax.smc.resampling as resampling
        >>> def model(theta):
        ...     def body():
        ...         x = numpyro.sample("x", dist.Normal(theta, 1.0))
        ...         numpyro.sample("y", dist.Normal(x, 1.0), obs=0.5)
        ...     return body
        >>> treedef = jax.tree.structure(0.0)
        >>> avals = (jax.ShapeDtypeStruct((), jnp.float32),)
        >>> _, call = argument_smc_kernel(model, treedef, avals, 8, resampling.systematic, 0.5)
        >>> particles, log_weights = call(jax.random.key(0), jnp.float32(0.3))
        >>> particles.latents["x"].shape, log_weights.shape
        ((8,), (8,))
    """

    def body_of(leaves: list) -> Callable:
        return model(jax.tree.unflatten(treedef, leaves))

    example = body_of([jnp.zeros(a.shape, a.dtype) for a in avals])
    structure = analyse(example)
    if isinstance(structure, str):
        raise StructureChanged(f"the model is dynamic: {structure}")
    run, particles_of = _smc(body_of, list(avals), structure, num_particles, scheme, ess_threshold)

    def traced(key: PRNGKeyArray, theta: Any) -> tuple:
        return run(key, jax.tree.leaves(theta))

    def call(key: PRNGKeyArray, theta: Any) -> tuple[Particles, Float[Array, " particle"]]:
        leaves = jax.tree.leaves(theta)
        keys, parts, log_weights = run(key, leaves)
        return particles_of(body_of(leaves), keys, parts), log_weights

    return traced, call


def _smc(
    body_of: Callable,
    arguments: list,
    structure: Structure,
    num_particles: int,
    scheme: Callable,
    ess_threshold: float,
) -> tuple[Callable, Callable]:
    """The compiled SMC of ``body_of(arguments)``: ``run(key, arguments) -> (keys, parts,
    log weights)`` and ``particles_of(body, keys, parts) -> Particles``."""
    consts, slices, treedefs = _site_jaxprs(body_of, arguments, structure, num_particles)
    templates = _templates(structure, consts, slices, treedefs)
    plan = _plan(structure, templates)
    latent = structure.latent_addresses
    hashes = {a: np.uint32(address_hash(a)) for a in latent}
    stage_sites = [
        [
            a
            for a, st in zip(structure.addresses, structure.stages, strict=True)
            if st == s and a in slices
        ]
        for s in range(structure.num_observed + 1)
    ]
    latent_stage = {a: structure.stages[structure.addresses.index(a)] for a in latent}

    def draw(treedef: Any, leaves: list, key: Any, site_hash: Any) -> Any:
        key = jax.random.fold_in(key, site_hash)
        site = jax.tree.unflatten(treedef, leaves)  # every leaf has the particle axis first
        if type(site) is dist.Normal:
            # loc + scale·ε with the N particles' ε from one key: one pass of the random
            # bit generator instead of two (N keys, then a draw from each)
            return site.sample(key, (num_particles,))
        # the site's N particle keys split from one key: one vectorised threefry with a
        # scalar key, cheaper than folding the address into N particle keys
        keys = jax.random.split(key, num_particles)

        def one(particle_leaves: list, key: PRNGKeyArray) -> Any:
            return jax.tree.unflatten(treedef, particle_leaves).sample(key)

        return jax.vmap(one)(leaves, keys)

    def weigh(log_weights: Any, increment: Any, stage: Any, resample_key: Any) -> tuple:
        # a zero weight stays zero: no -inf + inf
        log_weights = jnp.where(log_weights == -jnp.inf, -jnp.inf, log_weights + increment)
        return resample_step(
            jax.random.fold_in(resample_key, stage), log_weights, scheme, ess_threshold
        )

    def unrolled(stage: int, run: dict, consts: list) -> None:
        for address in stage_sites[stage]:
            # ties the draws' key to the weights so far: XLA cannot hoist every stage's key
            # derivation to the start (N keys per stage, all live: out of cache)
            run["draw_key"], run["log_weights"] = jax.lax.optimization_barrier(
                (run["draw_key"], run["log_weights"])
            )
            sliced, used = slices[address]
            inputs = [*consts, run["keys"], *run["current"].values(), *run["arguments"]]
            outputs = jax.core.eval_jaxpr(
                sliced, [], *[x for x, u in zip(inputs, used, strict=True) if u]
            )
            if address in treedefs:
                value = draw(treedefs[address], outputs, run["draw_key"], hashes[address])
                run["current"][address] = value
                run["drawn"][address] = (len(run["parts"]), None)
                run["parts"].append(value)
            else:
                run["log_weights"], indices = weigh(
                    run["log_weights"], outputs[0], stage, run["resample_key"]
                )
                # gathers no later site reads are dead code: XLA drops them
                run["current"] = {
                    a: None if v is None else v[indices] for a, v in run["current"].items()
                }
                run["ancestors"].append((len(run["parts"]), None))
                run["parts"].append(indices)

    def scanned(first: int, stop: int, run: dict, consts: list) -> None:
        pattern = [templates[a] for a in stage_sites[first]]
        depth = max((r[1] for t in pattern for r in t.roles if r[0] == "back"), default=0)
        read_later = {
            r
            for t in range(first, len(stage_sites))
            for a in stage_sites[t]
            for r in templates[a].reads
        }
        carried_addresses = [a for a in latent if latent_stage[a] < first and a in read_later]
        current = run["current"]
        window = tuple(
            tuple(current[a] for a in structure.latent_at(first - d)) for d in range(1, depth + 1)
        )
        carried = tuple(current[a] for a in carried_addresses)
        stacked = [
            [
                np.stack([templates[stage_sites[t][k]].params[j] for t in range(first, stop)])
                for j in range(len(site.params))
            ]
            for k, site in enumerate(pattern)
        ]
        # a parameter equal over the run stays a constant of the compiled program (XLA folds
        # it: x / 20 becomes a multiplication); only the varying ones are scanned over
        fixed = [[p[0] if np.all(p == p[0]) else None for p in site] for site in stacked]
        params = [
            [p for p, f in zip(site, site_fixed, strict=True) if f is None]
            for site, site_fixed in zip(stacked, fixed, strict=True)
        ]
        site_hashes = [
            np.array([hashes[stage_sites[t][k]] for t in range(first, stop)], np.uint32)
            if site.kind == "latent"
            else None
            for k, site in enumerate(pattern)
        ]
        keys, resample_key, draw_key = run["keys"], run["resample_key"], run["draw_key"]
        arguments = run["arguments"]

        def step(carry: tuple, inputs: tuple) -> tuple:
            log_weights, window, carried = carry
            stage, params, site_hashes = inputs
            here, fresh, indices = [], [], None
            for k, site in enumerate(pattern):
                varying = iter(params[k])
                values = iter([next(varying) if f is None else f for f in fixed[k]])
                args = []
                for role in site.roles:
                    if role[0] == "param":
                        args.append(next(values))
                    elif role[0] == "const":
                        args.append(consts[role[1]])
                    elif role[0] == "keys":
                        args.append(keys)
                    elif role[0] == "here":
                        args.append(here[role[1]])
                    elif role[0] == "argument":
                        args.append(arguments[role[1]])
                    elif role[0] == "back":
                        args.append(window[role[1] - 1][role[2]])
                    else:
                        args.append(carried[carried_addresses.index(role[1])])
                outputs = jax.core.eval_jaxpr(site.jaxpr, [], *args, *values)
                if site.kind == "latent":
                    value = draw(site.treedef, outputs, draw_key, site_hashes[k])
                    here.append(value)
                    fresh.append(value)
                else:
                    log_weights, indices = weigh(log_weights, outputs[0], stage, resample_key)
                    here = [v[indices] for v in here]
                    window = tuple(tuple(v[indices] for v in w) for w in window)
                    carried = tuple(v[indices] for v in carried)
            window = ((tuple(here),) + window)[:depth]
            return (log_weights, window, carried), (fresh, indices)

        (run["log_weights"], window, carried), (fresh, indices) = jax.lax.scan(
            step,
            (run["log_weights"], window, carried),
            (np.arange(first, stop), params, site_hashes),
        )
        # stacked over the run's stages: sliced when the paths are gathered, not here (XLA
        # compiles many outputs slowly)
        for k in range(len(structure.latent_at(first))):
            for t in range(first, stop):
                run["drawn"][structure.latent_at(t)[k]] = (len(run["parts"]), t - first)
            run["parts"].append(fresh[k])
        for t in range(first, stop):
            run["ancestors"].append((len(run["parts"]), t - first))
        run["parts"].append(indices)
        # the carry holds the lineages now; the run's other latents are read by no later site
        run["current"] = {a: None for a in current}
        run["current"].update(zip(carried_addresses, carried, strict=True))
        for d in range(1, depth + 1):
            run["current"].update(zip(structure.latent_at(stop - d), window[d - 1], strict=True))

    @jax.jit
    def run(key: PRNGKeyArray, consts: list, arguments: list) -> tuple:
        state = {
            "keys": jax.random.split(jax.random.fold_in(key, 0), num_particles),
            "arguments": arguments,
            "resample_key": jax.random.fold_in(key, 1),
            "draw_key": jax.random.fold_in(key, 2),
            "log_weights": jnp.zeros(num_particles, float),
            # latent values along the particles' current lineages (None: not drawn yet, or
            # read by no later site)
            "current": {a: None for a in latent},
            "drawn": {},  # address -> (part, row of a stacked part or None)
            "ancestors": [],  # per resampling: (part, row or None)
            "parts": [],
        }
        for segment in plan:
            if segment[0] == "stage":
                unrolled(segment[1], state, consts)
            else:
                scanned(segment[1], segment[2], state, consts)
        layout.update(drawn=[state["drawn"][a] for a in latent], ancestors=state["ancestors"])
        return state["keys"], state["parts"], state["log_weights"]

    layout: dict[str, list] = {}  # where run's outputs put each draw, known once it traced

    stage_of = [structure.stages[structure.addresses.index(a)] for a in structure.latent_addresses]

    @jax.jit
    def paths(parts: list) -> list:
        # each particle's path: the draws of its ancestors, gathered once, when first read
        def part(where: tuple) -> Any:
            index, row = where
            return parts[index] if row is None else parts[index][row]

        lineages = [jnp.arange(num_particles)]
        for where in reversed(layout["ancestors"]):
            lineages.append(part(where)[lineages[-1]])
        lineages.reverse()  # lineages[s]: the particles' ancestors among stage s's draws
        return [
            part(where)[lineages[s]] for s, where in zip(stage_of, layout["drawn"], strict=True)
        ]

    def particles_of(body: Callable, keys: Any, parts: list) -> Particles:
        def latents() -> dict:
            return dict(zip(structure.latent_addresses, paths(parts), strict=True))

        return Particles(body, structure, keys, latents)

    return lambda key, arguments: run(key, consts, arguments), particles_of
