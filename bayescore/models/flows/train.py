r"""Training flows: maximum likelihood on data, and reverse KL to an unnormalised density.

- :func:`fit_to_data` minimises the negative log-likelihood
  :math:`-\frac1B\sum_{i \in \text{batch}} \log q_\theta(x_i \mid c_i)` over shuffled
  minibatches, one epoch per compiled call (``lax.scan`` over the epoch's batches, so no
  per-step dispatch), with a held-out validation set, early stopping and a progress bar.
- :func:`fit_to_density` minimises the reverse KL divergence up to its constant,
  :math:`\mathbb E_{q_\theta}[\log q_\theta(x) - \log \tilde p(x)] = \mathrm{KL}(q_\theta\|p)
  - \log Z`, by the reparameterisation gradient over ``num_samples`` draws per step; all
  steps run in one compiled ``lax.scan`` with the progress bar ticked from the device.

Both skip an update whose loss or gradient is not finite (the parameters stay where they were,
the loss is recorded as it was) and return the fitted flow with the loss history as NumPy
arrays. Parameters are found as flowjax does (inexact arrays not wrapped in
``paramax.NonTrainable``), so any flowjax distribution trains here. Written in bayescore
because flowjax's loops (``flowjax.train``) dispatch one compiled step per minibatch from
Python, which costs more than the step itself for small flows.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import paramax
from flowjax.bijections import Chain, Scan
from flowjax.distributions import AbstractDistribution
from jaxtyping import Array, ArrayLike, PRNGKeyArray

from bayescore.core.errors import (
    ArgumentError,
    DataError,
    InitializationError,
    ShapeError,
    check_interval,
    check_positive_float,
    check_positive_int,
)
from bayescore.core.optimise import guarded_update, optimise
from bayescore.core.progress import ProgressBar
from bayescore.core.target import Target

logger = logging.getLogger(__name__)
CHECK_ROWS = 8192  # rows per compiled call of the support check


def fit_to_data(
    key: PRNGKeyArray,
    flow: AbstractDistribution,
    data: ArrayLike,
    *,
    condition: ArrayLike | None = None,
    optimizer: optax.GradientTransformation | None = None,
    learning_rate: float = 5e-4,
    max_epochs: int = 100,
    max_patience: int = 5,
    batch_size: int = 100,
    val_prop: float = 0.1,
    return_best: bool = True,
    progress: bool = True,
) -> tuple[AbstractDistribution, dict[str, np.ndarray]]:
    """Fit ``flow`` to samples ``data`` (rows) by maximum likelihood.

    Args:
        key: splits the data into training and validation sets and shuffles every epoch.
        flow: a flowjax distribution (any flow of :mod:`bayescore.models.flows`).
        data: ``(num_data, *flow.shape)`` samples.
        condition: ``(num_data, *flow.cond_shape)`` context for a conditional flow.
        optimizer: an optax optimizer (default ``optax.adam(learning_rate)``).
        learning_rate: Adam's step size when ``optimizer`` is not given.
        max_epochs: passes over the training set at most.
        max_patience: stop after this many epochs in a row without a new lowest
            validation loss.
        batch_size: rows per step; an epoch has ``num_train // batch_size`` steps (the
            remainder is left out of that epoch, a different remainder each epoch).
        val_prop: share of the rows held out for validation (0 for none: then every epoch
            runs and the training loss picks the best parameters).
        return_best: return the parameters of the epoch with the lowest validation loss,
            else those of the last epoch.
        progress: show a progress bar over epochs.

    Returns:
        ``(fitted flow, history)`` with ``history["train"]`` (mean training loss per epoch)
        and ``history["val"]`` (validation loss per epoch), both negative mean log-likelihoods.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from flowjax.distributions import Normal
        >>> from bayescore.models.flows import fit_to_data
        >>> data = 3.0 + 0.5 * jax.random.normal(jax.random.key(0), (2000, 1))
        >>> flow, history = fit_to_data(jax.random.key(1), Normal(jnp.zeros(1)), data,
        ...                             learning_rate=0.05, max_epochs=50, progress=False)
        >>> round(float(flow.loc[0]), 1), history["train"].shape[0] <= 50
        (3.0, True)
    """
    _check_flow(flow)
    max_epochs = check_positive_int("max_epochs", max_epochs)
    max_patience = check_positive_int("max_patience", max_patience)
    batch_size = check_positive_int("batch_size", batch_size)
    val_prop = check_interval("val_prop", val_prop, 0.0, 1.0, closed="left")
    if optimizer is None:
        learning_rate = check_positive_float("learning_rate", learning_rate)
    x = _rows("data", data, flow.shape)
    if (flow.cond_shape is None) != (condition is None):
        raise ArgumentError(
            "condition must be given exactly when the flow is conditional: the flow has "
            f"cond_shape {flow.cond_shape} and condition is "
            f"{'missing' if condition is None else 'given'}."
        )
    arrays = (x,) if condition is None else (x, _rows("condition", condition, flow.cond_shape))
    if arrays[-1].shape[0] != x.shape[0]:
        raise ShapeError(
            f"condition has {arrays[-1].shape[0]} rows but data has {x.shape[0]}; give one "
            "context row per data row."
        )
    num_val = round(val_prop * x.shape[0])
    num_train = x.shape[0] - num_val
    if num_train < 1:
        raise DataError(f"data has {x.shape[0]} rows: too few to train on after validation.")
    optimizer = optimizer if optimizer is not None else optax.adam(learning_rate)

    params, static = _partition(flow)
    _check_finite_start(params, static, arrays)
    split_key, key = jax.random.split(key)
    order = jax.random.permutation(split_key, x.shape[0])
    train = tuple(a[order[:num_train]] for a in arrays)
    val = tuple(a[order[num_train:]] for a in arrays)
    batch_size = min(batch_size, num_train)

    opt_state = optimizer.init(params)
    best_params, best_loss, fruitless = params, np.inf, 0
    train_losses: list[float] = []
    val_losses: list[float] = []
    with ProgressBar(max_epochs, enabled=progress, description="fit_to_data") as bar:
        for epoch in range(max_epochs):
            params, opt_state, train_loss, val_loss = _epoch(
                params,
                static,
                opt_state,
                jax.random.fold_in(key, epoch),
                train,
                val,
                optimizer=optimizer,
                batch_size=batch_size,
            )
            train_losses.append(float(train_loss))
            val_losses.append(float(val_loss))
            score = val_losses[-1] if num_val else train_losses[-1]
            bar.advance(1, train=train_losses[-1], val=val_losses[-1])
            if score < best_loss:
                best_params, best_loss, fruitless = params, score, 0
            else:
                fruitless += 1
                if num_val and fruitless >= max_patience:
                    break
    history = {"train": np.asarray(train_losses), "val": np.asarray(val_losses)}
    return eqx.combine(best_params if return_best else params, static), history


def fit_to_density(
    key: PRNGKeyArray,
    flow: AbstractDistribution,
    log_density: Callable[[Array], Array] | Target,
    *,
    steps: int = 2000,
    num_samples: int = 64,
    optimizer: optax.GradientTransformation | None = None,
    learning_rate: float = 1e-3,
    stick_the_landing: bool = False,
    progress: bool = True,
) -> tuple[AbstractDistribution, dict[str, np.ndarray]]:
    """Fit ``flow`` to an unnormalised density by minimising the reverse KL divergence.

    Args:
        key: draws every step's samples (step ``t`` uses ``fold_in(key, t)``).
        flow: an unconditional flowjax distribution; its ``sample_and_log_prob`` is the
            direction used, so a flow fast to sample (e.g. ``invert=False``) trains fastest.
        log_density: ``log p̃(x)`` for one point ``x`` of ``flow.shape``, or a
            :class:`~bayescore.Target`, whose unconstrained parameters, flattened with
            ``jax.flatten_util.ravel_pytree``, are the flow's space (``flow.shape ==
            (target.dim,)``).
        steps: optimiser steps.
        num_samples: draws per step.
        optimizer: an optax optimizer (default ``optax.adam(learning_rate)``).
        learning_rate: Adam's step size when ``optimizer`` is not given.
        stick_the_landing: drop the score term :math:`\\mathbb E_q[\\nabla_\\theta \\log
            q_\\theta(x)]` (zero in expectation) from the gradient by evaluating
            :math:`\\log q` with the parameters held fixed (Roeder et al. 2017): the
            gradient's variance then vanishes at :math:`q = p`. Costs an inverse pass of the
            flow per step (a root-finding one for planar and smooth layers).
        progress: show a progress bar.

    Returns:
        ``(fitted flow, history)`` with ``history["loss"]``: per step, the estimate of
        :math:`\\mathbb E_q[\\log q - \\log \\tilde p] = \\mathrm{KL}(q\\|p) - \\log Z`.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from flowjax.distributions import Normal
        >>> from bayescore.models.flows import fit_to_density
        >>> flow, history = fit_to_density(
        ...     jax.random.key(0), Normal(jnp.zeros(2)), lambda x: -0.5 * jnp.sum((x - 2.0) ** 2),
        ...     steps=500, learning_rate=0.05, progress=False)
        >>> tuple(round(float(m), 1) for m in flow.loc)
        (2.0, 2.0)
    """
    _check_flow(flow)
    if flow.cond_shape is not None:
        raise ArgumentError(
            "fit_to_density fits an unconditional flow; this one has cond_shape "
            f"{flow.cond_shape}. Fix the condition first (e.g. flowjax's EmbedCondition)."
        )
    steps = check_positive_int("steps", steps)
    num_samples = check_positive_int("num_samples", num_samples)
    check_positive_float("learning_rate", learning_rate)
    log_density = _as_log_density(log_density, flow.shape)
    optimizer = optimizer if optimizer is not None else optax.adam(learning_rate)

    params, static = _partition(flow)
    stick_the_landing = bool(stick_the_landing)
    start = _reverse_kl(
        params, static, log_density, jax.random.fold_in(key, steps), num_samples, False
    )
    if not np.isfinite(float(start)):
        sample = paramax.unwrap(flow).sample(jax.random.fold_in(key, steps), (num_samples,))
        values = jax.vmap(log_density)(sample)
        bad = (
            int(np.argmax(~np.isfinite(np.asarray(values))))
            if not np.isfinite(values).all()
            else None
        )
        where = (
            f"log_density is {float(values[bad])} at the flow sample {np.asarray(sample[bad])}"
            if bad is not None
            else "the flow's own log density is not finite at its samples"
        )
        raise InitializationError(
            f"the reverse-KL loss is not finite at the initial flow: {where}. Make log_density "
            "finite wherever the flow puts mass (e.g. a smooth wall instead of -inf outside a box)."
        )

    def loss_fn(params: Any, key: PRNGKeyArray) -> tuple[Array, Array]:
        loss = _reverse_kl(params, static, log_density, key, num_samples, stick_the_landing)
        return loss, loss

    params, losses, _ = optimise(
        loss_fn, params, optimizer, key, steps, progress=progress, description="fit_to_density"
    )
    losses = np.asarray(losses)
    skipped = int(np.sum(~np.isfinite(losses)))
    if skipped:
        logger.warning(
            "fit_to_density skipped %d of %d steps whose loss or gradient was not finite.",
            skipped,
            steps,
        )
    return eqx.combine(params, static), {"loss": losses}


# ---------------------------------------------------------------------- compiled pieces


def _partition(flow: AbstractDistribution) -> tuple[Any, Any]:
    """Trainable arrays and the rest, as flowjax splits them."""
    return eqx.partition(
        flow, eqx.is_inexact_array, is_leaf=lambda leaf: isinstance(leaf, paramax.NonTrainable)
    )


def _total_log_prob(params: Any, static: Any, arrays: tuple[Array, ...]) -> Array:
    flow = paramax.unwrap(eqx.combine(params, static))
    return jnp.sum(flow.log_prob(*arrays))


def _nll(params: Any, static: Any, arrays: tuple[Array, ...]) -> Array:
    return -_total_log_prob(params, static, arrays) / arrays[0].shape[0]


@eqx.filter_jit
def _epoch(
    params: Any,
    static: Any,
    opt_state: Any,
    key: PRNGKeyArray,
    train: tuple[Array, ...],
    val: tuple[Array, ...],
    *,
    optimizer: optax.GradientTransformation,
    batch_size: int,
) -> tuple[Any, Any, Array, Array]:
    num_train = train[0].shape[0]
    num_batches = num_train // batch_size
    order = jax.random.permutation(key, num_train)[: num_batches * batch_size]

    def step(carry: tuple[Any, Any], indices: Array) -> tuple[tuple[Any, Any], Array]:
        params, opt_state = carry
        batch = tuple(a[indices] for a in train)
        loss, grads = jax.value_and_grad(_nll)(params, static, batch)
        return guarded_update(optimizer, params, opt_state, loss, grads), loss

    (params, opt_state), losses = jax.lax.scan(
        step, (params, opt_state), order.reshape(num_batches, batch_size)
    )
    return params, opt_state, jnp.mean(losses), _mean_nll(params, static, val, batch_size)


def _mean_nll(params: Any, static: Any, arrays: tuple[Array, ...], chunk: int) -> Array:
    """The mean negative log-likelihood of all rows, ``chunk`` rows at a time (NaN if none)."""
    num = arrays[0].shape[0]
    if num == 0:
        return jnp.asarray(jnp.nan)
    whole = num // chunk * chunk
    total = jnp.zeros(())
    if whole:
        blocks = tuple(a[:whole].reshape(whole // chunk, chunk, *a.shape[1:]) for a in arrays)
        total = jnp.sum(jax.lax.map(lambda b: _total_log_prob(params, static, b), blocks))
    if whole < num:
        total = total + _total_log_prob(params, static, tuple(a[whole:] for a in arrays))
    return -total / num


def _reverse_kl(
    params: Any,
    static: Any,
    log_density: Callable,
    key: PRNGKeyArray,
    num_samples: int,
    stick_the_landing: bool,
) -> Array:
    flow = unroll_layers(paramax.unwrap(eqx.combine(params, static)))
    if stick_the_landing:
        x = flow.sample(key, (num_samples,))
        frozen = unroll_layers(paramax.unwrap(eqx.combine(jax.lax.stop_gradient(params), static)))
        log_q = frozen.log_prob(x)
    else:
        x, log_q = flow.sample_and_log_prob(key, (num_samples,))
    return jnp.mean(log_q - jax.vmap(log_density)(x))


UNROLL_LAYERS = 8  # the most layers of a Scan that unroll_layers unrolls


def unroll_layers(tree: Any, max_layers: int = UNROLL_LAYERS) -> Any:
    """``tree`` with every flowjax ``Scan`` of at most ``max_layers`` layers replaced by the
    ``Chain`` of its layers: the same flow, its stacked parameters sliced per layer.

    The constructors stack layers in a ``Scan`` so that compile time stays flat in depth; a
    compiled training step then runs each of its passes as an XLA ``while`` loop, whose fixed
    cost per layer dominates a small flow's step on CPU (two thirds of an IAF step on a
    2-D target). ``bc.fit`` and :func:`fit_to_density` unroll the flow inside their step.
    Apply it to an unwrapped flow (``paramax.unwrap``): a parameterisation evaluated per
    layer slice must not depend on the stacked axis.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from flowjax.distributions import StandardNormal
        >>> from bayescore.models.flows import planar_flow, unroll_layers
        >>> flow = planar_flow(jax.random.key(0), base_dist=StandardNormal((2,)), flow_layers=3)
        >>> x = jnp.ones(2)
        >>> type(unroll_layers(flow).bijection).__name__
        'Chain'
        >>> bool(jnp.allclose(unroll_layers(flow).log_prob(x), flow.log_prob(x)))
        True
    """

    def unrolled(node: Any) -> Any:
        if not isinstance(node, Scan):
            return node
        arrays, static = eqx.partition(node.bijection, eqx.is_array)
        length = jax.tree.leaves(arrays)[0].shape[0]
        if length > max_layers:
            return node
        layers = [
            unroll_layers(eqx.combine(jax.tree.map(lambda a, i=i: a[i], arrays), static))
            for i in range(length)
        ]
        return Chain(layers)

    return jax.tree.map(unrolled, tree, is_leaf=lambda node: isinstance(node, Scan))


# ---------------------------------------------------------------------- checks


def _check_flow(flow: object) -> None:
    if not isinstance(paramax.unwrap(flow), AbstractDistribution):
        raise ArgumentError(
            f"flow must be a flowjax distribution (e.g. bayescore.models.flows.smooth_flow or "
            f"flowjax.flows.coupling_flow), got {type(flow).__name__}."
        )


def _rows(name: str, values: ArrayLike, event_shape: tuple[int, ...]) -> Array:
    """``values`` as a float array of shape ``(rows, *event_shape)``, finite."""
    try:
        array = jnp.asarray(values)
    except TypeError as error:
        raise ArgumentError(f"{name} must be an array, got {type(values).__name__}.") from error
    if array.dtype.kind not in "biuf":
        raise ArgumentError(f"{name} must hold real numbers, got dtype {array.dtype}.")
    if not jnp.issubdtype(array.dtype, jnp.floating):
        array = array.astype(jnp.result_type(float))
    if array.ndim == len(event_shape):
        raise ShapeError(
            f"{name} has shape {array.shape}, one point of the flow; give rows of points, "
            f"shape (num_data, {', '.join(map(str, event_shape))}) (e.g. {name}[None])."
        )
    if array.ndim != len(event_shape) + 1 or array.shape[1:] != tuple(event_shape):
        raise ShapeError(
            f"{name} must have shape (num_data, {', '.join(map(str, event_shape))}) to match "
            f"the flow, got {array.shape}."
        )
    if array.shape[0] == 0:
        raise DataError(f"{name} is empty: give at least one row.")
    finite = np.isfinite(np.asarray(array)).reshape(array.shape[0], -1).all(axis=1)
    if not finite.all():
        raise DataError(
            f"{name} has non-finite values in {int((~finite).sum())} rows (first: row "
            f"{int(np.argmin(finite))}); drop or impute them before fitting."
        )
    return array


def _check_finite_start(params: Any, static: Any, arrays: tuple[Array, ...]) -> None:
    """Every row must have a finite log density under the initial flow (e.g. in its support)."""
    num = arrays[0].shape[0]
    log_prob = np.concatenate(
        [
            np.asarray(_row_log_probs(params, static, tuple(a[i : i + CHECK_ROWS] for a in arrays)))
            for i in range(0, num, CHECK_ROWS)
        ]
    )
    if not np.isfinite(log_prob).all():
        row = int(np.argmax(~np.isfinite(log_prob)))
        raise DataError(
            f"data row {row} ({np.asarray(arrays[0][row])}) has log density {log_prob[row]} "
            f"under the initial flow, and {int((~np.isfinite(log_prob)).sum())} rows in all: "
            "outside the flow's support? A flow on [0, 1]^d or a torus needs data inside its "
            "domain (angles mapped to the flow's interval)."
        )


@eqx.filter_jit
def _row_log_probs(params: Any, static: Any, arrays: tuple[Array, ...]) -> Array:
    return paramax.unwrap(eqx.combine(params, static)).log_prob(*arrays)


def _as_log_density(log_density: Callable | Target, shape: tuple[int, ...]) -> Callable:
    if isinstance(log_density, Target):
        target = log_density
        if shape != (target.dim,):
            raise ShapeError(
                f"the flow has shape {shape} but the target has {target.dim} unconstrained "
                f"parameters; build the flow on ({target.dim},)."
            )
        unravel = target.unravel()
        return lambda x: target.logdensity(unravel(x))
    if not callable(log_density):
        raise ArgumentError(
            "log_density must be a callable or a bayescore Target, got "
            f"{type(log_density).__name__}."
        )
    return log_density


__all__ = ["fit_to_data", "fit_to_density", "unroll_layers"]
