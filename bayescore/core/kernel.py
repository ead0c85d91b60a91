"""The Kernel and Method protocols: what ``bc.sample`` runs.

A :class:`Kernel` is a pair of pure functions with the shape of BlackJAX's
``SamplingAlgorithm``, so a BlackJAX algorithm plugs in unchanged::

    init(position, key) -> state            # key may be ignored
    step(key, state) -> (state, info)       # one transition; never owns a loop

States carry ``.position`` (an unconstrained pytree) and, when they have it, ``.logdensity``.
Infos are NamedTuples; their scalar fields become ArviZ ``sample_stats``.

A :class:`Method` is a sampler that tunes itself during warmup. It builds two kernels from a
Target: a warmup kernel whose state carries the adaptation, and the tuned kernel used for the
draws, from the parameters the warmup found::

    warmup(target, num_warmup) -> Kernel                 # state: adaptation + chain state
    tune(target, warmup_state) -> (parameters, state)    # per chain, after warmup
    kernel(target, parameters) -> Kernel                 # the tuned transition

``bc.sample`` runs every chain through the same three calls, so a new algorithm is one file
that implements them.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol, runtime_checkable

import equinox as eqx
from jaxtyping import PRNGKeyArray

from bayescore.core.errors import ArgumentError

State = Any
Info = Any


class Kernel(NamedTuple):
    """A Markov kernel as two pure functions (same fields as ``blackjax.SamplingAlgorithm``).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from bayescore.core.kernel import Kernel
        >>> random_walk = Kernel(
        ...     init=lambda position, key=None: position,
        ...     step=lambda key, x: (x + 0.1 * jax.random.normal(key, jnp.shape(x)), ()),
        ... )
        >>> state, info = random_walk.step(jax.random.key(0), random_walk.init(jnp.zeros(2)))
        >>> state.shape
        (2,)
    """

    init: Callable[..., State]
    step: Callable[[PRNGKeyArray, State], tuple[State, Info]]


@runtime_checkable
class Method(Protocol):
    """A self-tuning sampler: a warmup kernel, then a tuned kernel (see the module docstring)."""

    def warmup(self, target: Any, num_warmup: int) -> Kernel: ...

    def tune(self, target: Any, warmup_state: State) -> tuple[Any, State]: ...

    def kernel(self, target: Any, parameters: Any) -> Kernel: ...


class Fixed(eqx.Module):
    """A kernel with nothing to tune, as a :class:`Method`: warmup is plain burn-in.

    ``bc.sample`` wraps any ``Kernel`` or BlackJAX ``SamplingAlgorithm`` in this.

    Example:
        >>> import blackjax, jax, jax.numpy as jnp
        >>> from bayescore.core.kernel import Fixed
        >>> mala = blackjax.mala(lambda x: -0.5 * jnp.sum(x ** 2), step_size=0.5)
        >>> method = Fixed(mala)
        >>> state = method.warmup(None, 0).init(jnp.zeros(2), jax.random.key(0))
        >>> float(state.logdensity)
        0.0
    """

    algorithm: Any

    @property
    def name(self) -> str:
        """``blackjax.<algorithm>`` for BlackJAX algorithms, else the step function's name."""
        step = self.algorithm.step
        for function in (
            step,
            *(
                cell.cell_contents
                for cell in (step.__closure__ or ())
                if callable(cell.cell_contents)
            ),
        ):
            module = getattr(function, "__module__", "") or ""
            if module.startswith("blackjax.") and not module.endswith(".base"):
                return "blackjax." + module.rsplit(".", 1)[-1]
        return getattr(step, "__name__", type(self.algorithm).__name__)

    def warmup(self, target: Any, num_warmup: int) -> Kernel:
        return Kernel(_init_with_key(self.algorithm.init), self.algorithm.step)

    def tune(self, target: Any, warmup_state: State) -> tuple[Any, State]:
        return (), warmup_state

    def kernel(self, target: Any, parameters: Any) -> Kernel:
        return Kernel(_init_with_key(self.algorithm.init), self.algorithm.step)


def as_method(method: Any) -> Method:
    """Accept a :class:`Method`, a :class:`Kernel` or a BlackJAX ``SamplingAlgorithm``.

    Raises:
        ArgumentError: ``method`` is none of these.

    Example:
        >>> import blackjax, jax.numpy as jnp
        >>> from bayescore.core.kernel import as_method
        >>> type(as_method(blackjax.mala(lambda x: -x @ x, step_size=0.1))).__name__
        'Fixed'
    """
    if isinstance(method, Method):
        return method
    if callable(getattr(method, "init", None)) and callable(getattr(method, "step", None)):
        return Fixed(method)
    raise ArgumentError(
        f"method must be a bayescore method (e.g. bc.inference.nuts()), a bayescore Kernel or "
        f"a BlackJAX SamplingAlgorithm (with init and step), got {type(method).__name__}."
    )


def _init_with_key(init: Callable[..., State]) -> Callable[[Any, PRNGKeyArray], State]:
    """Adapt ``init(position)`` or ``init(position, rng_key)`` to ``init(position, key)``."""
    try:
        parameters = inspect.signature(init).parameters.values()
    except (TypeError, ValueError):
        return init
    positional = [
        p
        for p in parameters
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
    ]
    if len(positional) >= 2 or any(p.kind == p.VAR_POSITIONAL for p in positional):
        return init
    return lambda position, key: init(position)
