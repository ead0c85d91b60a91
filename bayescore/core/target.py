r"""The Target: an unnormalised log density on an unconstrained space, with everything a backend
and ArviZ need to know about it.

For a NumPyro model with latent sites :math:`z = T(u)` (``T`` the bijection from the real
space to each site's support) the Target's log density is

.. math::

    \log \pi(u) = \log p(y, T(u)) + \log |\det J_T(u)|,

the negated NumPyro ``potential_energy``. With a data plate declared as
``numpyro.plate(name, N, subsample_size=B)`` the Target also offers the unbiased estimate

.. math::

    \widehat{\log \pi}(u) = \log p(T(u)) + \log|\det J_T(u)|
        + \frac{N}{B}\sum_{i \in I} \log p(y_i \mid T(u)),

with :math:`I` a uniformly drawn subset of size ``B`` (NumPyro's plate applies the ``N/B`` scale).

The Target is an immutable ``equinox.Module``: the model's array arguments are its pytree
leaves, so a jitted function that takes the Target as an argument traces the data instead of
baking it into the program as constants, and the same compiled program serves every call.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import warnings
import zlib
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from jax.sharding import PartitionSpec
from jaxtyping import Array, PRNGKeyArray
from numpyro import handlers
from numpyro.distributions import biject_to
from numpyro.infer import util as numpyro_util
from numpyro.primitives import Messenger

from bayescore.core.errors import (
    ArgumentError,
    DataError,
    DiscreteLatentError,
    InitializationError,
    ModelError,
    ShapeError,
    check_positive_int,
)
from bayescore.core.likelihoods import fused

Params = Any  # a pytree of unconstrained arrays; a dict keyed by site for NumPyro models


class Site(NamedTuple):
    """What ArviZ needs to know about one model site (hashable, so it can be static in jit).

    Attributes:
        name: the NumPyro site name.
        shape: shape of the constrained value of one draw.
        dims: one dimension name per axis; plate axes carry the plate's name.
        unconstrained_shape: shape in the unconstrained space (latent sites only).
        discrete: whether the site's support is discrete.
    """

    name: str
    shape: tuple[int, ...]
    dims: tuple[str, ...]
    unconstrained_shape: tuple[int, ...] = ()
    discrete: bool = False


class SubsamplePlate(NamedTuple):
    """A ``numpyro.plate(name, size, subsample_size=...)`` found in the model."""

    name: str
    size: int
    subsample_size: int


class Target(eqx.Module):
    """An unnormalised log density over an unconstrained parameter pytree.

    Build one with :meth:`Target.from_numpyro` or :meth:`Target.from_logdensity`; every
    backend takes a Target.

    Example:
        >>> import jax, jax.numpy as jnp, numpyro, numpyro.distributions as dist
        >>> import bayescore as bc
        >>> def model(y):
        ...     scale = numpyro.sample("scale", dist.HalfNormal(1.0))
        ...     numpyro.sample("y", dist.Normal(0.0, scale), obs=y)
        >>> target = bc.Target.from_numpyro(model, jnp.array([0.5, -0.3]))
        >>> params = target.init(jax.random.key(0), num_chains=2)
        >>> params["scale"].shape
        (2,)
        >>> bool(jnp.isfinite(jax.vmap(target.logdensity)(params)).all())
        True
    """

    model_args: tuple
    model_kwargs: dict
    model: Callable | None = eqx.field(static=True)
    density_fn: Callable | None = eqx.field(static=True)
    latent: tuple[Site, ...] = eqx.field(static=True)
    observed: tuple[Site, ...] = eqx.field(static=True)
    deterministic: tuple[Site, ...] = eqx.field(static=True)
    subsample_plates: tuple[SubsamplePlate, ...] = eqx.field(static=True)
    coords: tuple[tuple[str, tuple], ...] = eqx.field(static=True)
    example_params: Any = eqx.field(static=True)
    data_axis: str | None = eqx.field(static=True, default=None)
    data_devices: int = eqx.field(static=True, default=1)

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_numpyro(cls, model: Callable, *args: Any, **kwargs: Any) -> Target:
        """Wrap a NumPyro model called with ``*args, **kwargs``.

        The model is traced once: latent sites become the unconstrained parameters, observed
        sites are checked for NaN/inf, plate names become ArviZ dims, and subsampled plates
        (``subsample_size=B``) enable :meth:`logdensity_estimate`. The trace puts each
        continuous latent site at a point of its support (the image of zeros under
        ``biject_to(support)``) rather than drawing it from the prior, so no sampler is
        compiled; a model that raises there is traced again with prior draws.

        Raises:
            DataError: an array argument holds NaN, inf or non-real values (strings,
                complex numbers, objects), or an observed site holds NaN or inf.
            ShapeError: data disagree with a plate's size or subsample size.
            ModelError: the model cannot be traced.

        Example:
            >>> import jax.numpy as jnp, numpyro, numpyro.distributions as dist
            >>> import bayescore as bc
            >>> def model(x, y=None):
            ...     w = numpyro.sample("w", dist.Normal(0, 1))
            ...     with numpyro.plate("data", x.shape[0]):
            ...         numpyro.sample("y", dist.Normal(w * x, 1.0), obs=y)
            >>> target = bc.Target.from_numpyro(model, jnp.arange(3.0), y=jnp.ones(3))
            >>> [site.name for site in target.latent], target.observed[0].dims
            (['w'], ('data',))
        """
        if not callable(model):
            raise ArgumentError(
                f"model must be a callable NumPyro model, got {type(model).__name__}. "
                "Pass the model function itself, not the result of calling it."
            )
        _check_finite_arguments(model, args, kwargs)
        args = jax.tree.map(_to_device, tuple(args))
        kwargs = jax.tree.map(_to_device, dict(kwargs))
        finder = _Plates(model)
        try:
            model_trace = _shape_trace(finder, args, kwargs)
        except Exception as error:  # the user's model raised while being traced
            raise _model_error(model, error) from error
        plates = tuple(finder.subsampled.values())
        for plate in plates:
            if plate.subsample_size > plate.size:
                raise ShapeError(
                    f"plate '{plate.name}' has subsample_size={plate.subsample_size} larger "
                    f"than its size {plate.size}. Use subsample_size <= {plate.size}."
                )
        if plates:
            # Trace once with a real minibatch too: a plate whose data were not subsampled, or
            # data shorter than the plate, fail here rather than inside a sampler.
            indices = _draw_subsample(plates, jax.random.key(0))
            try:
                batch_trace = _shape_trace(_Plates(model, indices), args, kwargs)
                _check_subsampled_observations(batch_trace, plates)
            except ShapeError:
                raise
            except Exception as error:
                names = ", ".join(
                    f"'{p.name}' (size {p.size}, subsample_size {p.subsample_size})" for p in plates
                )
                raise ShapeError(
                    f"the model fails when plate {names} draws a minibatch: {error}. Inside a "
                    "subsampled plate, index the data with the plate's indices "
                    "(`with numpyro.plate(...) as idx: y[idx]`) or numpyro.subsample(y, "
                    "event_dim=0), and make the plate's size equal len(data)."
                ) from error

        latent, observed, deterministic, coords = [], [], [], {}
        for name, site in model_trace.items():
            if site["type"] not in ("sample", "deterministic"):
                continue
            value = site["value"]
            dims = _site_dims(name, site, coords)
            if site["type"] == "deterministic":
                deterministic.append(Site(name, jnp.shape(value), dims))
            elif site["is_observed"]:
                _check_finite_observation(name, value)
                observed.append(Site(name, jnp.shape(value), dims))
            elif not site["infer"].get("is_auxiliary", False):
                support = site["fn"].support
                discrete = bool(getattr(support, "is_discrete", False))
                unconstrained = (
                    jnp.shape(value)
                    if discrete
                    else tuple(biject_to(support).inverse_shape(jnp.shape(value)))
                )
                latent.append(Site(name, jnp.shape(value), dims, unconstrained, discrete))
        example = {
            site.name: jax.ShapeDtypeStruct(site.unconstrained_shape, jnp.result_type(float))
            for site in latent
        }
        return cls(
            model_args=args,
            model_kwargs=kwargs,
            model=model,
            density_fn=None,
            latent=tuple(latent),
            observed=tuple(observed),
            deterministic=tuple(deterministic),
            subsample_plates=plates,
            coords=tuple((dim, tuple(values)) for dim, values in coords.items()),
            example_params=_HashablePytree(example),
        )

    @classmethod
    def from_logdensity(cls, fn: Callable[[Params], Array], example_params: Params) -> Target:
        """Wrap a log density ``fn(params) -> scalar`` over an unconstrained pytree.

        ``example_params`` fixes the pytree structure and shapes; its leaves name the posterior
        variables (dict keys, or ``x`` for a bare array). ``constrain`` is the identity.

        Example:
            >>> import jax.numpy as jnp
            >>> import bayescore as bc
            >>> target = bc.Target.from_logdensity(
            ...     lambda p: -0.5 * jnp.sum(p["x"] ** 2), {"x": jnp.zeros(3)})
            >>> float(target.logdensity({"x": jnp.ones(3)}))
            -1.5
        """
        if not callable(fn):
            raise ArgumentError(f"fn must be callable, got {type(fn).__name__}.")
        leaves = jax.tree.leaves(example_params)
        if not leaves:
            raise ArgumentError(
                "example_params must be a pytree with at least one array, got "
                f"{example_params!r}. Pass e.g. {{'x': jnp.zeros(d)}}."
            )
        for path, leaf in jax.tree_util.tree_flatten_with_path(example_params)[0]:
            dtype = getattr(leaf, "dtype", None)
            if dtype is None:
                dtype = np.asarray(leaf).dtype
            if np.dtype(dtype).kind not in "biuf":
                raise ArgumentError(
                    f"example_params{jax.tree_util.keystr(path)} must be a real number or an "
                    f"array of them, got {leaf!r} (dtype {dtype}). Pass e.g. jnp.zeros(d)."
                )
        example = jax.tree.map(
            lambda leaf: jax.ShapeDtypeStruct(jnp.shape(leaf), jnp.result_type(float)),
            example_params,
        )
        try:
            value = jax.eval_shape(fn, example)
        except Exception as error:
            raise ModelError(
                f"fn failed on example_params: {error}. It must take a pytree shaped like "
                "example_params and return a scalar."
            ) from error
        if jnp.shape(value) != ():
            raise ShapeError(
                f"fn must return a scalar log density, got shape {jnp.shape(value)}. "
                "Sum the terms of the log density."
            )
        latent = tuple(
            Site(
                name,
                shape.shape,
                tuple(f"{name}_dim_{i}" for i in range(len(shape.shape))),
                shape.shape,
            )
            for name, shape in named_leaves(example)
        )
        return cls(
            model_args=(),
            model_kwargs={},
            model=None,
            density_fn=fn,
            latent=latent,
            observed=(),
            deterministic=(),
            subsample_plates=(),
            coords=(),
            example_params=_HashablePytree(example),
        )

    # ------------------------------------------------------------------ densities

    @property
    def discrete_sites(self) -> tuple[str, ...]:
        """Names of latent sites whose support is discrete."""
        return tuple(site.name for site in self.latent if site.discrete)

    @property
    def num_data(self) -> int | None:
        """Size of the (first) subsampled data plate, ``None`` when there is none."""
        return self.subsample_plates[0].size if self.subsample_plates else None

    @property
    def batch_size(self) -> int | None:
        """Minibatch size of the (first) subsampled data plate, ``None`` when there is none."""
        return self.subsample_plates[0].subsample_size if self.subsample_plates else None

    @property
    def full_model(self) -> Callable | None:
        """The NumPyro model with every subsampled plate set to its full index range."""
        return None if self.model is None else _Plates(self.model)

    @property
    def dim(self) -> int:
        """Number of unconstrained scalar parameters."""
        return sum(math.prod(shape.shape) for shape in jax.tree.leaves(self.example_params.tree))

    def unravel(self) -> Callable[[Array], Params]:
        """The map from a flat vector of ``dim`` numbers to a parameter pytree.

        The order is ``jax.flatten_util.ravel_pytree``'s; flows and variational families live
        on this flat space.

        Example:
            >>> import jax.numpy as jnp
            >>> import bayescore as bc
            >>> target = bc.Target.from_logdensity(lambda p: 0.0, {"a": jnp.zeros(2), "b": 0.0})
            >>> target.unravel()(jnp.array([1.0, 2.0, 3.0]))["b"].item()
            3.0
        """
        example = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), self.example_params.tree)
        return ravel_pytree(example)[1]

    def logdensity(self, params: Params) -> Array:
        """Full-data log density at unconstrained ``params``, log-Jacobian included.

        Example:
            >>> import jax.numpy as jnp
            >>> import bayescore as bc
            >>> target = bc.Target.from_logdensity(lambda p: -p["x"] ** 2, {"x": 0.0})
            >>> float(target.logdensity({"x": 2.0}))
            -4.0
        """
        if self.density_fn is not None:
            return jnp.asarray(self.density_fn(params))
        return self._log_joint(_Plates(self.model), params)

    def logdensity_and_grad(self, params: Params) -> tuple[Array, Params]:
        """``(logdensity(params), ∇ logdensity(params))`` in one pass.

        Example:
            >>> import bayescore as bc
            >>> target = bc.Target.from_logdensity(lambda p: -p["x"] ** 2, {"x": 0.0})
            >>> value, grad = target.logdensity_and_grad({"x": 3.0})
            >>> float(value), float(grad["x"])
            (-9.0, -6.0)
        """
        return jax.value_and_grad(self.logdensity)(params)

    def logdensity_subsample(self, params: Params, indices: Mapping[str, Array]) -> Array:
        """Log density with each subsampled plate restricted to ``indices[plate_name]``.

        NumPyro's plate scales the likelihood by ``size / len(indices)``, so for indices drawn
        uniformly without replacement this is an unbiased estimate of :meth:`logdensity`.
        Use it when the caller draws the indices itself (e.g. epoch-wise permutations).

        On a data shard (see :meth:`on_data_shard`) the indices must be stratified by block,
        as :func:`~bayescore.core.data.target_batch` draws them with ``num_shards`` a multiple
        of the number of devices: each device evaluates its own part and the parts are summed.

        Example:
            >>> import jax, jax.numpy as jnp, numpyro, numpyro.distributions as dist
            >>> import bayescore as bc
            >>> def model(y):
            ...     mu = numpyro.sample("mu", dist.Normal(0, 1))
            ...     with numpyro.plate("data", len(y), subsample_size=2) as idx:
            ...         numpyro.sample("y", dist.Normal(mu, 1), obs=y[idx])
            >>> target = bc.Target.from_numpyro(model, jnp.arange(4.0))
            >>> value = target.logdensity_subsample({"mu": 0.0}, {"data": jnp.array([0, 3])})
            >>> bool(jnp.isfinite(value))
            True
        """
        if self.density_fn is not None or not self.subsample_plates:
            return self.logdensity(params)
        missing = [plate.name for plate in self.subsample_plates if plate.name not in indices]
        if missing:
            raise ArgumentError(
                f"indices has no entry for subsampled plate(s) {missing}. Pass a dict "
                "{plate_name: integer index array} with one entry per subsampled plate."
            )
        if self.data_axis is not None:
            indices = self._local_indices(indices)
        return self._log_joint(_Plates(self.model, dict(indices)), params)

    def logprior(self, params: Params) -> Array:
        """The log density without the observed sites: log prior plus log-Jacobian.

        ``logdensity(params) - logprior(params)`` is the log likelihood. Stochastic-gradient
        backends use the split to count the prior once when each device sums the likelihood
        of its own shard of the data. A Target built with :meth:`from_logdensity` has no
        observed sites: its log prior is 0 and the whole density counts as likelihood.

        Example:
            >>> import jax.numpy as jnp, numpyro, numpyro.distributions as dist
            >>> import bayescore as bc
            >>> def model(y):
            ...     mu = numpyro.sample("mu", dist.Normal(0, 1))
            ...     numpyro.sample("y", dist.Normal(mu, 1), obs=y)
            >>> target = bc.Target.from_numpyro(model, jnp.array(2.0))
            >>> round(float(target.logprior({"mu": 0.0})), 4)  # log N(0 | 0, 1)
            -0.9189
        """
        if self.density_fn is not None:
            return jnp.zeros(())
        observed = {site.name for site in self.observed}
        return self._log_joint_without(lambda site: site["name"] in observed, params)

    def _log_joint_without(self, hide: Callable[[dict], bool], params: Params) -> Array:
        """The full-data log density without the sites ``hide`` picks (NumPyro messages).

        The log-Jacobian terms are ``factor`` sites of the substitution (observed, named
        ``_{site}_log_det``), so the hiding goes by the model's own site names.
        """
        model = handlers.block(self.full_model, hide_fn=hide)
        return -numpyro_util.potential_energy(model, self.model_args, self.model_kwargs, params)

    def logdensity_estimate(self, params: Params, key: PRNGKeyArray) -> Array:
        """Unbiased minibatch estimate of :meth:`logdensity`, indices drawn from ``key``.

        Each subsampled plate draws ``subsample_size`` indices uniformly without replacement
        on the device; without subsampled plates this is the exact log density.

        Example:
            >>> import jax, jax.numpy as jnp, numpyro, numpyro.distributions as dist
            >>> import bayescore as bc
            >>> def model(y):
            ...     mu = numpyro.sample("mu", dist.Normal(0, 1))
            ...     with numpyro.plate("data", len(y), subsample_size=2):
            ...         numpyro.sample("y", dist.Normal(mu, 1), obs=numpyro.subsample(y, 0))
            >>> target = bc.Target.from_numpyro(model, jnp.arange(4.0))
            >>> estimate = target.logdensity_estimate({"mu": 0.0}, jax.random.key(1))
            >>> bool(jnp.isfinite(estimate))
            True
        """
        if not self.subsample_plates:
            return self.logdensity(params)
        return self.logdensity_subsample(params, self.subsample_indices(key))

    def subsample_indices(self, key: PRNGKeyArray) -> dict[str, Array]:
        """The minibatch indices :meth:`logdensity_estimate` uses for ``key``.

        Example:
            >>> import jax, jax.numpy as jnp
            >>> import bayescore as bc
            >>> target = bc.Target.from_logdensity(lambda p: -p["x"] ** 2, {"x": 0.0})
            >>> target.subsample_indices(jax.random.key(0))
            {}
        """
        if self.data_axis is not None:  # stratified, so that each device owns its share
            from bayescore.core.data import target_batch

            return target_batch(self, key, 0, self.data_devices)
        return _draw_subsample(self.subsample_plates, key)

    # ------------------------------------------------------------------ data parallelism

    def data_specs(self, axis: str) -> Any:
        """``PartitionSpec`` of every array leaf: split along ``axis`` if it is plate data.

        An argument of the model is data of a subsampled plate when its leading axis has the
        plate's size; such arguments are split into contiguous blocks, one per device, and
        everything else is replicated. The result has the structure of
        ``eqx.filter(target, eqx.is_array)``, for ``jax.shard_map``'s ``in_specs``.

        Example:
            >>> import jax.numpy as jnp, numpyro, numpyro.distributions as dist
            >>> import bayescore as bc
            >>> def model(y):
            ...     mu = numpyro.sample("mu", dist.Normal(0, 1))
            ...     with numpyro.plate("data", len(y), subsample_size=2) as idx:
            ...         numpyro.sample("y", dist.Normal(mu, 1), obs=y[idx])
            >>> target = bc.Target.from_numpyro(model, jnp.arange(4.0))
            >>> target.data_specs("data").model_args == (jax.sharding.PartitionSpec("data"),)
            True
        """
        sizes = {plate.size for plate in self.subsample_plates}

        def spec(leaf: Any) -> PartitionSpec:
            is_data = jnp.ndim(leaf) > 0 and leaf.shape[0] in sizes
            return PartitionSpec(axis) if is_data else PartitionSpec()

        return jax.tree.map(spec, eqx.filter(self, eqx.is_array))

    def on_data_shard(self, axis: str, num_devices: int) -> Target:
        """This Target as seen inside ``shard_map`` by a device holding one block of the data.

        Its densities evaluate the local block's likelihood, sum it over ``axis`` with
        ``psum`` and add the prior once, so they equal the single-device densities; their
        gradients (under ``shard_map``'s replication checking) are the full gradients.
        The model must take each plate's size from its data (``numpyro.plate(name,
        len(y), ...)``): a size fixed in the model raises :class:`ArgumentError` here.

        Example:
            >>> import jax.numpy as jnp, numpyro, numpyro.distributions as dist
            >>> import bayescore as bc
            >>> def model(y):
            ...     mu = numpyro.sample("mu", dist.Normal(0, 1))
            ...     with numpyro.plate("data", len(y), subsample_size=2) as idx:
            ...         numpyro.sample("y", dist.Normal(mu, 1), obs=y[idx])
            >>> target = bc.Target.from_numpyro(model, jnp.arange(4.0))
            >>> target.on_data_shard("data", 2).data_devices
            2
        """
        if not self.subsample_plates:
            raise ArgumentError(
                "a data-parallel run needs a subsampled plate to split the data along: declare "
                "numpyro.plate(name, len(y), subsample_size=B) in the model."
            )
        for plate in self.subsample_plates:
            if plate.size % num_devices:
                raise ArgumentError(
                    f"plate {plate.name!r} has {plate.size} entries, which do not split evenly "
                    f"over {num_devices} devices. Pad or trim the data to a multiple of "
                    f"{num_devices}."
                )
        return dataclasses.replace(self, data_axis=axis, data_devices=int(num_devices))

    def _local_indices(self, indices: Mapping[str, Array]) -> dict[str, Array]:
        """This device's share of stratified global ``indices``, as rows of its block."""
        device = jax.lax.axis_index(self.data_axis)
        local = {}
        for plate in self.subsample_plates:
            index = jnp.asarray(indices[plate.name])
            if index.shape[0] % self.data_devices:
                raise ArgumentError(
                    f"{index.shape[0]} indices of plate {plate.name!r} do not split evenly over "
                    f"{self.data_devices} devices. Draw them with "
                    "bayescore.core.data.target_batch(target, key, step, num_shards) and "
                    "num_shards a multiple of the number of devices."
                )
            share = index.shape[0] // self.data_devices
            mine = jax.lax.dynamic_slice_in_dim(index, device * share, share)
            local[plate.name] = mine - device * (plate.size // self.data_devices)
        return local

    def _log_joint(self, plates: _Plates, params: Params) -> Array:
        """The log density of the model under ``plates`` (summed over data shards if any)."""
        joint = -numpyro_util.potential_energy(plates, self.model_args, self.model_kwargs, params)
        if self.data_axis is None:
            return joint
        for plate in self.subsample_plates:
            seen = plates.sizes.get(plate.name)
            if seen is not None and seen != plate.size // self.data_devices:
                raise ArgumentError(
                    f"plate {plate.name!r} has size {seen} on a device holding "
                    f"{plate.size // self.data_devices} of its {plate.size} entries: the model "
                    "fixes the plate's size. For data-parallel runs write "
                    f"numpyro.plate({plate.name!r}, len(data), ...) so the size follows the "
                    "data, and keep the data's plate axis first."
                )
        # Terms outside every subsampled plate (prior, log-Jacobian, global observations)
        # are the same on every device: counted once; the plates' terms are summed.
        names = {plate.name for plate in self.subsample_plates}
        shared = self._log_joint_without(
            lambda site: any(frame.name in names for frame in site["cond_indep_stack"]), params
        )
        return shared + jax.lax.psum(joint - shared, self.data_axis)

    # ------------------------------------------------------------------ spaces

    def constrain(self, params: Params) -> dict[str, Array]:
        """Map unconstrained ``params`` (one draw) to constrained site values.

        For NumPyro models the result also holds the model's deterministic sites.

        Example:
            >>> import jax.numpy as jnp, numpyro, numpyro.distributions as dist
            >>> import bayescore as bc
            >>> def model():
            ...     numpyro.sample("scale", dist.HalfNormal(1.0))
            >>> target = bc.Target.from_numpyro(model)
            >>> float(target.constrain({"scale": jnp.log(2.0)})["scale"])
            2.0
        """
        if self.density_fn is not None:
            return dict(named_leaves(params))
        return numpyro_util.constrain_fn(
            self.full_model, self.model_args, self.model_kwargs, params, return_deterministic=True
        )

    def unconstrain(self, values: Mapping[str, Any]) -> Params:
        """Map constrained latent values (one draw) to the unconstrained space.

        Raises:
            ShapeError: a site is missing or has the wrong shape.

        Example:
            >>> import jax.numpy as jnp, numpyro, numpyro.distributions as dist
            >>> import bayescore as bc
            >>> def model():
            ...     numpyro.sample("scale", dist.HalfNormal(1.0))
            >>> target = bc.Target.from_numpyro(model)
            >>> round(float(target.unconstrain({"scale": 1.0})["scale"]), 6)
            0.0
        """
        if self.density_fn is not None:
            return jax.tree.map(jnp.asarray, values)
        self._check_values(values, batch_ndim=0)
        latent = {site.name: values[site.name] for site in self.latent}
        return numpyro_util.unconstrain_fn(
            self.full_model, self.model_args, self.model_kwargs, latent
        )

    def init(
        self, key: PRNGKeyArray, num_chains: int, *, radius: float = 2.0, max_tries: int = 100
    ) -> Params:
        """Starting points for ``num_chains`` chains, uniform in ``[-radius, radius]``.

        Each chain redraws until its log density and gradient are finite (NumPyro's
        ``init_to_uniform``); after ``max_tries`` failures the error names the sites whose
        log density is not finite.

        Returns:
            A pytree shaped like one draw with a leading ``num_chains`` axis.

        Raises:
            InitializationError: some chain found no finite starting point.

        Example:
            >>> import jax, jax.numpy as jnp
            >>> import bayescore as bc
            >>> target = bc.Target.from_logdensity(
            ...     lambda p: -0.5 * jnp.sum(p["x"] ** 2), {"x": jnp.zeros(3)})
            >>> target.init(jax.random.key(0), num_chains=4)["x"].shape
            (4, 3)
        """
        num_chains = check_positive_int("num_chains", num_chains)
        check_positive_int("max_tries", max_tries)
        self.require_continuous("initialisation")
        positions, finite = _init_chains(self, key, num_chains, float(radius), max_tries)
        if not bool(np.all(np.asarray(finite))):
            bad_chain = int(np.argmin(np.asarray(finite)))
            bad = jax.tree.map(lambda leaf: leaf[bad_chain], positions)
            raise InitializationError(
                f"no finite starting point found for chain {bad_chain} after {max_tries} tries "
                f"in [-{radius}, {radius}] (unconstrained). {self.explain_nonfinite(bad)} "
                "Check the priors' parameters and the data, or pass init_params explicitly."
            )
        return positions

    def require_continuous(self, what: str) -> None:
        """Raise :class:`DiscreteLatentError` if the model has discrete latent sites.

        Example:
            >>> import bayescore as bc
            >>> bc.Target.from_logdensity(lambda p: -p["x"] ** 2, {"x": 0.0}).require_continuous(
            ...     "NUTS")
        """
        if self.discrete_sites:
            raise DiscreteLatentError(
                f"{what} needs gradients, but latent site(s) {list(self.discrete_sites)} are "
                "discrete. Marginalise them out in the model (sum over their values with "
                "logsumexp, or observe them), or use a backend for discrete programs "
                "(bayescore.inference.programs)."
            )

    def explain_nonfinite(self, params: Params) -> str:
        """A sentence naming the sites whose log density is not finite at ``params``.

        Example:
            >>> import jax.numpy as jnp
            >>> import bayescore as bc
            >>> target = bc.Target.from_logdensity(lambda p: jnp.log(p["x"]), {"x": 1.0})
            >>> target.explain_nonfinite({"x": -1.0})
            'The log density is nan at this point.'
        """
        if self.density_fn is not None:
            value = self.logdensity(params)
            return f"The log density is {float(value)} at this point."
        try:
            constrained = self.constrain(params)
            model = handlers.substitute(self.full_model, data=constrained)
            model_trace = handlers.trace(handlers.seed(model, 0)).get_trace(
                *self.model_args, **self.model_kwargs
            )
        except Exception as error:
            return f"The model raised {error!r} at this point."
        bad = []
        for name, site in model_trace.items():
            if site["type"] != "sample":
                continue
            with warnings.catch_warnings():  # out-of-support values are what we look for
                warnings.simplefilter("ignore")
                log_prob = jnp.sum(site["fn"].log_prob(site["value"]))
            if not bool(jnp.isfinite(log_prob)):
                bad.append(f"'{name}' (log prob {float(log_prob)})")
        if bad:
            return f"Non-finite log density at site(s) {', '.join(bad)}."
        return "Every site's log density is finite; the gradient or the Jacobian is not."

    # ------------------------------------------------------------------ ArviZ metadata

    def site_dims(self) -> dict[str, list[str]]:
        """ArviZ ``dims``: for every site, one name per axis (plate names where they apply).

        Example:
            >>> import bayescore as bc, jax.numpy as jnp
            >>> bc.Target.from_logdensity(lambda p: 0.0, {"x": jnp.zeros(2)}).site_dims()
            {'x': ['x_dim_0']}
        """
        return {
            site.name: list(site.dims)
            for site in (*self.latent, *self.deterministic, *self.observed)
        }

    def site_coords(self) -> dict[str, list]:
        """ArviZ ``coords`` for plate dims (``0..size-1``).

        Example:
            >>> import bayescore as bc
            >>> bc.Target.from_logdensity(lambda p: 0.0, {"x": 0.0}).site_coords()
            {}
        """
        return {dim: list(values) for dim, values in self.coords}

    def observed_data(self) -> dict[str, np.ndarray]:
        """Observed values of every observed site (full data, not a minibatch).

        Example:
            >>> import jax.numpy as jnp, numpyro, numpyro.distributions as dist
            >>> import bayescore as bc
            >>> def model(y):
            ...     numpyro.sample("y", dist.Normal(0, 1), obs=y)
            >>> bc.Target.from_numpyro(model, jnp.array([1.0, 2.0])).observed_data()["y"]
            array([1., 2.], dtype=float32)
        """
        if not self.observed:
            return {}
        model_trace = _shape_trace(self.full_model, self.model_args, self.model_kwargs)
        return {site.name: np.asarray(model_trace[site.name]["value"]) for site in self.observed}

    def pointwise_log_likelihood(
        self, samples: Mapping[str, Array], batch_ndims: int = 2
    ) -> dict[str, Array]:
        """Log likelihood of every observation under each constrained draw in ``samples``.

        ``samples`` holds constrained latent values with ``batch_ndims`` leading axes (chain,
        draw). Uses NumPyro's ``log_likelihood`` on the full data.

        Example:
            >>> import jax.numpy as jnp, numpyro, numpyro.distributions as dist
            >>> import bayescore as bc
            >>> def model(y):
            ...     mu = numpyro.sample("mu", dist.Normal(0, 1))
            ...     numpyro.sample("y", dist.Normal(mu, 1), obs=y)
            >>> target = bc.Target.from_numpyro(model, jnp.zeros(3))
            >>> target.pointwise_log_likelihood({"mu": jnp.zeros((2, 5))})["y"].shape
            (2, 5, 3)
        """
        if not self.observed:
            return {}
        latent = {site.name: samples[site.name] for site in self.latent}
        return numpyro_util.log_likelihood(
            self.full_model, latent, *self.model_args, batch_ndims=batch_ndims, **self.model_kwargs
        )

    def _check_values(self, values: Mapping[str, Any], batch_ndim: int) -> None:
        if not isinstance(values, Mapping):
            raise ArgumentError(
                f"expected a dict of site values, got {type(values).__name__}. "
                f"Pass {{{', '.join(repr(s.name) for s in self.latent)}}}."
            )
        for site in self.latent:
            if site.name not in values:
                raise ShapeError(
                    f"no value given for latent site '{site.name}'. Pass a value of shape "
                    f"{site.shape} for each of {[s.name for s in self.latent]}."
                )
            shape = jnp.shape(values[site.name])[batch_ndim:]
            if shape != site.shape:
                raise ShapeError(
                    f"site '{site.name}' expects values of shape {site.shape} per draw, got "
                    f"{shape}."
                )


# ---------------------------------------------------------------------- helpers


class _HashablePytree:
    """A pytree of ShapeDtypeStructs that can live in a static field (hash by structure)."""

    def __init__(self, tree: Any) -> None:
        self.tree = tree
        leaves, self._treedef = jax.tree.flatten(tree)
        self._key = (self._treedef, tuple((leaf.shape, str(leaf.dtype)) for leaf in leaves))

    def __hash__(self) -> int:
        return hash(self._key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _HashablePytree) and self._key == other._key

    def __repr__(self) -> str:
        return f"ExampleParams({self.tree})"


def _to_device(leaf: Any) -> Any:
    return jnp.asarray(leaf) if isinstance(leaf, np.ndarray) else leaf


class _Plates(Messenger):
    """Fix the indices of every subsampled plate: ``indices[name]`` when given, else all; give
    observed sites their fused likelihood (:mod:`bayescore.core.likelihoods`).

    Setting the plate's ``subsample_size`` argument to the number of indices keeps NumPyro's
    ``N / B`` likelihood scale right and silences its size-mismatch warning.
    """

    def __init__(self, fn: Callable, indices: Mapping[str, Array] | None = None) -> None:
        self.indices = dict(indices or {})
        self.subsampled: dict[str, SubsamplePlate] = {}
        self.sizes: dict[str, int] = {}  # every plate's size, as the model gave it
        super().__init__(fn)

    def process_message(self, msg: dict) -> None:
        if msg["type"] == "sample" and msg["is_observed"]:
            msg["fn"] = fused(msg["fn"])  # a fused derivative rule where one exists
            return
        if msg["type"] != "plate":
            return
        size, subsample_size = msg["args"]
        self.sizes[msg["name"]] = int(size)
        if subsample_size is None or subsample_size == size:
            return
        self.subsampled[msg["name"]] = SubsamplePlate(msg["name"], int(size), int(subsample_size))
        value = self.indices.get(msg["name"])
        value = jnp.arange(size) if value is None else jnp.asarray(value)
        msg["value"] = value
        msg["args"] = (size, value.shape[0])


class _SupportPoints(Messenger):
    """Give each continuous latent site a point of its support instead of a prior draw: the
    image of zeros under ``biject_to(support)`` (the centre of the range ``Target.init``
    draws its unconstrained starting points from). Tracing a model for its sites' shapes and
    its data then runs no sampler (a Gamma, Beta or Dirichlet draw compiles a rejection
    sampler: seconds on CPU, once per shape).
    Discrete sites, and supports without a bijection, are drawn as before.
    """

    def process_message(self, msg: dict) -> None:
        if msg["type"] != "sample" or msg["is_observed"] or msg["value"] is not None:
            return
        support = msg["fn"].support
        if getattr(support, "is_discrete", False):
            return
        try:
            transform = biject_to(support)
            shape = msg["fn"].shape(msg["kwargs"].get("sample_shape", ()))
            msg["value"] = transform(jnp.zeros(transform.inverse_shape(shape)))
        except Exception:  # no bijection for this support (dependent, say): drawn instead
            return


def _shape_trace(model: Callable, args: tuple, kwargs: dict) -> Any:
    """The trace of ``model(*args, **kwargs)`` with latent sites at points of their supports
    (:class:`_SupportPoints`), for the sites' shapes, plates and observed values; a model that
    raises at those points is traced again with prior draws, as NumPyro would run it."""
    try:
        return handlers.trace(handlers.seed(_SupportPoints(model), 0)).get_trace(*args, **kwargs)
    except Exception:
        return handlers.trace(handlers.seed(model, 0)).get_trace(*args, **kwargs)


def _draw_subsample(plates: tuple[SubsamplePlate, ...], key: PRNGKeyArray) -> dict[str, Array]:
    indices = {}
    for plate in plates:
        plate_key = jax.random.fold_in(key, zlib.crc32(plate.name.encode()) & 0x7FFFFFFF)
        indices[plate.name] = jax.random.choice(
            plate_key, plate.size, (plate.subsample_size,), replace=False
        )
    return indices


def named_leaves(tree: Any) -> list[tuple[str, Any]]:
    if isinstance(tree, Mapping) and all(isinstance(k, str) for k in tree):
        flat = []
        for name, value in tree.items():
            sub = named_leaves(value)
            flat += [
                (name if sub_name == "x" else f"{name}.{sub_name}", leaf) for sub_name, leaf in sub
            ]
        return flat
    paths = jax.tree_util.tree_flatten_with_path(tree)[0]
    if len(paths) == 1 and not paths[0][0]:
        return [("x", paths[0][1])]
    return [(jax.tree_util.keystr(path, simple=True, separator="."), leaf) for path, leaf in paths]


def _site_dims(name: str, site: dict, coords: dict[str, tuple]) -> tuple[str, ...]:
    shape = jnp.shape(site["value"])
    event_dim = site["fn"].event_dim if site["type"] == "sample" else 0
    batch_ndim = len(shape) - event_dim
    dims = [f"{name}_dim_{i}" for i in range(len(shape))]
    for frame in site["cond_indep_stack"]:
        axis = batch_ndim + frame.dim
        if 0 <= axis < batch_ndim and shape[axis] == frame.size:
            dims[axis] = frame.name
            coords.setdefault(frame.name, tuple(range(frame.size)))
    return tuple(dims)


def _argument_names(model: Callable, args: tuple, kwargs: dict) -> dict[str, Any]:
    try:
        bound = inspect.signature(model).bind_partial(*args, **kwargs)
        return dict(bound.arguments)
    except (TypeError, ValueError):
        named = {f"argument {i}": arg for i, arg in enumerate(args)}
        named.update(kwargs)
        return named


def _check_finite_arguments(model: Callable, args: tuple, kwargs: dict) -> None:
    for name, value in _argument_names(model, args, kwargs).items():
        for path, leaf in jax.tree_util.tree_flatten_with_path(value)[0]:
            if not isinstance(leaf, (jax.Array, np.ndarray, float)) or (
                isinstance(leaf, jax.Array)
                and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key)
            ):
                continue
            array = np.asarray(leaf)
            where = name + jax.tree_util.keystr(path)
            if array.dtype.kind not in "biuf":
                raise DataError(
                    f"model argument `{where}` has dtype {array.dtype}; a model's data must be "
                    "real numbers (bool, int or float). Convert it with np.asarray(..., float), "
                    "or split complex data into real and imaginary parts."
                )
            if array.dtype.kind != "f" or np.all(np.isfinite(array)):
                continue
            bad = np.argwhere(~np.isfinite(array))
            raise DataError(
                f"model argument `{where}` has {len(bad)} NaN/inf value(s) (first at index "
                f"{tuple(int(i) for i in bad[0])}). Drop or impute those entries before "
                "building the Target; to model missing observations use obs_mask in "
                "numpyro.sample."
            )


def _check_subsampled_observations(batch_trace: dict, plates: tuple[SubsamplePlate, ...]) -> None:
    sizes = {plate.name: plate.subsample_size for plate in plates}
    for name, site in batch_trace.items():
        if site["type"] != "sample" or not site["is_observed"]:
            continue
        shape = jnp.shape(site["value"])
        batch_ndim = len(shape) - site["fn"].event_dim
        for frame in site["cond_indep_stack"]:
            axis = batch_ndim + frame.dim
            if (
                frame.name in sizes
                and 0 <= axis < batch_ndim
                and shape[axis] not in (1, sizes[frame.name])
            ):
                raise ShapeError(
                    f"observed site '{name}' has length {shape[axis]} along subsampled plate "
                    f"'{frame.name}', whose minibatch has {sizes[frame.name]} entries: its data "
                    "were not subsampled. Index them with the plate's indices (`with "
                    "numpyro.plate(...) as idx: ... obs=y[idx]`) or use "
                    "numpyro.subsample(y, event_dim=0)."
                )


def _check_finite_observation(name: str, value: Any) -> None:
    array = np.asarray(value)
    if array.dtype.kind in "fc" and not np.all(np.isfinite(array)):
        bad = np.argwhere(~np.isfinite(array))
        raise DataError(
            f"observed site '{name}' has {len(bad)} NaN/inf value(s) (first at index "
            f"{tuple(int(i) for i in bad[0])}). Drop those observations, or pass "
            "obs_mask=jnp.isfinite(y) to numpyro.sample to treat them as missing."
        )


def _model_error(model: Callable, error: Exception) -> ModelError | ShapeError:
    name = getattr(model, "__name__", repr(model))
    message = str(error)
    if isinstance(error, (ValueError, TypeError)) and (
        "shape" in message.lower() or "plate" in message
    ):
        return ShapeError(
            f"model '{name}': the data's shapes disagree with the model's plates or "
            f"distributions ({type(error).__name__}: {message}). Make each plate's size equal "
            "the length of the data along that plate's dim, and subsample data inside "
            "subsampled plates."
        )
    return ModelError(
        f"tracing model '{name}' failed with {type(error).__name__}: {message}. Check the "
        "arguments passed to Target.from_numpyro match the model's signature."
    )


@eqx.filter_jit
def _init_chains(
    target: Target, key: PRNGKeyArray, num_chains: int, radius: float, max_tries: int
) -> tuple[Params, Array]:
    example = target.example_params.tree

    def draw(draw_key: PRNGKeyArray) -> Params:
        leaves, treedef = jax.tree.flatten(example)
        keys = jax.random.split(draw_key, len(leaves))
        return jax.tree.unflatten(
            treedef,
            [
                jax.random.uniform(k, leaf.shape, leaf.dtype, -radius, radius)
                for k, leaf in zip(keys, leaves, strict=True)
            ],
        )

    def is_finite(params: Params) -> Array:
        value, grad = target.logdensity_and_grad(params)
        grad_finite = jnp.all(
            jnp.asarray([jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(grad)])
        )
        return jnp.isfinite(value) & grad_finite

    def one_chain(chain_key: PRNGKeyArray) -> tuple[Params, Array]:
        def cond(carry):
            tries, _, finite = carry
            return (~finite) & (tries < max_tries)

        def body(carry):
            tries, _, _ = carry
            params = draw(jax.random.fold_in(chain_key, tries))
            return tries + 1, params, is_finite(params)

        first = draw(jax.random.fold_in(chain_key, 0))
        _, params, finite = jax.lax.while_loop(cond, body, (1, first, is_finite(first)))
        return params, finite

    return jax.vmap(one_chain)(jax.random.split(key, num_chains))
