r"""Stochastic-gradient samplers: SGLD, pSGLD, SGHMC and SGNHT.

Notation: :math:`\hat g` is the estimator's gradient of :math:`\log\pi` (a minibatch by
default), :math:`h_t` the step size at step ``t`` (a float or any schedule, e.g.
:func:`~bayescore.inference.sgmcmc.schedules.cyclical`), :math:`T` the temperature
(1 samples the posterior; :math:`T<1` a cold posterior; 0 turns every sampler into its
optimizer), :math:`\xi \sim N(0, I)`.

- **SGLD** (Welling & Teh 2011; BlackJAX's scaling):
  :math:`\theta \leftarrow \theta + h\hat g + \sqrt{2Th}\,\xi`.
- **pSGLD** (Li, Chen, Carlson & Carin 2016): RMSprop preconditioner
  :math:`V \leftarrow \alpha V + (1-\alpha)\hat g^2`, :math:`G = 1/(\lambda + \sqrt V)`,
  and
  :math:`\theta \leftarrow \theta + h(G\hat g + T\Gamma) + \sqrt{2ThG}\,\xi`. The correction
  :math:`\Gamma_i = \partial G_i/\partial\theta_i = -G_i^2 (1-\alpha)\hat g_i
  \partial_i \hat g_i / \sqrt{V_i}` is computed with ``correction=True`` (the diagonal of the
  minibatch Hessian by one Hutchinson probe, a forward-over-reverse product: about two more
  gradient passes); by default it is dropped, as in the paper's experiments (it is
  :math:`O(1-\alpha)`). :math:`V` averages the squares of the whole estimate :math:`\hat g`
  (as SGMCMCJax and the S-SGMCMC code do; the paper's per-datum mean :math:`\hat g/N` only
  rescales :math:`G` by :math:`N`), so at the posterior :math:`G` is of the order of the
  posterior scale and step sizes carry over between data sizes.
- **SGHMC** (Chen, Fox & Guestrin 2014, their practical form, Eq. 15) with persistent
  momentum (velocity :math:`v`), learning rate :math:`\eta = h` and friction :math:`\alpha`:
  :math:`v \leftarrow (1-\alpha)v + \eta\hat g + N(0, 2\alpha\eta T - \eta^2\hat V)`,
  :math:`\theta \leftarrow \theta + v`. With ``estimate_noise=True`` the injected variance
  subtracts the minibatch gradient noise :math:`\eta^2 \hat V` (their :math:`2\hat\beta\eta`),
  :math:`\hat V` the per-coordinate variance of the estimate from per-example gradients
  (one more pass), clipped at 0.
- **SGNHT** (Ding et al. 2014): :math:`p \leftarrow p - \xi p h + h\hat g +
  \sqrt{2ATh}\,\eta`, :math:`\theta \leftarrow \theta + hp`,
  :math:`\xi \leftarrow \xi + h(p^\top p/d - T)`; the thermostat :math:`\xi` absorbs the
  unknown gradient noise.

Every step uses one minibatch (the epoch-wise stream of :mod:`bayescore.core.data`, whose key
and step counter live in the state), so minibatches never leave the device. The samplers are
Methods for ``bc.sample``: warmup is burn-in with the same kernel (the step counter, and so
the schedule and the epochs, run on through the draws). ``sample_stats`` records
``step_size``, ``exploring`` (a cyclical schedule's noise-free phase), ``lp_estimate`` (the
estimator's log density), ``n_steps`` (minibatch gradient passes) and ``diverging``
(non-finite gradient or position).

Written by hand rather than wrapping ``blackjax.sgld``/``sghmc``: those take the minibatch
from a host-side loop, return no info, and BlackJAX has no pSGLD.
"""

from __future__ import annotations

import abc
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, PRNGKeyArray

from bayescore.core.data import check_batching, target_batch
from bayescore.core.errors import (
    ArgumentError,
    check_interval,
    check_positive_float,
    check_positive_int,
)
from bayescore.core.kernel import Kernel
from bayescore.inference.sgmcmc.gradients import Minibatch
from bayescore.inference.sgmcmc.schedules import as_schedule, exploring


class SGState(NamedTuple):
    """The state of an SG-MCMC chain.

    Attributes:
        position: the parameters (unconstrained pytree).
        count: steps taken (drives the schedule and the minibatch stream).
        stream_key: the key of the chain's minibatch stream.
        momentum: flat momentum / velocity (SGHMC, SGNHT; empty otherwise).
        auxiliary: pSGLD's ``V``, SGNHT's thermostat ``ξ`` (empty otherwise).
        estimator: the gradient estimator's state (buffers, centring point).
    """

    position: Any
    count: Array
    stream_key: Array
    momentum: Array
    auxiliary: Array
    estimator: Any


class SGInfo(NamedTuple):
    """Per-step statistics (``sample_stats``; see the module docstring)."""

    step_size: Array
    exploring: Array
    lp_estimate: Array
    n_steps: Array
    diverging: Array


class Extras(NamedTuple):
    """What a move may ask for besides the gradient: ``grad(x)`` and ``noise_variance(x)``.

    ``grad`` re-evaluates the estimator at ``x`` on the step's minibatch; ``noise_variance``
    is the per-coordinate variance of the minibatch gradient at ``x`` (see
    :func:`minibatch_noise_variance`).
    """

    grad: Any
    noise_variance: Any


def minibatch_noise_variance(target: Any, unravel: Any, indices: dict, num_shards: int) -> Any:
    """``x ↦`` the per-coordinate variance of the minibatch gradient estimate at ``x``.

    The ``B`` indices of the first subsampled plate are ``B / S`` rounds of one index per
    stratum (``S = num_shards``); the estimate is the mean of the ``B / S`` round estimates
    (prior plus ``N / S`` times the round's likelihood gradients), so its variance is their
    sample variance over ``B / S``, times the finite-population correction of each stratum.
    With ``S = 1`` the rounds are single examples. Each round is one gradient pass over
    ``S`` examples, so it also runs on data shards. 0 without a subsampled plate or with a
    single round.
    """
    if not target.subsample_plates:
        return lambda x: jnp.zeros_like(x)
    plate = target.subsample_plates[0]
    rounds = plate.subsample_size // num_shards
    stratum = plate.size // num_shards
    if rounds < 2:
        return lambda x: jnp.zeros_like(x)
    by_round = indices[plate.name].reshape(num_shards, rounds).T  # (rounds, S), stratum order

    def variance(x: Array) -> Array:
        def single(round_indices: Array) -> Array:
            one = {**indices, plate.name: round_indices}
            return jax.grad(lambda x: target.logdensity_subsample(unravel(x), one))(x)

        grads = jax.vmap(single)(by_round)
        correction = (stratum - rounds) / max(stratum - 1, 1)
        return jnp.var(grads, axis=0, ddof=1) / rounds * correction

    return variance


class SGMethod(eqx.Module):
    """The shared plumbing: schedule, minibatch, estimator, stats. Subclasses define ``move``.

    ``move(key, x, grad, step_size, temperature, momentum, auxiliary, extras)`` returns the
    new ``(x, momentum, auxiliary)``; ``initial(x, key)`` the starting ``(momentum,
    auxiliary)``.
    """

    step_size: Any
    temperature: float
    estimator: Any
    num_shards: int = eqx.field(static=True)

    def initial(self, x: Array, key: PRNGKeyArray) -> tuple[Array, Array]:
        return jnp.zeros((0,), x.dtype), jnp.zeros((0,), x.dtype)

    @abc.abstractmethod
    def move(self, *args: Any) -> tuple[Array, Array, Array]:
        """One update: ``(key, x, grad, step_size, temperature, momentum, auxiliary, extras)``
        to the new ``(x, momentum, auxiliary)``."""

    def _check(self, target: Any) -> None:
        target.require_continuous(f"{type(self).__name__} (stochastic-gradient MCMC)")
        for plate in target.subsample_plates:
            check_batching(
                plate.size, plate.subsample_size, self.num_shards, f"plate {plate.name!r}"
            )

    def _kernel(self, target: Any) -> Kernel:
        self._check(target)
        schedule = as_schedule(self.step_size)
        estimator = self.estimator

        def init(position: Any, key: PRNGKeyArray) -> SGState:
            x, unravel = ravel_pytree(position)
            stream_key, estimator_key, momentum_key = jax.random.split(key, 3)
            x, estimator_state = estimator.init(
                target, x, unravel, estimator_key, num_shards=self.num_shards
            )
            momentum, auxiliary = self.initial(x, momentum_key)
            return SGState(
                unravel(x),
                jnp.zeros((), jnp.int32),
                stream_key,
                momentum,
                auxiliary,
                estimator_state,
            )

        def step(key: PRNGKeyArray, state: SGState) -> tuple[SGState, SGInfo]:
            x, unravel = ravel_pytree(state.position)
            noise_key, estimator_key = jax.random.split(key)
            indices = target_batch(target, state.stream_key, state.count, self.num_shards)

            def estimate(x: Array) -> Any:
                return estimator.estimate(
                    target, unravel, x, indices, estimator_key, state.estimator
                )

            result = estimate(x)
            step_size = schedule(state.count)
            explore = exploring(schedule, state.count)
            temperature = jnp.where(explore, 0.0, self.temperature)
            new_x, momentum, auxiliary = self.move(
                noise_key,
                x,
                result.grad,
                step_size,
                temperature,
                state.momentum,
                state.auxiliary,
                Extras(
                    lambda x: estimate(x).grad,
                    minibatch_noise_variance(target, unravel, indices, self.num_shards),
                ),
            )
            diverging = ~(jnp.all(jnp.isfinite(new_x)) & jnp.all(jnp.isfinite(result.grad)))
            new_state = SGState(
                unravel(new_x),
                state.count + 1,
                state.stream_key,
                momentum,
                auxiliary,
                estimator.update(state.estimator, new_x, state.count),
            )
            info = SGInfo(
                jnp.asarray(step_size, jnp.float32),
                explore,
                result.logdensity,
                result.passes,
                diverging,
            )
            return new_state, info

        return Kernel(init, step)

    # The Method protocol: burn-in with the same kernel, nothing to tune.
    def warmup(self, target: Any, num_warmup: int) -> Kernel:
        return self._kernel(target)

    def tune(self, target: Any, warmup_state: SGState) -> tuple[Any, SGState]:
        return (), warmup_state

    def kernel(self, target: Any, parameters: Any) -> Kernel:
        return self._kernel(target)


class SGLD(SGMethod):
    """Stochastic-gradient Langevin dynamics (see the module docstring)."""

    def move(self, key, x, grad, step_size, temperature, momentum, auxiliary, extras):  # noqa: ANN001, ANN201
        noise = jax.random.normal(key, x.shape, x.dtype)
        return (
            x + step_size * grad + jnp.sqrt(2.0 * temperature * step_size) * noise,
            momentum,
            auxiliary,
        )


class PSGLD(SGMethod):
    """Preconditioned SGLD with the RMSprop preconditioner (see the module docstring)."""

    alpha: float = 0.99
    epsilon: float = 1e-5
    correction: bool = eqx.field(static=True, default=False)

    def initial(self, x: Array, key: PRNGKeyArray) -> tuple[Array, Array]:
        return jnp.zeros((0,), x.dtype), jnp.zeros_like(x)

    def move(self, key, x, grad, step_size, temperature, momentum, auxiliary, extras):  # noqa: ANN001, ANN201
        noise_key, probe_key = jax.random.split(key)
        v = self.alpha * auxiliary + (1.0 - self.alpha) * grad**2
        root = jnp.sqrt(v)
        g = 1.0 / (self.epsilon + root)
        drift = g * grad
        if self.correction:
            probe = jax.random.rademacher(probe_key, x.shape, x.dtype)
            _, hessian_probe = jax.jvp(extras.grad, (x,), (probe,))
            diagonal = probe * hessian_probe  # ∂ĝ_i/∂θ_i, one Hutchinson probe
            gamma = -(g**2) * (1.0 - self.alpha) * grad * diagonal / jnp.maximum(root, 1e-30)
            drift = drift + temperature * gamma
        noise = jax.random.normal(noise_key, x.shape, x.dtype)
        new_x = x + step_size * drift + jnp.sqrt(2.0 * temperature * step_size * g) * noise
        return new_x, momentum, v


class SGHMC(SGMethod):
    """Stochastic-gradient HMC with friction (see the module docstring)."""

    friction: float = 0.05
    estimate_noise: bool = eqx.field(static=True, default=False)

    def initial(self, x: Array, key: PRNGKeyArray) -> tuple[Array, Array]:
        return jnp.zeros_like(x), jnp.zeros((0,), x.dtype)

    def move(self, key, x, grad, step_size, temperature, momentum, auxiliary, extras):  # noqa: ANN001, ANN201
        variance = 2.0 * self.friction * step_size * temperature
        if self.estimate_noise:
            variance = jnp.maximum(variance - step_size**2 * extras.noise_variance(x), 0.0)
        noise = jax.random.normal(key, x.shape, x.dtype)
        v = (1.0 - self.friction) * momentum + step_size * grad + jnp.sqrt(variance) * noise
        return x + v, v, auxiliary


class SGNHT(SGMethod):
    """Stochastic-gradient Nosé–Hoover thermostat (see the module docstring)."""

    diffusion: float = 0.01

    def initial(self, x: Array, key: PRNGKeyArray) -> tuple[Array, Array]:
        momentum = jnp.sqrt(self.temperature) * jax.random.normal(key, x.shape, x.dtype)
        return momentum, jnp.full((1,), self.diffusion, x.dtype)

    def move(self, key, x, grad, step_size, temperature, momentum, auxiliary, extras):  # noqa: ANN001, ANN201
        thermostat = auxiliary[0]
        noise = jax.random.normal(key, x.shape, x.dtype)
        p = (
            momentum
            - thermostat * momentum * step_size
            + step_size * grad
            + jnp.sqrt(2.0 * self.diffusion * temperature * step_size) * noise
        )
        new_x = x + step_size * p
        thermostat = thermostat + step_size * (jnp.mean(p**2) - temperature)
        return new_x, p, thermostat[None]


def _common(step_size: Any, temperature: float, estimator: Any, num_shards: int) -> dict:
    as_schedule(step_size)  # raises on a bad step size
    temperature = check_positive_float("temperature", temperature, allow_zero=True)
    num_shards = check_positive_int("num_shards", num_shards)
    estimator = Minibatch() if estimator is None else estimator
    if not all(hasattr(estimator, name) for name in ("init", "estimate", "update")):
        raise ArgumentError(
            "estimator must be a gradient estimator (bc.inference.sgmcmc.Minibatch(), "
            f"ControlVariates(...) or Structured(...)), got {type(estimator).__name__}."
        )
    return dict(
        step_size=step_size, temperature=temperature, estimator=estimator, num_shards=num_shards
    )


def sgld(
    step_size: Any,
    *,
    temperature: float = 1.0,
    estimator: Any = None,
    num_shards: int = 1,
) -> SGLD:
    r"""Stochastic-gradient Langevin dynamics: :math:`\theta + h\hat g + \sqrt{2Th}\,\xi`.

    Args:
        step_size: :math:`h`: a float or a schedule of the step count (``cyclical(...)``,
            ``polynomial_decay(...)``, any optax schedule).
        temperature: :math:`T` (1: the posterior; 0: stochastic gradient ascent).
        estimator: the gradient estimator (default :class:`Minibatch`; also
            :class:`ControlVariates`, :class:`Structured`).
        num_shards: strata of the minibatch (data-parallel runs; see
            :mod:`bayescore.core.data`).

    Example:
        >>> import jax, jax.numpy as jnp, numpy as np, numpyro, numpyro.distributions as dist
        >>> import bayescore as bc
        >>> def model(y):
        ...     mu = numpyro.sample("mu", dist.Normal(0, 10))
        ...     with numpyro.plate("data", len(y), subsample_size=10) as idx:
        ...         numpyro.sample("y", dist.Normal(mu, 1), obs=y[idx])
        >>> y = jnp.asarray(np.random.default_rng(0).normal(2.0, 1.0, 100))
        >>> target = bc.Target.from_numpyro(model, y)
        >>> result = bc.sample(bc.inference.sgld(1e-3), target, num_samples=500,
        ...                    num_warmup=500, num_chains=2, key=0, progress=False)
        >>> bool(abs(float(result.positions["mu"].mean()) - float(y.mean())) < 0.3)
        True
    """
    return SGLD(**_common(step_size, temperature, estimator, num_shards))


def psgld(
    step_size: Any,
    *,
    alpha: float = 0.99,
    epsilon: float = 1e-5,
    correction: bool = False,
    temperature: float = 1.0,
    estimator: Any = None,
    num_shards: int = 1,
) -> PSGLD:
    r"""Preconditioned SGLD (RMSprop preconditioner, Li et al. 2016).

    Args:
        step_size: as in :func:`sgld`.
        temperature: as in :func:`sgld`.
        estimator: as in :func:`sgld`.
        num_shards: as in :func:`sgld`.
        alpha: the RMSprop decay of the squared-gradient average.
        epsilon: :math:`\lambda`, added to :math:`\sqrt V` (keeps :math:`G` bounded).
        correction: add the :math:`\Gamma` term (see the module docstring).

    Example:
        >>> import bayescore as bc
        >>> bc.inference.psgld(1e-3, correction=True).correction
        True
    """
    alpha = check_interval("alpha", alpha, 0.0, 1.0)
    epsilon = check_positive_float("epsilon", epsilon)
    return PSGLD(
        **_common(step_size, temperature, estimator, num_shards),
        alpha=float(alpha),
        epsilon=epsilon,
        correction=bool(correction),
    )


def sghmc(
    step_size: Any,
    *,
    friction: float = 0.05,
    estimate_noise: bool = False,
    temperature: float = 1.0,
    estimator: Any = None,
    num_shards: int = 1,
) -> SGHMC:
    r"""Stochastic-gradient HMC with friction, persistent momentum (Chen et al. 2014, Eq. 15).

    Args:
        step_size: :math:`\eta`, the learning rate (a float or schedule; the velocity's
            stationary scale is :math:`\sqrt{\eta T}`, so :math:`\eta` plays :math:`h^2`).
        friction: :math:`\alpha` in (0, 1]: the momentum decays by :math:`1-\alpha` per step
            (SGD-with-momentum's momentum is :math:`1-\alpha`).
        estimate_noise: subtract the estimated minibatch gradient noise from the injected
            noise (one more pass of per-example gradients).
        temperature: as in :func:`sgld`.
        estimator: as in :func:`sgld`.
        num_shards: as in :func:`sgld`.

    Example:
        >>> import bayescore as bc
        >>> bc.inference.sghmc(1e-4, friction=0.1).friction
        0.1
    """
    friction = check_interval("friction", friction, 0.0, 1.0, closed="right")
    return SGHMC(
        **_common(step_size, temperature, estimator, num_shards),
        friction=float(friction),
        estimate_noise=bool(estimate_noise),
    )


def sgnht(
    step_size: Any,
    *,
    diffusion: float = 0.01,
    temperature: float = 1.0,
    estimator: Any = None,
    num_shards: int = 1,
) -> SGNHT:
    r"""Stochastic-gradient Nosé–Hoover thermostat (Ding et al. 2014).

    Args:
        step_size: :math:`h` (a float or schedule).
        diffusion: :math:`A`, the injected noise and the thermostat's starting value.
        temperature: as in :func:`sgld`.
        estimator: as in :func:`sgld`.
        num_shards: as in :func:`sgld`.

    Example:
        >>> import bayescore as bc
        >>> bc.inference.sgnht(1e-3, diffusion=0.02).diffusion
        0.02
    """
    diffusion = check_positive_float("diffusion", diffusion)
    return SGNHT(**_common(step_size, temperature, estimator, num_shards), diffusion=diffusion)
