r"""The compiled tier of resample-move SMC: a static program's stages as one ``lax.scan``.

For a static program (:func:`~bayescore.inference.programs.compiled.analyse`) with
:math:`T` observed (or factor) sites, a particle is a compiled trace-MH
:class:`~bayescore.inference.programs.compiled_mh.State`: the values of *every* latent site,
of which those of stage :math:`\le t` (drawn before the :math:`(t+1)`-th observed site) are
the particle at stage :math:`t`. Each of the stages :math:`t = 0, \dots, T - 1`, vmapped
over the :math:`N` particles, is

1. *extend*: one replayed run of the whole program
   (:func:`~bayescore.inference.programs.compiled_mh.run_regenerated`) redraws the latent
   sites of stage :math:`\ge t` from their priors (those of stage :math:`t` are the
   extension; the later ones are redrawn only so that every replayed value stays a draw of
   its prior, and mean nothing yet);
2. *weigh*: :math:`\log w_i \mathrel{+}= \log p(y_t \mid x_i)`, the log density of the
   observed site ending stage :math:`t`, so that :math:`w_i \propto \gamma_t(x_i) /
   \gamma_{t-1}(x_i)` times the old weight;
3. *resample* when :math:`\mathrm{ESS} < \text{ess\_threshold} \cdot N`
   (:func:`~bayescore.inference.programs.compiled.resample_step`) and then
4. *move*: ``num_moves`` steps of the trace-MH kernel, each a regeneration proposal on the
   latent sites of stage :math:`\le t` accepted by the log densities of the sites of stage
   :math:`\le t` alone (:func:`~bayescore.inference.programs.compiled_mh.chain_step` with a
   ``stage``): a Metropolis–Hastings step that leaves the prefix measure
   :math:`\gamma_t(x) = p(x_{\le t}) \prod_{s \le t} p(y_s \mid x_{\le s})` invariant
   (Gilks & Berzuini, JRSS B 2001, Sec. 3).

A last extension draws the latent sites after the last observed site (stage :math:`T`),
without weighing or moving, as in the eager tier. :math:`\hat Z = \frac1N \sum_i w_i`
is unbiased (Del Moral 2004, Prop. 7.4.1): the moves are :math:`\gamma_t`-invariant.

Every step runs the whole program, so a run costs :math:`O(T^2 N)` site evaluations
(:math:`(T + 1)(1 + \text{num\_moves})` runs of :math:`O(T)` sites per particle), like the
eager tier's re-execution, against the :math:`O(TN)` of compiled SMC's per-site slices; in
exchange the program is traced three times, whatever :math:`T`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from bayescore.inference.programs import compiled, compiled_mh


@compiled._per_precision
def rmsmc_kernel(
    body: Callable,
    num_particles: int,
    scheme: Callable,
    ess_threshold: float,
    num_moves: int,
    kernel: Any,
) -> Callable[[PRNGKeyArray], tuple[compiled.Particles, Float[Array, " particle"]]]:
    """``key -> (Particles, log weights)``: resample-move SMC of a static program in one
    compiled program (see the module docstring).

    Example:
        >>> import jax, numpyro, numpyro.distributions as dist
        >>> import blackjax.smc.resampling as resampling
        >>> from bayescore.inference.programs.trace_mh import single_site
        >>> def walk():
        ...     x = 0.0
        ...     for t in range(3):
        ...         x = numpyro.sample(f"x{t}", dist.Normal(x, 1.0))
        ...         numpyro.sample(f"y{t}", dist.Normal(x, 1.0), obs=0.5)
        >>> run = rmsmc_kernel(walk, 8, resampling.systematic, 0.5, 2, single_site())
        >>> particles, log_weights = run(jax.random.key(0))
        >>> particles.latents["x2"].shape, log_weights.shape
        ((8,), (8,))
    """
    structure = compiled.analyse(body)
    latent = structure.latent_addresses
    num_stages = structure.num_observed
    latent_stages = np.array(
        [s for s, is_latent in zip(structure.stages, structure.latent, strict=True) if is_latent],
        np.int32,
    )
    observed_stages = np.array(
        [s for s, observed in zip(structure.stages, structure.observed, strict=True) if observed],
        np.int32,
    )
    move = compiled_mh.chain_step(body, structure, kernel)

    def extend(state: compiled_mh.State, key: PRNGKeyArray, stage: Any) -> compiled_mh.State:
        redraw = jnp.asarray(latent_stages) >= stage
        return compiled_mh.run_regenerated(body, structure, key, state.latents, redraw)[1]

    def moves(states: compiled_mh.State, key: PRNGKeyArray, stage: Any) -> compiled_mh.State:
        def one(states: compiled_mh.State, index: Any) -> tuple:
            keys = jax.random.split(jax.random.fold_in(key, index), num_particles)
            states, _ = jax.vmap(move, (0, 0, None))(states, keys, stage)
            return states, None

        return jax.lax.scan(one, states, jnp.arange(num_moves))[0]

    def stage_step(carry: tuple, stage: Any, keys: tuple) -> tuple:
        states, log_weights = carry
        extend_key, resample_key, move_key = (jax.random.fold_in(k, stage) for k in keys)
        particle_keys = jax.random.split(extend_key, num_particles)
        states = jax.vmap(extend, (0, 0, None))(states, particle_keys, stage)
        increment = jnp.sum(
            jnp.where(jnp.asarray(observed_stages) == stage, states.log_likelihoods, 0.0), -1
        )
        # a zero weight stays zero: no -inf + inf
        log_weights = jnp.where(log_weights == -jnp.inf, -jnp.inf, log_weights + increment)
        due = compiled.resampling_due(log_weights, ess_threshold)
        log_weights, indices = compiled.resample_step(
            resample_key, log_weights, scheme, ess_threshold
        )
        states = jax.tree.map(lambda leaf: leaf[indices], states)
        if num_moves:
            states = jax.lax.cond(due, lambda s: moves(s, move_key, stage), lambda s: s, states)
        return (states, log_weights), None

    @jax.jit
    def run(key: PRNGKeyArray) -> tuple:
        keys = tuple(jax.random.fold_in(key, k) for k in range(4))
        # every site is redrawn by the first extension: these values only fix the types
        states = compiled_mh.State(
            jax.random.split(keys[3], num_particles),
            [jnp.zeros((num_particles, *a.shape), a.dtype) for a in structure.latent_avals],
            jnp.zeros((num_particles, len(latent))),
            jnp.zeros(num_particles),
            jnp.zeros((num_particles, num_stages)),
        )
        log_weights = jnp.zeros(num_particles)
        if num_stages:
            (states, log_weights), _ = jax.lax.scan(
                lambda carry, stage: stage_step(carry, stage, keys[:3]),
                (states, log_weights),
                jnp.arange(num_stages),
            )
        if np.any(latent_stages == num_stages):
            particle_keys = jax.random.split(jax.random.fold_in(keys[0], num_stages), num_particles)
            states = jax.vmap(extend, (0, 0, None))(states, particle_keys, num_stages)
        return states.key, states.latents, log_weights

    def call(key: PRNGKeyArray) -> tuple[compiled.Particles, Float[Array, " particle"]]:
        keys, latents, log_weights = run(key)
        particles = compiled.Particles(
            body, structure, keys, dict(zip(latent, latents, strict=True))
        )
        return particles, log_weights

    return call
