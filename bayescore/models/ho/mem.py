r"""Stochastic memoization: a random function drawn once per run, evaluated lazily.

``f = mem(name, fn)`` inside a program gives a function with

.. math::

    f(x) = fn(x) \text{ run under the scope } (\text{name}, x)
    \text{ the first time } x \text{ is seen in this run, and the same value afterwards.}

The sites of :math:`f(x)` get addresses ``(name, x, site)``, so their keys are
:math:`\mathrm{fold\_in}(k, h_0((\text{name}, x, \text{site})))`: on any domain the value of
:math:`f(x)` does not depend on the order of the queries, and no table of keys is needed. The
memo table lives in the run (each run, each particle has its own; a global cache would make
all runs share one function). This is LazyPPL's ``memoize`` (Dash et al., POPL 2023, Sec. 4)
without hidden state.

After the run has ended (a posterior draw of ``f`` evaluated at a new point), ``f(x)`` draws
the unexplored value from the same address-based key, outside the finished trace.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bayescore.models.ho.keys import canonical
from bayescore.models.ho.runtime import Frame, FrameHandler, current_frame


class MemFn[A]:
    """A memoized random function; call it like ``fn`` (see :func:`mem`).

    Example:
        >>> import jax, numpyro, numpyro.distributions as dist
        >>> from bayescore.models.ho.measure import Measure
        >>> def model():
        ...     f = mem("f", lambda x: numpyro.sample("y", dist.Normal()))
        ...     return f(1) == f(1), f
        >>> (same, f), _, trace = Measure.from_model(model).run(jax.random.key(0))
        >>> bool(same), list(trace)
        (True, [('f', 1, 'y')])
    """

    def __init__(self, name: Any, fn: Callable[..., A], frame: Frame, prefix: tuple):
        self.name = canonical(name)
        self.fn = fn
        self.frame = frame
        self.prefix = prefix

    def __call__(self, *args: Any) -> A:
        argument = canonical(args[0] if len(args) == 1 else args)
        entry = (self.prefix, self.name, argument)
        if entry in self.frame.memo:
            return self.frame.memo[entry]
        frame = self.frame
        address = self.prefix + (self.name, argument)
        if frame.closed:
            root = frame.root()
            frame = Frame(key=root.key, memo=frame.memo)
            global_address = self.frame.global_address(address)
            address = global_address if isinstance(global_address, tuple) else (global_address,)
        with frame.scoped(address), FrameHandler(frame):
            value = self.fn(*args)
        self.frame.memo[entry] = value
        return value

    def __repr__(self) -> str:
        return f"MemFn({self.name!r})"


def mem[A](name: Any, fn: Callable[..., A]) -> MemFn[A]:
    """Memoize the random function ``fn`` for the current run under the name ``name``.

    Must be called inside a running program (a model run by ``Measure.run``, ``Random.draw``
    or an inference transformer). Arguments must be hashable or arrays (they are part of the
    address).

    Example:
        >>> import jax, numpyro, numpyro.distributions as dist
        >>> from bayescore.models.ho.measure import Random
        >>> def uniform_function():
        ...     return mem("f", lambda x: numpyro.sample("y", dist.Bernoulli(0.5)))
        >>> f = Random.from_model(uniform_function).draw(jax.random.key(0))
        >>> int(f(3)) == int(f(3))
        True
    """
    frame = current_frame(required="ho.mem")
    return MemFn(name, fn, frame, tuple(frame.scope))
