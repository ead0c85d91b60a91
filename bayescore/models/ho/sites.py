r"""Drawing a site of a program from an object that outlives the program's run.

Random functions, random distributions and streams (:mod:`~bayescore.models.ho.functions`,
:mod:`~bayescore.models.ho.nonparametric`) draw their sites lazily, when they are queried. A
query during the run is an ordinary site of the run, at the address ``prefix + (name, ...)``
with ``prefix`` the scope where the object was made. A query after the run has ended (a
posterior draw of a function evaluated at a new point) draws from the same key
:math:`\mathrm{fold\_in}(k, h_0(a))` with :math:`a` the site's global address, outside the
finished trace, exactly as :class:`~bayescore.models.ho.MemFn` does: the value is the one the
run would have drawn had it made that query last.
"""

from __future__ import annotations

from typing import Any

import numpyro

from bayescore.models.ho.keys import Address
from bayescore.models.ho.runtime import Frame, FrameHandler


def sample_in_scope(owner: Frame, prefix: tuple, name: Address, distribution: Any) -> Any:
    """Draw the latent site ``name`` under the scope ``prefix`` of the run of ``owner``.

    During the run, the site is recorded in ``owner``'s trace (and replayed from it by
    SMC and trace MH); after the run, it is drawn from its address key, unrecorded.

    Example:
        >>> import jax, numpyro.distributions as dist
        >>> from bayescore.models.ho.runtime import run_frame
        >>> frame = Frame(key=jax.random.key(0))
        >>> during = run_frame(frame, sample_in_scope, frame, ("f",), "z", dist.Normal())
        >>> after = sample_in_scope(frame, ("f",), "z", dist.Normal())
        >>> list(frame.trace), bool(during == after)
        ([('f', 'z')], True)
    """
    frame = owner
    if owner.closed:
        frame = Frame(key=owner.root().key)
        scoped = owner.global_address(prefix)
        prefix = scoped if isinstance(scoped, tuple) else (scoped,)
    with frame.scoped(prefix), FrameHandler(frame):
        return numpyro.sample(name, distribution)
