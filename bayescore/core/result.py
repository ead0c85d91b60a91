"""Result: the draws of a run, and their conversion to an ArviZ ``DataTree``.

``Result.to_arviz()`` fills the groups ArviZ's diagnostics read:

* ``posterior``: constrained site values (and deterministic sites), dims named by plates;
* ``sample_stats``: ``lp`` and the method's per-draw statistics (``acceptance_rate``,
  ``step_size``, ``diverging``, ``n_steps``, ... where the method has them), and
  ``nonfinite``: whether the step left a NaN or inf in the chain's state (see ``on_fault``
  in :func:`~bayescore.core.driver.sample`);
* ``log_likelihood``: pointwise log likelihood per observed site (so ``az.loo`` works);
* ``observed_data``: the full observed data.

:func:`predict` adds ``posterior_predictive``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr
from jaxtyping import PRNGKeyArray
from numpyro.infer import Predictive
from numpyro.primitives import Messenger

from bayescore.core.errors import ArgumentError
from bayescore.core.target import Target, _Plates


@dataclasses.dataclass(frozen=True)
class Result:
    """Draws (unconstrained, ``(chain, draw, ...)``), per-draw stats and the Target.

    Attributes:
        positions: unconstrained draws, a pytree with leading ``(chain, draw)`` axes.
        stats: per-draw statistics, each ``(chain, draw)``.
        parameters: what warmup tuned, per chain (e.g. NUTS's step size, inverse mass matrix).
        target: the Target that was sampled.
        method: the name of the method.
        dropped_chains: the chains left out because their state became NaN or infinite
            (``bc.sample(..., on_fault="drop_chain")``); the DataTree's ``chain`` coordinate
            keeps the original numbers of the others.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> import bayescore as bc
        >>> target = bc.Target.from_logdensity(lambda p: -0.5 * p["x"] ** 2, {"x": 0.0})
        >>> result = bc.sample(bc.inference.nuts(), target, num_samples=50, num_warmup=50,
        ...                    num_chains=2, key=jax.random.key(1), progress=False)
        >>> tree = result.to_arviz()
        >>> sorted(tree.children)
        ['posterior', 'sample_stats']
        >>> dict(tree.posterior.sizes)
        {'chain': 2, 'draw': 50}
    """

    positions: Any
    stats: Mapping[str, Any]
    parameters: Any
    target: Target
    method: str = ""
    dropped_chains: tuple[int, ...] = ()

    @property
    def num_chains(self) -> int:
        return int(jax.tree.leaves(self.positions)[0].shape[0])

    @property
    def num_samples(self) -> int:
        return int(jax.tree.leaves(self.positions)[0].shape[1])

    def constrained(self) -> dict[str, Any]:
        """Constrained values (and deterministic sites), each ``(chain, draw, ...)``.

        Example:
            >>> import jax.numpy as jnp
            >>> import bayescore as bc
            >>> target = bc.Target.from_logdensity(lambda p: -p["x"] ** 2, {"x": 0.0})
            >>> bc.Result({"x": jnp.zeros((2, 3))}, {}, (), target).constrained()["x"].shape
            (2, 3)
        """
        return _constrain_draws(self.target, self.positions)

    def to_arviz(
        self,
        *,
        coords: Mapping[str, Any] | None = None,
        dims: Mapping[str, list[str]] | None = None,
    ) -> xr.DataTree:
        """The run as an ArviZ ``DataTree`` (groups as in the module docstring).

        Args:
            coords: extra or replacement coordinates, e.g. ``{"school": names}``.
            dims: extra or replacement dims per variable.

        Example:
            >>> import jax, jax.numpy as jnp, numpyro, numpyro.distributions as dist
            >>> import bayescore as bc
            >>> def model(y):
            ...     mu = numpyro.sample("mu", dist.Normal(0, 5))
            ...     with numpyro.plate("obs_id", len(y)):
            ...         numpyro.sample("y", dist.Normal(mu, 1), obs=y)
            >>> target = bc.Target.from_numpyro(model, jnp.array([0.1, -0.4, 0.3]))
            >>> result = bc.sample(bc.inference.nuts(), target, num_samples=50, num_warmup=50,
            ...                    num_chains=2, key=jax.random.key(0), progress=False)
            >>> tree = result.to_arviz()
            >>> sorted(tree.children)
            ['log_likelihood', 'observed_data', 'posterior', 'sample_stats']
            >>> tree.log_likelihood["y"].dims
            ('chain', 'draw', 'obs_id')
        """
        posterior = self.constrained()
        groups: dict[str, dict[str, np.ndarray]] = {
            "posterior": {name: np.asarray(value) for name, value in posterior.items()},
            "sample_stats": {name: np.asarray(value) for name, value in self.stats.items()},
        }
        if self.target.observed:
            log_likelihood = self.target.pointwise_log_likelihood(posterior, batch_ndims=2)
            groups["log_likelihood"] = {n: np.asarray(v) for n, v in log_likelihood.items()}
            groups["observed_data"] = self.target.observed_data()
        if self.dropped_chains:
            kept = [
                c
                for c in range(self.num_chains + len(self.dropped_chains))
                if c not in self.dropped_chains
            ]
            coords = {"chain": kept, **(coords or {})}
        tree = _to_datatree(self.target, groups, coords, dims, self.method)
        if self.dropped_chains:
            for group in tree.children.values():
                group.attrs["dropped_chains"] = list(self.dropped_chains)
        return tree


def predict(
    model: Callable, result: Result, *args: Any, key: PRNGKeyArray | int = 0, **kwargs: Any
) -> xr.DataTree:
    """Posterior predictive draws of the observed sites, added to ``result.to_arviz()``.

    The model is run once per posterior draw with ``*args, **kwargs`` (the Target's own
    arguments when none are given); its observed sites are sampled afresh, ignoring ``obs``.

    Returns:
        The DataTree of :meth:`Result.to_arviz` with a ``posterior_predictive`` group.

    Example:
        >>> import jax, jax.numpy as jnp, numpyro, numpyro.distributions as dist
        >>> import bayescore as bc
        >>> def model(y):
        ...     mu = numpyro.sample("mu", dist.Normal(0, 5))
        ...     with numpyro.plate("obs_id", len(y)):
        ...         numpyro.sample("y", dist.Normal(mu, 1), obs=y)
        >>> y = jnp.array([0.1, -0.4, 0.3])
        >>> result = bc.sample(bc.inference.nuts(), bc.Target.from_numpyro(model, y),
        ...                    num_samples=50, num_warmup=50, num_chains=2,
        ...                    key=jax.random.key(0), progress=False)
        >>> tree = bc.predict(model, result, y)
        >>> tree.posterior_predictive["y"].shape
        (2, 50, 3)
    """
    from bayescore.core.driver import as_key

    if not isinstance(result, Result):
        raise ArgumentError(
            f"result must be a bayescore Result (from bc.sample), got {type(result).__name__}."
        )
    if not callable(model):
        raise ArgumentError(f"model must be a NumPyro model, got {type(model).__name__}.")
    target = result.target
    if not args and not kwargs:
        args, kwargs = target.model_args, target.model_kwargs
    posterior = result.constrained()
    latent = {site.name: posterior[site.name] for site in target.latent}
    observed = [site.name for site in target.observed]
    predictive = Predictive(
        _Plates(_Unobserve(model, observed)),
        posterior_samples=latent,
        return_sites=observed,
        batch_ndims=2,
    )
    draws = predictive(as_key(key), *args, **kwargs)
    tree = result.to_arviz()
    groups = {"posterior_predictive": {name: np.asarray(v) for name, v in draws.items()}}
    predictive_tree = _to_datatree(target, groups, None, None, result.method)
    tree["posterior_predictive"] = predictive_tree["posterior_predictive"]
    return tree


class _Unobserve(Messenger):
    """Turn the named observed sites into sampled ones (NumPyro has no handler for this)."""

    def __init__(self, fn: Callable, names: list[str]) -> None:
        self.names = set(names)
        super().__init__(fn)

    def process_message(self, msg: dict) -> None:
        if msg["type"] == "sample" and msg["name"] in self.names and msg["is_observed"]:
            msg["is_observed"] = False
            msg["value"] = None


@eqx.filter_jit
def _constrain_draws(target: Target, positions: Any) -> dict[str, Any]:
    return jax.vmap(jax.vmap(target.constrain))(positions)


def _to_datatree(
    target: Target, groups: dict, coords: Mapping | None, dims: Mapping | None, method: str
) -> xr.DataTree:
    from arviz_base import from_dict

    import bayescore

    all_dims = target.site_dims()
    all_dims.update(dims or {})
    all_coords = target.site_coords()
    all_coords.update(coords or {})
    for values in groups.values():
        for name, value in values.items():
            if value.dtype == jnp.bfloat16:
                values[name] = value.astype(np.float32)
    attrs = {
        "inference_library": "bayescore",
        "inference_library_version": bayescore.__version__,
        "method": method,
    }
    used = {d for name_dims in all_dims.values() for d in name_dims}
    return from_dict(
        groups,
        dims={k: v for k, v in all_dims.items()},
        coords={k: v for k, v in all_coords.items() if k in used or k in ("chain", "draw")},
        attrs={group: attrs for group in groups},
    )
