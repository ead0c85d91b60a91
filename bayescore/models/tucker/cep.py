r"""Conditional expectation propagation for the functional Tucker / CP model, one compiled epoch.

Fang et al. (2024), "Functional Bayesian Tucker Decomposition for Continuous-indexed Tensor
Data", ICLR, §4 (conditional EP: Wang & Zhe 2019, "Conditional Expectation Propagation",
UAI). The approximate posterior is :math:`q(W)\,q(\tau)\prod_k q(U^k)` with Gaussian
:math:`q(W)`, Gamma :math:`q(\tau)` and, per mode, a state-space GP posterior on the
mode's sorted unique index values. One epoch (:func:`cep_epoch`) does, for each mode
:math:`k` in turn:

1. **Messages.** Each entry :math:`n` sends :math:`U^k(i^n_k)` the Gaussian message with
   :math:`\Lambda_n = \mathbb E[\tau]\,\mathbb E[a_n a_n^\top]`,
   :math:`\eta_n = \mathbb E[\tau]\,y_n\,\mathbb E[a_n]`, where
   :math:`a_n = W_{(k)}\bigotimes_{j\ne k} U^j(i^n_j)` and the expectations are under the
   current :math:`q` of the other factors: :math:`\mathbb E[a a^\top]_{ab} = \sum_{ij}
   \mathbb E[W_{ai}W_{bj}]\,\big(\bigotimes_{j\ne k}\mathbb E[U^jU^{j\top}]\big)_{ij}` (the
   second moment of a Kronecker product of independent factors is the Kronecker product of
   their second moments). Messages of entries sharing an index value are summed *before*
   the contraction with :math:`\mathbb E[W\otimes W]`
   (:func:`~bayescore.models.tucker.moments.segment_kron_sum`, chunked), so the cost is
   :math:`O(N R^{2(K-1)} + N_k R^{2K})` and nothing of size :math:`N R^{2K}` is formed.
   For CP, :math:`W` is the all-ones super-diagonal and :math:`a_n = \bigodot_{j\ne k}
   U^j(i^n_j)`.
2. **Damping** (per index value, which equals per-entry damping since messages add):
   :math:`(\Lambda, \eta) \leftarrow \rho(\Lambda, \eta)_{\text{old}} + (1-\rho)(\Lambda,
   \eta)_{\text{new}}`.
3. **Hyperparameters** (optional): a few Adam steps on the kernel's unconstrained
   parameters (GPJax's softplus parametrisation of lengthscale and variance), maximising
   :math:`\log\int p_\theta(U^k)\prod_s t_s(U^k_s)\,\mathrm dU^k`, the state-space evidence
   of the mode's sites. With the sites fixed this is the :math:`\theta`-dependent part of
   the EP approximation to :math:`\log p(y\mid\theta)`, whose gradient at an EP fixed point
   is the exact gradient of the EP evidence (Rasmussen & Williams 2006, §3.6.3; Seeger
   2005) — type-II maximum likelihood under the EP approximation.
4. **Smoothing.** The summed messages are the sites of a Kalman filter/RTS smoother over
   the mode's grid (:mod:`bayescore.models.statespace`); :math:`q(U^k)` at each index
   value is the smoothed marginal.

Then the **core** (Tucker): :math:`q(W) = N(\mu_W, \Sigma_W)` with
:math:`\Sigma_W^{-1} = \mathbb E[\tau]\sum_n\mathbb E[z_nz_n^\top] + I/s^2`,
:math:`\mu_W = \Sigma_W\,\mathbb E[\tau]\sum_n y_n\mathbb E[z_n]`,
:math:`z_n = \bigotimes_k U^k(i^n_k)`; :math:`\sum_n \mathbb E[zz^\top] = \sum_s
\mathbb E[U^1U^{1\top}](s)\otimes\sum_{n: i^n_1 = s}\bigotimes_{k>1}\mathbb E[U^kU^{k\top}]`.
And the **noise**: :math:`q(\tau) = \mathrm{Gamma}(a_0 + N/2,\ b_0 + \frac12\sum_n
\mathbb E[(y_n - f_n)^2])`, :math:`\sum_n\mathbb E f_n^2 = \operatorname{tr}(\sum_n
\mathbb E[zz^\top]\,\mathbb E[ww^\top])`. Both damped like the function messages.

Differences from the reference code (xuangu-fang/Functional-Bayesian-Tucker-Decomposition):
the core has the prior :math:`N(0, s^2I)` (the reference has none); the expectations over
:math:`W` include :math:`\Sigma_W` (the reference uses :math:`\mathbb E[W]` only); the
pseudo-observation is not given an extra :math:`I/v` prior on top of the GP prior; the
Kalman filter takes the summed messages in natural form (no ``pinv``); kernel
hyperparameters can be learned (the reference fixes them).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
import optax
import paramax
from jaxtyping import Array, Float, Int

from bayescore.core.optimise import guarded_update
from bayescore.models.statespace.posterior import (
    StateSpacePosterior,
    log_marginal_likelihood,
    marginals,
    smooth,
)
from bayescore.models.statespace.sde import state_space
from bayescore.models.statespace.sites import natural_sites
from bayescore.models.tucker.moments import aggregate_first, segment_kron_sum


class CEPConfig(NamedTuple):
    """Static settings of the solver (hashable; one compiled epoch per distinct value)."""

    ranks: tuple[int, ...]
    cp: bool
    learn_hyperparameters: bool
    hyperparameter_steps: int
    learn_noise: bool
    update_functions: bool
    parallel: bool
    chunk_size: int | None


class CEPSettings(NamedTuple):
    """Numeric settings of the solver (traced: changing them does not recompile)."""

    damping_functions: Array
    damping_core: Array
    damping_noise: Array
    core_prior_precision: Array  # 1 / s²
    noise_shape: Array  # a0
    noise_rate: Array  # b0
    hyperparameter_learning_rate: Array


class TuckerData(NamedTuple):
    """The training entries, with each entry's position on every mode's unique grid."""

    y: Float[Array, " entry"]
    positions: tuple[Int[Array, " entry"], ...]
    grids: tuple[Float[Array, " value"], ...]


class CEPState(NamedTuple):
    """Everything an epoch updates.

    Attributes:
        kernels: per-mode GPJax kernels (learned leaves).
        optimizer_states: per-mode Adam states of the kernel parameters.
        site_precisions, site_shifts: damped summed messages per mode and index value,
            ``(N_k, r_k, r_k)`` and ``(N_k, r_k)``.
        means, covariances: :math:`q(U^k)` at each mode's index values.
        core_message_precision, core_message_shift: damped core messages.
        core_mean, core_covariance: :math:`q(W)` (CP: ones and zeros).
        noise_message: damped ``(shape, rate)`` message of :math:`\\tau`.
        noise_shape, noise_rate: :math:`q(\\tau)`.
        fitted: predictive means at the training entries.
    """

    kernels: tuple[Any, ...]
    optimizer_states: tuple[Any, ...]
    site_precisions: tuple[Array, ...]
    site_shifts: tuple[Array, ...]
    means: tuple[Array, ...]
    covariances: tuple[Array, ...]
    core_message_precision: Array
    core_message_shift: Array
    core_mean: Array
    core_covariance: Array
    noise_message: Array
    noise_shape: Array
    noise_rate: Array
    fitted: Array


class EpochInfo(NamedTuple):
    """Per-epoch diagnostics (the fit's history)."""

    train_rmse: Array
    change: Array  # relative change of the training predictive means
    log_evidence: Array  # sum over modes of the state-space evidence of their sites
    noise_precision: Array


def partition_kernel(kernel: Any) -> tuple[Any, Any]:
    """Split a GPJax kernel into trainable arrays and the rest (``paramax.NonTrainable`` kept)."""
    return eqx.partition(
        kernel, eqx.is_inexact_array, is_leaf=lambda leaf: isinstance(leaf, paramax.NonTrainable)
    )


def optimizer_for(learning_rate: Array | float) -> optax.GradientTransformation:
    """Adam for the kernel hyperparameters."""
    return optax.adam(learning_rate)


def _outer(means: Array, covariances: Array) -> Array:
    return covariances + means[..., :, None] * means[..., None, :]


def _core_tensors(config: CEPConfig, state: CEPState, mode: int) -> tuple[Array, Array]:
    """:math:`\\mathbb E[W_{(k)}]` ``(r_k, P')`` and :math:`\\mathbb E[W_{(k)}\\otimes W_{(k)}]`."""
    ranks, num_modes = config.ranks, len(config.ranks)
    rest = state.core_mean.size // ranks[mode]
    mean = jnp.moveaxis(state.core_mean.reshape(ranks), mode, 0).reshape(ranks[mode], rest)
    covariance = state.core_covariance.reshape(ranks + ranks)
    covariance = jnp.moveaxis(covariance, (mode, num_modes + mode), (0, num_modes))
    covariance = covariance.reshape(ranks[mode], rest, ranks[mode], rest)
    second = mean[:, :, None, None] * mean[None, None] + covariance
    return mean, second


def function_messages(
    config: CEPConfig,
    state: CEPState,
    data: TuckerData,
    mode: int,
    entry_means: Sequence[Array],
    entry_seconds: Sequence[Array],
) -> tuple[Array, Array]:
    """Summed messages :math:`(\\sum\\Lambda_n, \\sum\\eta_n)` per index value of ``mode``."""
    others = [j for j in range(len(config.ranks)) if j != mode]
    num_values = data.grids[mode].shape[0]
    dtype = data.y.dtype
    num_entries = data.y.shape[0]
    means = [entry_means[j] for j in others]
    seconds = [entry_seconds[j] for j in others]
    if not others:  # one mode: a_n = W (Tucker) or the ones vector (CP)
        width = config.ranks[mode] if config.cp else 1
        means = [jnp.ones((num_entries, width), dtype)]
        seconds = [jnp.ones((num_entries, width, width), dtype)]
    ids = data.positions[mode]
    precision_tau = state.noise_shape / state.noise_rate
    common = dict(hadamard=config.cp, chunk_size=config.chunk_size)
    if config.cp:
        summed_seconds = segment_kron_sum(seconds, ids, num_values, **common)
        summed_means = segment_kron_sum(means, ids, num_values, weights=data.y, **common)
        return precision_tau * summed_seconds, precision_tau * summed_means
    core_mean, core_second = _core_tensors(config, state, mode)
    rest = core_mean.shape[1]
    if aggregate_first(num_values, rest * rest, num_entries, state.core_mean.size):
        summed_seconds = segment_kron_sum(seconds, ids, num_values, symmetric=True, **common)
        precision = jnp.einsum("aibj,sij->sab", core_second, summed_seconds)
    else:  # many index values: contract each chunk with E[W ⊗ W] before summing
        contract = lambda products: jnp.einsum("aibj,nij->nab", core_second, products)  # noqa: E731
        precision = segment_kron_sum(
            seconds, ids, num_values, transform=contract, symmetric=True, **common
        )
    summed_means = segment_kron_sum(means, ids, num_values, weights=data.y, **common)
    shift = summed_means @ core_mean.T
    return precision_tau * precision, precision_tau * shift


def learn_kernel(
    config: CEPConfig,
    settings: CEPSettings,
    kernel: Any,
    optimizer_state: Any,
    grid: Array,
    sites: Any,
    rank: int,
) -> tuple[Any, Any, Array]:
    """A few Adam steps on the negative state-space evidence per index value of the sites."""
    params, static = partition_kernel(kernel)
    optimizer = optimizer_for(settings.hyperparameter_learning_rate)

    def loss(params):
        sde = state_space(eqx.combine(params, static), rank, dtype=grid.dtype)
        evidence = log_marginal_likelihood(sde, grid, sites, parallel=config.parallel)
        return -evidence / grid.shape[0]

    def step(carry, _):
        params, optimizer_state = carry
        value, grads = jax.value_and_grad(loss)(params)
        return guarded_update(optimizer, params, optimizer_state, value, grads), value

    (params, optimizer_state), values = jax.lax.scan(
        step, (params, optimizer_state), None, length=config.hyperparameter_steps
    )
    return eqx.combine(params, static), optimizer_state, values


def tucker_fitted(core_mean: Array, ranks: tuple[int, ...], entry_means: Sequence[Array]) -> Array:
    """:math:`\\mathbb E[f_n] = \\mu_W^\\top \\bigotimes_k \\mathbb E[U^k(i^n_k)]` per entry."""

    def one(*vectors):
        tensor = core_mean.reshape(ranks)
        for vector in vectors:
            tensor = jnp.tensordot(vector, tensor, axes=([0], [0]))
        return tensor

    return jax.vmap(one)(*entry_means)


def cp_fitted(entry_means: Sequence[Array]) -> Array:
    """:math:`\\mathbb E[f_n] = \\sum_r \\prod_k \\mathbb E[U^k_r(i^n_k)]` per entry."""
    product = entry_means[0]
    for means in entry_means[1:]:
        product = product * means
    return product.sum(-1)


def _damp(rate: float, old: Array, new: Array) -> Array:
    return rate * old + (1.0 - rate) * new


def cep_epoch(
    config: CEPConfig, settings: CEPSettings, state: CEPState, data: TuckerData
) -> tuple[CEPState, EpochInfo, tuple[StateSpacePosterior, ...]]:
    """One sweep of conditional EP over the modes, then the core and the noise.

    See the module docstring. Pure and jit-able (``config`` static); modes are unrolled in
    Python (``K`` is small), index values and entries are vectorised. Also returns each
    mode's state-space posterior (none when the functions are fixed), for prediction.

    Example:
        >>> import gpjax as gpx, jax, jax.numpy as jnp
        >>> from bayescore.models.tucker import FunctionalTucker
        >>> x = jax.random.uniform(jax.random.key(1), (40, 1))
        >>> fit = FunctionalTucker(1, [gpx.kernels.Matern32()], cp=True).fit(
        ...     x, jnp.sin(4 * x[:, 0]), num_epochs=3, learn_hyperparameters=False,
        ...     progress=False)
        >>> len(fit.history["train_rmse"])  # one cep_epoch per entry
        3
    """
    num_modes = len(config.ranks)
    dtype = data.y.dtype
    entry_means = [state.means[j][data.positions[j]] for j in range(num_modes)]
    entry_seconds = [
        _outer(state.means[j], state.covariances[j])[data.positions[j]] for j in range(num_modes)
    ]
    kernels, optimizer_states = list(state.kernels), list(state.optimizer_states)
    precisions, shifts = list(state.site_precisions), list(state.site_shifts)
    means, covariances = list(state.means), list(state.covariances)
    log_evidence = jnp.zeros((), dtype)
    posteriors = []
    for mode in range(num_modes if config.update_functions else 0):
        precision, shift = function_messages(config, state, data, mode, entry_means, entry_seconds)
        precisions[mode] = _damp(settings.damping_functions, precisions[mode], precision)
        shifts[mode] = _damp(settings.damping_functions, shifts[mode], shift)
        sites = natural_sites(precisions[mode], shifts[mode])
        rank = config.ranks[mode]
        if config.learn_hyperparameters:
            kernels[mode], optimizer_states[mode], _ = learn_kernel(
                config,
                settings,
                kernels[mode],
                optimizer_states[mode],
                data.grids[mode],
                sites,
                rank,
            )
        sde = state_space(kernels[mode], rank, dtype=dtype)
        posterior = smooth(sde, data.grids[mode], sites, parallel=config.parallel)
        means[mode], covariances[mode] = marginals(
            sde, posterior.smoothed.means, posterior.smoothed.covariances
        )
        log_evidence = log_evidence + posterior.log_marginal_likelihood
        posteriors.append(posterior)
        entry_means[mode] = means[mode][data.positions[mode]]
        entry_seconds[mode] = _outer(means[mode], covariances[mode])[data.positions[mode]]
        state = state._replace(means=tuple(means), covariances=tuple(covariances))

    common = dict(hadamard=config.cp, chunk_size=config.chunk_size)
    single = jnp.zeros_like(data.positions[0])
    core_precision, core_shift = state.core_message_precision, state.core_message_shift
    core_mean, core_covariance = state.core_mean, state.core_covariance
    if config.cp:
        fitted = cp_fitted(entry_means)
        second_sum = jnp.sum(segment_kron_sum(entry_seconds, single, 1, **common))
    else:
        size = state.core_mean.size
        num_first = data.grids[0].shape[0]
        rest_size = size // config.ranks[0]
        if aggregate_first(num_first, rest_size**2, data.y.shape[0], size):
            # Σ_n E[z zᵀ] = Σ_s E[U¹U¹ᵀ](s) ⊗ Σ_{n: i¹ = s} ⊗_{k>1} E[UᵏUᵏᵀ]
            first_seconds = _outer(means[0], covariances[0])
            rest = entry_seconds[1:] or [jnp.ones((data.y.shape[0], 1, 1), dtype)]
            rest_sums = segment_kron_sum(
                rest, data.positions[0], num_first, symmetric=True, **common
            )
            gram = jnp.einsum("sab,sij->aibj", first_seconds, rest_sums).reshape(size, size)
        else:  # many index values in mode 1: sum the full products a chunk at a time
            gram = segment_kron_sum(entry_seconds, single, 1, symmetric=True, **common)[0]
        moment = segment_kron_sum(entry_means, single, 1, weights=data.y, **common)[0]
        tau = state.noise_shape / state.noise_rate
        core_precision = _damp(settings.damping_core, core_precision, tau * gram)
        core_shift = _damp(settings.damping_core, core_shift, tau * moment)
        eye = jnp.eye(size, dtype=dtype)
        cholesky = jsl.cho_factor(core_precision + settings.core_prior_precision * eye, lower=True)
        core_covariance = jsl.cho_solve(cholesky, eye)
        core_covariance = 0.5 * (core_covariance + core_covariance.T)
        core_mean = jsl.cho_solve(cholesky, core_shift)
        fitted = tucker_fitted(core_mean, config.ranks, entry_means)
        core_second = core_covariance + jnp.outer(core_mean, core_mean)
        second_sum = jnp.sum(gram * core_second)

    noise_message, noise_shape, noise_rate = (
        state.noise_message,
        state.noise_shape,
        state.noise_rate,
    )
    if config.learn_noise:
        squared_error = jnp.sum(data.y**2) - 2.0 * jnp.sum(data.y * fitted) + second_sum
        new_message = jnp.stack([0.5 * data.y.shape[0], 0.5 * jnp.maximum(squared_error, 0.0)])
        noise_message = _damp(settings.damping_noise, noise_message, new_message.astype(dtype))
        noise_shape = settings.noise_shape + noise_message[0]
        noise_rate = settings.noise_rate + noise_message[1]

    change = jnp.linalg.norm(fitted - state.fitted) / jnp.maximum(
        jnp.linalg.norm(state.fitted), jnp.finfo(dtype).tiny
    )
    info = EpochInfo(
        train_rmse=jnp.sqrt(jnp.mean((data.y - fitted) ** 2)),
        change=change,
        log_evidence=log_evidence,
        noise_precision=noise_shape / noise_rate,
    )
    new_state = CEPState(
        kernels=tuple(kernels),
        optimizer_states=tuple(optimizer_states),
        site_precisions=tuple(precisions),
        site_shifts=tuple(shifts),
        means=tuple(means),
        covariances=tuple(covariances),
        core_message_precision=core_precision,
        core_message_shift=core_shift,
        core_mean=core_mean,
        core_covariance=core_covariance,
        noise_message=noise_message,
        noise_shape=jnp.asarray(noise_shape, dtype),
        noise_rate=jnp.asarray(noise_rate, dtype),
        fitted=fitted,
    )
    return new_state, info, tuple(posteriors)
