r"""Posterior draws of higher-order programs as an ArviZ ``DataTree``.

A program's posterior may hold functions, partitions and a varying number of sites, which
ArviZ cannot store as they are; :func:`to_arviz` stores what it can read:

* ``posterior``: the latent sites whose addresses are strings and that every draw has
  (dims ``(chain, draw, ...)``; for a chain, from its ``latents``); each random function
  named in ``evaluate`` on its grid (dims ``(chain, draw, <name>_x)``, the grid as
  coordinate); each quantity of ``derived``;
* ``log_likelihood``: for every observed site whose address is a string and that every draw
  has, its pointwise log density :math:`\log p(y_j \mid \theta)` per draw (dims
  ``(chain, draw, ...)``, one value per element of the site's batch shape, as
  ``numpyro.infer.log_likelihood`` gives it), for LOO and WAIC;
* ``sample_stats``: for a :class:`~bayescore.inference.programs.Population`, the
  pre-resampling ``log_weight`` and the ``particle`` index of each draw; for a trace-MH
  :class:`~bayescore.inference.programs.Chain`, ``log_weight`` and ``accepted``; a
  compiled population or chain is read from its arrays (one vmapped replay for the
  log-likelihood), not one trace per draw;
* attributes (of the tree and of each group): ``log_evidence``, ``particle_ess`` and
  ``num_particles`` of a population, ``acceptance_rate`` of a chain.

A population is resampled to equal weights first (systematic resampling): ArviZ has no
weights, so its draws are one chain of :math:`N` equally weighted draws whose ESS and
:math:`\hat R` are *not* those of the particles (use ``particle_ess``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import blackjax.smc.resampling as resampling
import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr
from jaxtyping import PRNGKeyArray

from bayescore.core.errors import ArgumentError
from bayescore.inference.programs.compiled import LazySequence, Particles
from bayescore.inference.programs.population import Population
from bayescore.inference.programs.trace_mh import Chain


def _function_of(value: Any, name: str) -> Callable:
    """The random function ``name`` of a program's value: the value itself if it is callable,
    else ``value[name]`` or ``value.name``."""
    if isinstance(value, Mapping) and callable(value.get(name)):
        return value[name]
    if callable(getattr(value, name, None)) and not callable(value):
        return getattr(value, name)
    if callable(value):
        return value
    raise ArgumentError(
        f"evaluate names {name!r}, but the program's value ({type(value).__name__}) is not a "
        f"function and has no function {name!r}. Return the function, or a dict holding it "
        f"under {name!r}."
    )


def _string_latents(traces: list[dict]) -> dict[str, list]:
    common = None
    for trace in traces:
        names = {a for a, site in trace.items() if isinstance(a, str) and site.is_latent}
        common = names if common is None else common & names
    return {name: [trace[name].value for trace in traces] for name in sorted(common or ())}


def _pointwise(site: Any) -> np.ndarray:
    return np.asarray(site.distribution.log_prob(site.value))


def _log_likelihood(observed: list[dict]) -> dict[str, list]:
    """Pointwise log densities of the string-addressed observed sites every draw has;
    draws sharing a site (a rejected MH step) share its computation."""
    common = set.intersection(*(set(sites) for sites in observed)) if observed else set()
    computed: dict[int, np.ndarray] = {}
    out: dict[str, list] = {}
    for name in sorted(common):
        out[name] = []
        for sites in observed:
            site = sites[name]
            if id(site) not in computed:
                computed[id(site)] = _pointwise(site)
            out[name].append(computed[id(site)])
    return out


def _observed_sites(trace: dict) -> dict:
    return {a: site for a, site in trace.items() if isinstance(a, str) and site.observed}


def _common_latents(latents: list[dict]) -> dict[str, list]:
    common = set.intersection(*(set(step) for step in latents)) if latents else set()
    return {name: [step[name] for step in latents] for name in sorted(common)}


def _compiled_groups(particles: Particles, indices: np.ndarray) -> tuple[dict, dict]:
    """The posterior and pointwise log-likelihood of a compiled run's rows ``indices``, read
    from its arrays rather than from one trace per draw."""
    structure = particles.structure
    posterior = {
        a: list(np.asarray(particles.latents[a])[indices])
        for a in sorted(a for a in structure.latent_addresses if isinstance(a, str))
    }
    log_likelihood = {
        a: list(particles.pointwise_log_prob(a)[indices])
        for a in sorted(a for a in structure.observed_addresses if isinstance(a, str))
    }
    return posterior, log_likelihood


def to_arviz(
    result: Population | Chain,
    evaluate: Mapping[str, Any] | None = None,
    derived: Mapping[str, Callable[[Any], Any]] | None = None,
    *,
    key: PRNGKeyArray | None = None,
) -> xr.DataTree:
    """The draws of ``result`` as an ArviZ ``DataTree`` (groups in the module docstring).

    Args:
        result: a Population (from ``importance``, ``smc``, ``rmsmc``) or a trace-MH Chain.
        evaluate: ``{name: grid}``: evaluate each draw's random function ``name`` (the value
            itself when it is callable, else ``value[name]``) at every point of the grid.
        derived: ``{name: function}``: store ``function(value)`` for every draw.
        key: the key of the resampling of a Population (default ``jax.random.key(0)``).

    Example:
        >>> import jax, numpyro, numpyro.distributions as dist
        >>> from bayescore.inference import programs
        >>> from bayescore.models import ho
        >>> def line():
        ...     slope = numpyro.sample("slope", dist.Normal())
        ...     numpyro.sample("y", dist.Normal(slope, 0.5), obs=1.0)
        ...     return lambda x: slope * x
        >>> population = programs.importance(ho.from_model(line), 20, jax.random.key(0))
        >>> tree = to_arviz(population, evaluate={"f": [0.0, 1.0, 2.0]},
        ...                 derived={"positive": lambda f: f(1.0) > 0})
        >>> sorted(tree.posterior.data_vars), tree.posterior["f"].shape
        (['f', 'positive', 'slope'], (1, 20, 3))
        >>> tree.log_likelihood["y"].shape
        (1, 20)
    """
    from arviz_base import from_dict

    import bayescore

    stats: dict[str, Any] = {}
    attrs: dict[str, Any] = {
        "inference_library": "bayescore",
        "inference_library_version": bayescore.__version__,
    }
    if isinstance(result, Population):
        key = jax.random.key(0) if key is None else key
        indices = np.asarray(
            resampling.systematic(
                key, jnp.asarray(result.normalized_weights()), result.num_particles
            )
        )
        values = LazySequence(lambda j: result.values[indices[j]], len(indices))
        particles = result.particles
        if particles is None:
            traces = [result.traces[i] for i in indices]
            posterior = _string_latents(traces)
            log_likelihood = _log_likelihood([_observed_sites(trace) for trace in traces])
        else:
            posterior, log_likelihood = _compiled_groups(particles, indices)
        stats = {"log_weight": result.log_weights[indices], "particle": indices}
        attrs.update(
            method="population",
            log_evidence=result.log_evidence,
            particle_ess=result.ess(),
            num_particles=result.num_particles,
        )
    elif isinstance(result, Chain):
        values = result.values
        if result.particles is None:
            posterior = _common_latents(result.latents or [])
            log_likelihood = _log_likelihood(result.observed or [])
        else:
            indices = np.arange(result.particles.num_particles)
            posterior, log_likelihood = _compiled_groups(result.particles, indices)
        stats = {"log_weight": result.log_weights, "accepted": result.accepted}
        attrs.update(method="trace_mh", acceptance_rate=result.acceptance_rate)
    else:
        raise ArgumentError(
            f"result must be a Population (importance, smc, rmsmc) or a Chain (trace_mh), "
            f"found {type(result).__name__}. Pass the result of one of those transformers."
        )
    dims: dict[str, list[str]] = {}
    coords: dict[str, Any] = {}
    for name, grid in (evaluate or {}).items():
        points = list(np.asarray(grid))
        posterior[name] = [
            np.stack([np.asarray(_function_of(value, name)(x)) for x in points]) for value in values
        ]
        dims[name] = [f"{name}_x"]
        coords[f"{name}_x"] = np.asarray(grid) if np.ndim(grid) == 1 else np.arange(len(points))
    for name, function in (derived or {}).items():
        posterior[name] = [np.asarray(function(value)) for value in values]
    groups = {
        "posterior": {n: np.stack([np.asarray(v) for v in d])[None] for n, d in posterior.items()}
    }
    groups["sample_stats"] = {name: np.asarray(value)[None] for name, value in stats.items()}
    if log_likelihood:
        groups["log_likelihood"] = {
            name: np.stack([np.asarray(v) for v in draws])[None]
            for name, draws in log_likelihood.items()
        }
    tree = from_dict(groups, dims=dims, coords=coords, attrs={group: attrs for group in groups})
    tree.attrs.update(attrs)
    return tree
