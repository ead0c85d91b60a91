"""Progress bars for compiled loops: a tqdm bar on the host, ticked from a device callback.

Inside ``lax.scan`` the driver calls :func:`tick` every step; it fires a host callback only
every ``every`` steps (``lax.cond`` on the step counter, outside the chain ``vmap``), so the
loop pays one cheap comparison per step. The callback moves whichever bar is open; the compiled
program does not hold the bar, so cached programs serve later calls.

Example:
    >>> from bayescore.core.progress import ProgressBar
    >>> with ProgressBar(100, enabled=False) as bar:
    ...     bar.every
    0
"""

from __future__ import annotations

import sys
from typing import Any

import jax
from jaxtyping import Array

_OPEN: list[Any] = []  # the bar currently shown (at most one)


class ProgressBar:
    """A context manager around a tqdm bar over ``total`` transitions.

    Attributes:
        every: steps between two updates (0 when disabled); about 100 updates per run.
    """

    def __init__(self, total: int, *, enabled: bool = True, description: str = "") -> None:
        self.total = int(total)
        self.enabled = bool(enabled) and self.total > 0
        self.description = description
        self.every = max(1, self.total // 100) if self.enabled else 0
        self._bar = None

    def __enter__(self) -> ProgressBar:
        if self.enabled:
            from tqdm.auto import tqdm

            self._bar = tqdm(
                total=self.total,
                desc=self.description,
                file=sys.stderr,
                dynamic_ncols=True,
                leave=True,
            )
            _OPEN.append(self._bar)
        return self

    def advance(self, count: int = 1, **postfix: float) -> None:
        """From the host (a loop of compiled chunks): move ``count`` on and show ``postfix``.

        Example:
            >>> from bayescore.core.progress import ProgressBar
            >>> with ProgressBar(3, enabled=False) as bar:
            ...     bar.advance(1, loss=0.5)
        """
        if self._bar is not None:
            if postfix:
                self._bar.set_postfix({k: f"{v:.4g}" for k, v in postfix.items()}, refresh=False)
            self._bar.update(count)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            if exc[0] is None:
                self._bar.update(self.total - self._bar.n)
            self._bar.close()
            _OPEN.remove(self._bar)


def _move_to(done: Any) -> None:
    if _OPEN:
        bar = _OPEN[-1]
        bar.update(max(0, int(done) - bar.n))


def tick(
    step: Array, every: int, num_steps: int, offset: int, thin: int, on_this_device: Array | bool
) -> None:
    """Inside a compiled loop: report ``offset + (step + 1) * thin`` done every ``every`` steps.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from bayescore.core.progress import tick
        >>> jax.jit(lambda s: tick(s, 10, 100, 0, 1, True))(jnp.int32(3))
    """
    every_outer = max(1, every // max(1, thin))
    due = ((step + 1) % every_outer == 0) | (step + 1 == num_steps)
    jax.lax.cond(
        due & on_this_device,
        lambda: jax.debug.callback(_move_to, offset + (step + 1) * thin),
        lambda: None,
    )
