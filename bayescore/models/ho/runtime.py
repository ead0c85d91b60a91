r"""Running a program: frames, addresses, traces, and the NumPyro handler that drives them.

A *frame* is one execution of a program body. Every NumPyro ``sample`` message reaching the
frame's handler gets an address (the frame's current scope joined with the site's name) and:

* a **latent** site takes its value from the frame's ``replay`` map if the address is there,
  otherwise asks the enclosing frame (under the frame's ``prefix``), and so on up to the root
  frame, which draws from the site's prior with the key :math:`\mathrm{fold\_in}(k, h_0(a))`
  (:mod:`~bayescore.models.ho.keys`). A fresh draw is recorded in the trace of every frame it
  passed through, so the root trace holds every random choice of a run, nested ones included;
* an **observed** or ``numpyro.factor`` site adds :math:`\log p(y \mid \cdot)` to the frame's
  own log weight, never to an enclosing frame's (a particle's weight is its own).

Nested frames are how inference transformers run their particles inside a run: the
transformer's random choices (the particles' fresh draws, resampling indices) are then sites of
the enclosing program, which :func:`bayescore.inference.programs.enumerate` can enumerate.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import PRNGKeyArray
from numpyro.primitives import _PYRO_STACK, Messenger

from bayescore.core.errors import ModelError
from bayescore.models.ho.keys import Address, address_hash, canonical, join, key_at


class ScoreInRandomError(ModelError):
    """A ``Random`` (a prior, affine: no weighting) reached an observed or factor site."""


class AddressError(ModelError):
    """Two sites of one run have the same address, or a primitive ran outside any program."""


class Site(NamedTuple):
    """One site of a trace.

    Attributes:
        value: the site's value.
        log_prob: :math:`\\log p(\\text{value} \\mid \\text{parents})` summed over the site's
            shape (scaled and masked as NumPyro's handlers ask); ``-inf`` for a replayed value
            outside the support.
        observed: ``True`` for observed and factor sites (they weight the run).
        distribution: the site's NumPyro distribution; ``None`` for deterministic sites.

    Example:
        >>> Site(1, -0.69, False, None).is_latent
        False
    """

    value: Any
    log_prob: float
    observed: bool
    distribution: Any

    @property
    def is_latent(self) -> bool:
        """A random choice: not observed, and drawn from a distribution."""
        return not self.observed and self.distribution is not None


class Branch(Exception):  # noqa: N818 - a control signal of enumeration, never seen by users
    """Raised by a root frame in enumeration mode at a fresh site: enumerate its support."""

    def __init__(self, address: Address, distribution: Any):
        super().__init__(address)
        self.address = address
        self.distribution = distribution


class Suspend(Exception):  # noqa: N818 - a control signal of SMC, never seen by users
    """Raised after a frame's ``suspend_after``-th observed site (SMC's suspension point)."""

    def __init__(self, frame: Frame):
        super().__init__()
        self.frame = frame


@dataclasses.dataclass(eq=False)
class Frame:
    """The state of one execution of a program body (see the module docstring).

    Example:
        >>> import jax, numpyro, numpyro.distributions as dist
        >>> frame = Frame(key=jax.random.key(0))
        >>> value = run_frame(frame, lambda: numpyro.sample("x", dist.Bernoulli(0.5)))
        >>> list(frame.trace), frame.trace["x"].log_prob
        (['x'], -0.693...)
    """

    key: PRNGKeyArray | None = None
    parent: Frame | None = None
    prefix: tuple = ()
    replay: Mapping[Address, Any] = dataclasses.field(default_factory=dict)
    suspend_after: int | None = None
    branch: bool = False
    affine: int = 0
    trace: dict[Address, Site] = dataclasses.field(default_factory=dict)
    log_weight: float = 0.0
    num_observed: int = 0
    scope: list = dataclasses.field(default_factory=list)
    memo: dict = dataclasses.field(default_factory=dict)
    closed: bool = False
    _num_keys: int = 0

    def address(self, name: Address) -> Address:
        return join(tuple(self.scope), name)

    def global_address(self, address: Address) -> Address:
        frame = self
        while frame.parent is not None:
            address = join(frame.prefix, address)
            frame = frame.parent
        return address

    def root(self) -> Frame:
        frame = self
        while frame.parent is not None:
            frame = frame.parent
        return frame

    def record(self, address: Address, site: Site) -> None:
        if address in self.trace:
            raise AddressError(
                f"site {address!r} was reached twice in one run: every site needs its own "
                f"address. Give the sites distinct names, or run repeated sub-programs under "
                f"ho.call(name, ...) or ho.mem(name, ...), which put them in their own scope."
            )
        self.trace[address] = site

    @contextlib.contextmanager
    def scoped(self, prefix: tuple) -> Iterator[None]:
        """Run with the scope replaced by ``prefix`` (memoized calls keep their own address)."""
        saved, self.scope = self.scope, list(prefix)
        try:
            yield
        finally:
            self.scope = saved


def _score(distribution: Any, value: Any, mask: Any, scale: Any, check_support: bool) -> Any:
    log_prob = distribution.log_prob(value)
    if check_support:
        # NumPyro does not check supports (DiscreteUniform scores any integer alike): a replayed
        # value from another branch of the program may lie outside the new site's support.
        log_prob = jnp.where(distribution.support(value), log_prob, -jnp.inf)
    if mask is not None:
        log_prob = jnp.where(mask, log_prob, 0.0)
    if scale is not None:
        log_prob = scale * log_prob
    return jnp.sum(log_prob)


def _draw_and_score(distribution: Any, key: Any, address: Any, mask: Any, scale: Any) -> Any:
    value = distribution.sample(jax.random.fold_in(key, address))
    return value, _score(distribution, value, mask, scale, False)


# One compiled program per distribution type and parameter shapes: a NumPyro log_prob run op
# by op costs about a millisecond (xlogy's custom JVP is retraced at every call), the compiled
# one a single dispatch. Distributions that are not pytrees run op by op.
_COMPILED = {
    _score: jax.jit(_score, static_argnums=4),
    _draw_and_score: jax.jit(_draw_and_score),
}
_EAGER_TYPES: set[type] = set()


def _compiled(function: Callable, distribution: Any, *args: Any) -> Any:
    if type(distribution) not in _EAGER_TYPES:
        try:
            return _COMPILED[function](distribution, *args)
        except TypeError:  # not a pytree, or not traceable: run it op by op from now on
            _EAGER_TYPES.add(type(distribution))
    return function(distribution, *args)


def host_float(value: Any) -> Any:
    """``float(value)``, unless ``value`` is a JAX tracer: the same program then runs traced
    (the compiled tier of :mod:`bayescore.inference.programs`) and keeps its log probs traced.

    Example:
        >>> import jax.numpy as jnp
        >>> host_float(jnp.float32(1.5))
        1.5
    """
    return value if isinstance(value, jax.core.Tracer) else float(value)


def _site_log_prob(msg: dict, value: Any, check_support: bool) -> float:
    return host_float(
        _compiled(_score, msg["fn"], value, msg.get("mask"), msg.get("scale"), check_support)
    )


def _choose(frame: Frame, address: Address, msg: dict) -> tuple[Any, float, list]:
    """The value of a latent site and its log prob: replayed by the nearest frame that knows
    it (its support checked), else drawn from the prior by the root frame."""
    path = []
    while True:
        path.append((frame, address))
        if address in frame.replay:
            value = frame.replay[address]
            return value, _site_log_prob(msg, value, check_support=True), path
        if frame.parent is None:
            break
        address = join(frame.prefix, address)
        frame = frame.parent
    if frame.branch:
        raise Branch(address, msg["fn"])
    if frame.key is None:
        raise AddressError(
            f"site {address!r} needs a random draw but its run has no key. Run the program "
            f"with Measure.run(key) or an inference transformer."
        )
    value, log_prob = _compiled(
        _draw_and_score,
        msg["fn"],
        frame.key,
        np.uint32(address_hash(address)),
        msg.get("mask"),
        msg.get("scale"),
    )
    return value, host_float(log_prob), path


class FrameHandler(Messenger):
    """The NumPyro Messenger that hands every site of a program to its frame.

    It stops each message it handles, so handlers outside the program never see its sites;
    handlers the model applies itself (``plate``, ``scale``, ``mask``, NumPyro's ``scope``) act
    first, as they sit above it on the stack.

    Example:
        >>> import jax, numpyro, numpyro.distributions as dist
        >>> frame = Frame(key=jax.random.key(0))
        >>> with FrameHandler(frame):
        ...     numpyro.factor("w", -1.5)
        >>> frame.log_weight
        -1.5
    """

    def __init__(self, frame: Frame):
        self.frame = frame
        super().__init__(fn=None)

    def process_message(self, msg: dict) -> None:
        frame = self.frame
        kind = msg["type"]
        if kind == "sample":
            address = frame.address(msg["name"])
            if msg["is_observed"]:
                self._observe(frame, address, msg)
                return
            value, log_prob, path = _choose(frame, address, msg)
            for owner, owner_address in path:
                owner.record(owner_address, Site(value, log_prob, False, msg["fn"]))
            msg["value"] = value
            msg["stop"] = True
        elif kind == "deterministic":
            frame.record(frame.address(msg["name"]), Site(msg["value"], 0.0, False, None))
            msg["stop"] = True
        elif kind == "prng_key":
            address = frame.global_address(frame.address(("prng_key", frame._num_keys)))
            frame._num_keys += 1
            root = frame.root()
            if root.key is None:
                raise ModelError(
                    f"numpyro.prng_key() at {address!r} asks for randomness that enumeration "
                    f"cannot list. Draw the randomness with numpyro.sample sites instead."
                )
            msg["value"] = key_at(root.key, address)
            msg["stop"] = True

    @staticmethod
    def _observe(frame: Frame, address: Address, msg: dict) -> None:
        if frame.affine:
            raise ScoreInRandomError(
                f"site {address!r} is observed or a factor inside a Random: a Random is a "
                f"prior (it draws values, it cannot weight them), found a score. Move the "
                f"observation into a Measure (Measure.from_model, ho.call), or remove it."
            )
        log_prob = _site_log_prob(msg, msg["value"], check_support=False)
        frame.record(address, Site(msg["value"], log_prob, True, msg["fn"]))
        frame.log_weight += log_prob
        frame.num_observed += 1
        msg["stop"] = True
        if frame.suspend_after is not None and frame.num_observed >= frame.suspend_after:
            raise Suspend(frame)


def current_frame(required: str | None = None) -> Frame | None:
    """The innermost running frame; ``None`` (or an error naming ``required``) outside a run.

    Example:
        >>> current_frame() is None
        True
    """
    for handler in reversed(_PYRO_STACK):
        if isinstance(handler, FrameHandler):
            return handler.frame
    if required is not None:
        raise AddressError(
            f"{required} must run inside a program, found no running program. Call it from a "
            f"model run by Measure.run(key), Random.draw(key) or an inference transformer."
        )
    return None


@contextlib.contextmanager
def scope(name: Any) -> Iterator[Frame]:
    """Prefix the addresses of the sites run inside with ``name`` (a string, number or tuple).

    Example:
        >>> import jax, numpyro, numpyro.distributions as dist
        >>> frame = Frame(key=jax.random.key(0))
        >>> def body():
        ...     with scope("f"):
        ...         return numpyro.sample("y", dist.Normal())
        >>> _ = run_frame(frame, body)
        >>> list(frame.trace)
        [('f', 'y')]
    """
    frame = current_frame(required="a scope")
    part = canonical(name)
    frame.scope.extend(part if isinstance(part, tuple) else (part,))
    depth = len(part) if isinstance(part, tuple) else 1
    try:
        yield frame
    finally:
        del frame.scope[len(frame.scope) - depth :]


def run_frame(frame: Frame, body: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run ``body(*args, **kwargs)`` in ``frame``; the frame is closed afterwards.

    Example:
        >>> import jax
        >>> run_frame(Frame(key=jax.random.key(0)), lambda: 3)
        3
    """
    try:
        with FrameHandler(frame):
            return body(*args, **kwargs)
    finally:
        frame.closed = True


def run_nested(
    body: Callable[[], Any],
    prefix: tuple,
    replay: Mapping[Address, Any] | None = None,
    suspend_after: int | None = None,
) -> tuple[Any, Frame, bool]:
    """Run ``body`` as a particle of the running program: its fresh draws become sites of the
    enclosing program under ``prefix``; its weight stays its own.

    Returns ``(value, frame, suspended)``; ``value`` is ``None`` when the run suspended.

    Example:
        >>> import jax, numpyro, numpyro.distributions as dist
        >>> outer = Frame(key=jax.random.key(0))
        >>> def body():
        ...     return run_nested(lambda: numpyro.factor("w", -2.0), ("particle", 0))
        >>> _, inner, suspended = run_frame(outer, body)
        >>> inner.log_weight, outer.log_weight, suspended
        (-2.0, 0.0, False)
    """
    parent = current_frame(required="a particle")
    frame = Frame(parent=parent, prefix=prefix, replay=replay or {}, suspend_after=suspend_after)
    try:
        return run_frame(frame, body), frame, False
    except Suspend as signal:
        if signal.frame is not frame:
            raise
        return None, frame, True
