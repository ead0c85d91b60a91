r"""NUTS on the static continuous fragment of higher-order programs.

A program whose run is static (the same sites and shapes on every run, see
:mod:`~bayescore.inference.programs.compiled`) and whose latent sites are all continuous has a
fixed-dimensional density

.. math::

    \pi(z) \propto \prod_{a \text{ latent}} p_a(z_a \mid z_{<a})
        \prod_{b \text{ observed}} p_b(y_b \mid z),

which is what ``bc.Target.from_numpyro`` builds; :func:`nuts` checks the two conditions and
hands the model to ``bc.sample`` with BlackJAX's NUTS (``bc.inference.nuts()``). A program
that returns a function keeps doing so: evaluate ``model`` at a posterior draw, or use
:func:`~bayescore.inference.programs.importance` / ``smc`` for functions of the value.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from jaxtyping import PRNGKeyArray

from bayescore.core.errors import DiscreteLatentError, ModelError
from bayescore.inference.programs.compiled import DynamicProgramError, analyse, program_name
from bayescore.models.ho.measure import Measure, Random


def nuts(
    program: Measure | Random | Callable,
    *args: Any,
    key: PRNGKeyArray | int,
    method: Any = None,
    model_kwargs: dict | None = None,
    **sample_kwargs: Any,
) -> Any:
    """NUTS on a static program with continuous latents: ``bc.sample(method,
    bc.Target.from_numpyro(model, *args, **model_kwargs), key=key, **sample_kwargs)``.

    Args:
        program: a NumPyro model (called with ``*args`` and ``model_kwargs``) or a
            ``Measure`` / ``Random`` made by ``ho.from_model(model, *args)``.
        key: the sampler's key.
        method: the ``bc.sample`` method (default ``bc.inference.nuts()``).
        sample_kwargs: ``num_samples``, ``num_warmup``, ``num_chains``, ``progress``, ... of
            ``bc.sample``.

    Returns:
        The bayescore ``Result`` (``result.to_arviz()`` for ArviZ).

    Raises:
        DynamicProgramError: the program's structure is not static (the reason is named).
        DiscreteLatentError: a latent site is discrete (it is named).
        ModelError: a site lives in an ``ho.call`` / ``ho.mem`` scope, which NumPyro's own
            handlers cannot see.

    Example:
        >>> import jax, numpyro, numpyro.distributions as dist
        >>> from bayescore.models import ho
        >>> def model(y):
        ...     mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
        ...     numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)
        ...     return lambda x: mu * x
        >>> result = nuts(ho.from_model(model, 1.0), key=jax.random.key(0), num_samples=100,
        ...               num_warmup=100, num_chains=1, progress=False)
        >>> result.positions["mu"].shape
        (1, 100)
    """
    from bayescore.core.driver import sample
    from bayescore.core.target import Target
    from bayescore.inference.nuts import nuts as nuts_method

    if isinstance(program, Measure | Random):
        body = functools.partial(program.body, *args, **(model_kwargs or {}))
    else:
        body = functools.partial(program, *args, **(model_kwargs or {}))
    name = program_name(body)
    structure = analyse(body)
    if isinstance(structure, str):
        raise DynamicProgramError(
            f"nuts needs a static program (the same sites and shapes on every run), but "
            f"program {name!r} is dynamic: {structure}. Use programs.trace_mh or programs.smc, "
            f"which run dynamic programs."
        )
    if structure.discrete:
        raise DiscreteLatentError(
            f"nuts needs continuous latent sites, but site {structure.discrete[0]!r} of "
            f"program {name!r} is discrete. Marginalise it out (numpyro's "
            f"infer_discrete/enumeration), or use programs.trace_mh or programs.smc."
        )
    scoped = [a for a in structure.addresses if not isinstance(a, str)]
    if scoped:
        raise ModelError(
            f"nuts runs the program under NumPyro's own handlers, which cannot see site "
            f"{scoped[0]!r} of program {name!r} (an ho.call / ho.mem scope). Write the site "
            f"as a plain numpyro.sample, or use programs.trace_mh or programs.smc."
        )
    target = Target.from_numpyro(body)
    return sample(nuts_method() if method is None else method, target, key=key, **sample_kwargs)
