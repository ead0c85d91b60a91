r"""Functional Tucker and CP decompositions of continuous-indexed tensor data (FunBaT).

Fang et al. (2024), "Functional Bayesian Tucker Decomposition for Continuous-indexed Tensor
Data", ICLR (arXiv 2311.04829), Eqs. 5–8. ``N`` entries with ``K``-dimensional continuous
indexes :math:`i^n = (i^n_1, \dots, i^n_K)` and values :math:`y_n`:

.. math::

    y_n \sim N\big(f(i^n), \tau^{-1}\big),\quad
    f(i) = \operatorname{vec}(W)^\top\big(U^1(i_1)\otimes\cdots\otimes U^K(i_K)\big),\quad
    \tau \sim \mathrm{Gamma}(a_0, b_0),\quad \operatorname{vec}(W) \sim N(0, s^2 I),

with :math:`U^k(i) = (u^k_1(i), \dots, u^k_{r_k}(i))` and independent
:math:`u^k_r \sim GP(0, \kappa_k)`, :math:`\kappa_k` a Matérn kernel (or sum), so each mode
is a state-space GP (:mod:`bayescore.models.statespace`) on its sorted unique index values.
The CP model (``cp=True``) fixes :math:`W` to the all-ones super-diagonal:
:math:`f(i) = \sum_r \prod_k u^k_r(i_k)`. The reference code puts no prior on :math:`W`;
here it is :math:`N(0, s^2I)` with ``core_scale`` :math:`= s`.

:meth:`FunctionalTucker.fit` runs conditional EP (:mod:`bayescore.models.tucker.cep`) and
returns a :class:`TuckerFit`, which predicts the mean and variance of :math:`f` at any index
(seen or unseen, through the state-space interpolation) and gives the model as a NumPyro
function (:meth:`FunctionalTucker.numpyro_model`) for every generic backend.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from jaxtyping import Array, ArrayLike, Float

from bayescore.core.driver import as_key
from bayescore.core.errors import (
    ArgumentError,
    DataError,
    ShapeError,
    check_interval,
    check_positive_float,
    check_positive_int,
)
from bayescore.core.progress import ProgressBar
from bayescore.models.statespace.posterior import (
    StateSpacePosterior,
    interpolate,
    marginals,
)
from bayescore.models.statespace.sde import discretise, state_space
from bayescore.models.tucker.cep import (
    CEPConfig,
    CEPSettings,
    CEPState,
    TuckerData,
    cep_epoch,
    cp_fitted,
    optimizer_for,
    partition_kernel,
    tucker_fitted,
)

logger = logging.getLogger(__name__)


def _damping(name: str, value: float) -> float:
    return check_interval(name, value, 0.0, 1.0, closed="left", hint=f"Pass e.g. {name}=0.5.")


def _cast_kernel(kernel: Any, dtype: Any) -> Any:
    cast = lambda x: jnp.asarray(x, dtype) if eqx.is_inexact_array(x) else x  # noqa: E731
    return jax.tree.map(cast, kernel)


class FunctionalTucker(eqx.Module):
    r"""The functional Tucker (or CP) model; see the module docstring.

    Attributes:
        ranks: :math:`(r_1, \dots, r_K)`; CP needs them equal.
        kernels: one GPJax kernel per mode (``Matern12``, ``Matern32``, ``Matern52`` or a sum),
            shared by the mode's :math:`r_k` component functions.
        noise_shape, noise_rate: :math:`a_0, b_0` of the Gamma prior on the noise precision.
        core_scale: :math:`s`, the prior standard deviation of the core entries (Tucker).
        cp: the CP model (core fixed to the all-ones super-diagonal).

    Example:
        >>> import gpjax as gpx, jax, jax.numpy as jnp
        >>> from bayescore.models.tucker import FunctionalTucker
        >>> x = jax.random.uniform(jax.random.key(0), (60, 2))
        >>> y = jnp.sin(3 * x[:, 0]) * jnp.cos(2 * x[:, 1])
        >>> model = FunctionalTucker(2, [gpx.kernels.Matern32(lengthscale=0.3)] * 2)
        >>> fit = model.fit(x, y, num_epochs=30, learn_hyperparameters=False, progress=False)
        >>> mean, variance = fit.predict(x[:5])
        >>> bool(jnp.sqrt(jnp.mean((mean - y[:5]) ** 2)) < 0.05), variance.shape
        (True, (5,))
    """

    ranks: tuple[int, ...] = eqx.field(static=True)
    kernels: tuple[Any, ...]
    noise_shape: float = eqx.field(static=True)
    noise_rate: float = eqx.field(static=True)
    core_scale: float = eqx.field(static=True)
    cp: bool = eqx.field(static=True)

    def __init__(
        self,
        ranks: int | Sequence[int],
        kernels: Any | Sequence[Any],
        *,
        noise_shape: float = 1.0,
        noise_rate: float = 1.0,
        core_scale: float = 1.0,
        cp: bool = False,
    ):
        if isinstance(ranks, int | np.integer) or not isinstance(ranks, Sequence | np.ndarray):
            rank_list = None
            check_positive_int("ranks", ranks)
        else:
            rank_list = list(ranks)
        kernel_list = list(kernels) if isinstance(kernels, Sequence) else None
        if rank_list is None and kernel_list is None:
            raise ArgumentError(
                "The number of modes is unknown: pass ranks as a tuple (one per mode) or "
                "kernels as a list (one per mode)."
            )
        num_modes = len(rank_list) if rank_list is not None else len(kernel_list)
        if num_modes == 0:
            raise ArgumentError("ranks and kernels must name at least one mode.")
        if rank_list is None:
            rank_list = [ranks] * num_modes
        if kernel_list is None:
            kernel_list = [kernels] * num_modes
        if len(rank_list) != len(kernel_list):
            raise ArgumentError(
                f"ranks has {len(rank_list)} modes but kernels has {len(kernel_list)}. Pass one "
                "rank and one kernel per mode."
            )
        self.ranks = tuple(check_positive_int("ranks", r) for r in rank_list)
        if cp and len(set(self.ranks)) != 1:
            raise ArgumentError(
                f"The CP model needs the same rank in every mode, got ranks={self.ranks}."
            )
        for kernel in kernel_list:
            state_space(kernel)  # raises ArgumentError for kernels without an SDE form
        self.kernels = tuple(kernel_list)
        self.noise_shape = check_positive_float("noise_shape", noise_shape)
        self.noise_rate = check_positive_float("noise_rate", noise_rate)
        self.core_scale = check_positive_float("core_scale", core_scale)
        self.cp = bool(cp)

    @property
    def num_modes(self) -> int:
        """Number of modes ``K``."""
        return len(self.ranks)

    def _data(
        self, indexes: ArrayLike, y: ArrayLike | None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        indexes = np.asarray(indexes)
        if indexes.ndim != 2 or indexes.shape[1] != self.num_modes or indexes.shape[0] == 0:
            raise ShapeError(
                f"indexes must have shape (num_entries, {self.num_modes}) (one column per "
                f"mode), got {indexes.shape}."
            )
        if indexes.dtype.kind not in "biuf":
            raise DataError(f"indexes must be real numbers, got dtype {indexes.dtype}.")
        bad = ~np.isfinite(indexes).all(axis=1)
        if bad.any():
            raise DataError(
                f"indexes has NaN or inf in rows {np.nonzero(bad)[0][:5].tolist()}. Drop those "
                "entries or give them finite indexes."
            )
        if y is None:
            return indexes, None
        y = np.asarray(y)
        if y.dtype.kind not in "biuf":
            raise DataError(f"y must be real numbers, got dtype {y.dtype}.")
        if y.ndim != 1 or y.shape[0] != indexes.shape[0]:
            raise ShapeError(
                f"y must have shape ({indexes.shape[0]},) (one value per row of indexes), got "
                f"{y.shape}."
            )
        bad = ~np.isfinite(y)
        if bad.any():
            raise DataError(
                f"y has NaN or inf at entries {np.nonzero(bad)[0][:5].tolist()}. Drop those "
                "entries: missing values are simply not passed."
            )
        return indexes, y

    def _grids(
        self, indexes: np.ndarray, dtype: Any
    ) -> tuple[tuple[Array, ...], tuple[Array, ...]]:
        grids, positions = [], []
        for mode in range(self.num_modes):
            grid, position = np.unique(indexes[:, mode], return_inverse=True)
            grids.append(jnp.asarray(grid, dtype))
            positions.append(jnp.asarray(position.reshape(-1), jnp.int32))
        return tuple(grids), tuple(positions)

    def _fixed_functions(
        self, fixed_functions: Sequence[ArrayLike] | None, grids: Sequence[Array], dtype: Any
    ) -> tuple[Array, ...] | None:
        if fixed_functions is None:
            return None
        fixed_functions = [jnp.asarray(f, dtype) for f in fixed_functions]
        expected = [(grid.shape[0], rank) for grid, rank in zip(grids, self.ranks, strict=True)]
        if [tuple(f.shape) for f in fixed_functions] != expected:
            raise ShapeError(
                f"fixed_functions must be {self.num_modes} arrays of shapes {expected} (each "
                "mode's function values at its sorted unique index values); got "
                f"{[tuple(f.shape) for f in fixed_functions]}."
            )
        return tuple(fixed_functions)

    def fit(
        self,
        indexes: Float[ArrayLike, "entry mode"],
        y: Float[ArrayLike, " entry"],
        *,
        key: Any = 0,
        num_epochs: int = 100,
        num_restarts: int = 1,
        restart_epochs: int = 10,
        tol: float = 1e-5,
        damping: float | tuple[float, float, float] = 0.5,
        learn_hyperparameters: bool = True,
        hyperparameter_steps: int = 5,
        hyperparameter_learning_rate: float = 0.05,
        learn_noise: bool = True,
        initial_noise_variance: float | None = None,
        fixed_functions: Sequence[ArrayLike] | None = None,
        parallel: bool = False,
        chunk_size: int | None = None,
        progress: bool = True,
    ) -> TuckerFit:
        r"""Fit by conditional EP (:mod:`bayescore.models.tucker.cep`), one compiled epoch.

        Args:
            indexes: ``(N, K)`` continuous indexes of the observed entries.
            y: ``(N,)`` their values.
            key: seed of the random initial function values (uniform on [0, 1], as the
                reference recommends) and core (standard normal).
            num_epochs: sweeps at most (of the chosen start, its first ``restart_epochs``
                included).
            num_restarts: random starts (keys split from ``key``). Conditional EP for a
                low-rank Tucker/CP model has local optima (component functions are
                exchangeable and the fit is multilinear), and which one a start reaches
                shows early. So each start runs ``restart_epochs`` sweeps, and the one with
                the lowest training RMSE (the highest fitted likelihood) continues;
                ``1``: the single start from ``key``.
            restart_epochs: sweeps of each start before the choice.
            tol: stop when the relative change of the training predictive means in an
                epoch falls below ``tol``.
            damping: :math:`\rho` for all messages, or ``(functions, core, noise)``.
            learn_hyperparameters: learn each mode's kernel by ``hyperparameter_steps``
                Adam steps per epoch on its state-space evidence (see ``cep``).
            hyperparameter_steps: Adam steps per mode and epoch.
            hyperparameter_learning_rate: Adam's step size.
            learn_noise: update :math:`q(\tau)`; if ``False``, the noise precision is
                known: :math:`\tau = a_0/b_0`.
            initial_noise_variance: :math:`v_0`; the noise message starts as if the
                residuals had variance :math:`v_0`, so :math:`q(\tau)` starts at
                :math:`\mathrm{Gamma}(a_0 + N/2, b_0 + N v_0/2)`. Default
                :math:`0.1\,\mathrm{Var}(y)`. (Starting from the prior, as the reference
                does with :math:`\mathbb E\tau = 1`, treats unstandardised data as noise
                and can leave CEP at a fixed point with pruned components.)
            fixed_functions: hold the functions at these values (one ``(N_k, r_k)`` array per
                mode, on the sorted unique index values) and fit only the core and noise.
            parallel: smooth with the associative-scan filter/smoother.
            chunk_size: entries per chunk in the message sums (default: automatic, at most
                about 32 MiB of per-entry factors and per-row products at a time; see
                :mod:`~bayescore.models.tucker.moments`).
            progress: show a progress bar.

        Returns:
            :class:`TuckerFit`.
        """
        indexes, y = self._data(indexes, y)
        dtype = jnp.result_type(float)
        num_epochs = check_positive_int("num_epochs", num_epochs)
        tol = check_positive_float("tol", tol, allow_zero=True)
        if isinstance(damping, Sequence):
            if len(damping) != 3:
                raise ArgumentError(
                    f"damping must be one number or (functions, core, noise), got {damping!r}."
                )
            damping_functions, damping_core, damping_noise = damping
        else:
            damping_functions = damping_core = damping_noise = damping
        grids, positions = self._grids(indexes, dtype)
        fixed = self._fixed_functions(fixed_functions, grids, dtype)
        config = CEPConfig(
            ranks=self.ranks,
            cp=self.cp,
            learn_hyperparameters=bool(learn_hyperparameters) and fixed is None,
            hyperparameter_steps=check_positive_int("hyperparameter_steps", hyperparameter_steps),
            learn_noise=bool(learn_noise),
            update_functions=fixed is None,
            parallel=bool(parallel),
            chunk_size=None if chunk_size is None else check_positive_int("chunk_size", chunk_size),
        )
        settings = CEPSettings(
            *(
                jnp.asarray(value, dtype)
                for value in (
                    _damping("damping", damping_functions),
                    _damping("damping", damping_core),
                    _damping("damping", damping_noise),
                    1.0 / self.core_scale**2,
                    self.noise_shape,
                    self.noise_rate,
                    check_positive_float(
                        "hyperparameter_learning_rate", hyperparameter_learning_rate
                    ),
                )
            )
        )
        data = TuckerData(jnp.asarray(y, dtype), positions, grids)
        if initial_noise_variance is None:
            initial_noise_variance = 0.1 * float(np.var(y)) or 1.0
        initial_noise_variance = check_positive_float(
            "initial_noise_variance", initial_noise_variance
        )
        num_restarts = check_positive_int("num_restarts", num_restarts)
        restart_epochs = min(check_positive_int("restart_epochs", restart_epochs), num_epochs)
        if num_restarts == 1:
            keys, restart_epochs = [as_key(key)], num_epochs
        else:
            keys = jax.random.split(as_key(key), num_restarts)
        total = num_epochs + (num_restarts - 1) * restart_epochs
        with ProgressBar(total, enabled=progress, description="CEP") as bar:
            best = None
            for start_key in keys:
                state = self._initial_state(
                    config, data, start_key, fixed, initial_noise_variance, settings
                )
                run = _run_epochs(config, settings, state, data, 0, restart_epochs, tol, bar)
                # The lowest training RMSE; a start that diverged (non-finite) is never chosen.
                score = run[1]["train_rmse"][-1]
                score = score if math.isfinite(score) else math.inf
                if best is None or score < best[0]:
                    best = (score, run)
            state, history, posteriors, stopped = best[1]
            if not stopped and restart_epochs < num_epochs:
                state, more, posteriors, _ = _run_epochs(
                    config, settings, state, data, restart_epochs, num_epochs, tol, bar
                )
                for name, values in more.items():
                    history[name].extend(values)
        model = eqx.tree_at(lambda m: m.kernels, self, tuple(state.kernels))
        return TuckerFit(
            model=model,
            grids=grids,
            posteriors=None if fixed is not None else posteriors,
            fixed_functions=fixed,
            core_mean=state.core_mean,
            core_covariance=state.core_covariance,
            noise_shape=state.noise_shape,
            noise_rate=state.noise_rate,
            indexes=jnp.asarray(indexes, dtype),
            y=data.y,
            history={name: np.asarray(values) for name, values in history.items()},
        )

    def _initial_state(
        self,
        config: CEPConfig,
        data: TuckerData,
        key: Any,
        fixed: tuple[Array, ...] | None,
        initial_noise_variance: float,
        settings: CEPSettings,
    ) -> CEPState:
        dtype = data.y.dtype
        keys = jax.random.split(key, self.num_modes + 1)
        sizes = [grid.shape[0] for grid in data.grids]
        if fixed is None:
            means = tuple(
                jax.random.uniform(k, (n, r), dtype)
                for k, n, r in zip(keys[:-1], sizes, self.ranks, strict=True)
            )
        else:
            means = fixed
        covariances = tuple(
            jnp.zeros((n, r, r), dtype) for n, r in zip(sizes, self.ranks, strict=True)
        )
        size = math.prod(self.ranks)
        if self.cp:
            core_mean = jnp.ones(self.ranks[0], dtype)
            core_covariance = jnp.zeros((self.ranks[0],) * 2, dtype)
        else:
            core_mean = jax.random.normal(keys[-1], (size,), dtype)
            core_covariance = jnp.zeros((size, size), dtype)
        kernels = tuple(_cast_kernel(kernel, dtype) for kernel in self.kernels)
        optimizer = optimizer_for(settings.hyperparameter_learning_rate)
        num_entries = data.y.shape[0]
        noise_message = jnp.array(
            [0.5 * num_entries, 0.5 * num_entries * initial_noise_variance], dtype
        ) * float(config.learn_noise)  # a known precision stays at a0 / b0
        return CEPState(
            kernels=kernels,
            optimizer_states=tuple(optimizer.init(partition_kernel(k)[0]) for k in kernels),
            site_precisions=tuple(
                jnp.zeros((n, r, r), dtype) for n, r in zip(sizes, self.ranks, strict=True)
            ),
            site_shifts=tuple(
                jnp.zeros((n, r), dtype) for n, r in zip(sizes, self.ranks, strict=True)
            ),
            means=means,
            covariances=covariances,
            core_message_precision=jnp.zeros((size, size), dtype),
            core_message_shift=jnp.zeros(size, dtype),
            core_mean=core_mean,
            core_covariance=core_covariance,
            noise_message=noise_message,
            noise_shape=self.noise_shape + noise_message[0],
            noise_rate=self.noise_rate + noise_message[1],
            fitted=jnp.zeros_like(data.y),
        )

    def numpyro_model(
        self,
        indexes: Float[ArrayLike, "entry mode"],
        *,
        fixed_functions: Sequence[ArrayLike] | None = None,
        batch_size: int | None = None,
    ) -> Callable[..., None]:
        r"""The model as a NumPyro function ``model(y=None)`` over the entries at ``indexes``.

        Sites: ``core`` (Tucker; ``(prod r_k,)``, :math:`N(0, s^2 I)`), per mode
        ``innovations_k`` (``(N_k, D_k)`` standard normal) and the deterministic
        ``function_k`` (``(N_k, r_k)``, the functions at the mode's sorted unique index
        values), ``noise_precision`` (:math:`\mathrm{Gamma}(a_0, b_0)`) and the observed
        ``y`` in the plate ``"data"``. The GP prior is the state-space Markov chain,
        non-centred: :math:`x_s = \bar A_s x_{s-1} + Q_s^{1/2}\varepsilon_s` (with
        :math:`\bar A_0 = 0`, :math:`Q_0 = P_\infty`), :math:`U^k_s = H x_s` — exact, and
        :math:`O(N_k D_k^2)` per evaluation. Kernel hyperparameters are fixed at this model's
        values (a fitted model's :attr:`TuckerFit.model` carries the learned ones).

        Args:
            indexes: ``(N, K)`` indexes of the entries.
            fixed_functions: hold the functions at these values (as in :meth:`fit`): the model
                is then over the core and the noise only.
            batch_size: subsample the ``"data"`` plate (``subsample_size``) for
                stochastic-gradient backends.

        Example:
            >>> import gpjax as gpx, jax.numpy as jnp
            >>> import bayescore as bc
            >>> from bayescore.models.tucker import FunctionalTucker
            >>> model = FunctionalTucker((2, 2), [gpx.kernels.Matern12()] * 2)
            >>> x = jnp.array([[0.0, 0.0], [0.5, 1.0], [1.0, 0.5]])
            >>> target = bc.Target.from_numpyro(model.numpyro_model(x), jnp.ones(3))
            >>> sorted(site.name for site in target.latent)
            ['core', 'innovations_0', 'innovations_1', 'noise_precision']
        """
        indexes, _ = self._data(indexes, None)
        dtype = jnp.result_type(float)
        grids, positions = self._grids(indexes, dtype)
        fixed = self._fixed_functions(fixed_functions, grids, dtype)
        num_entries = indexes.shape[0]
        if batch_size is not None:
            batch_size = min(check_positive_int("batch_size", batch_size), num_entries)
        chains = [
            _markov_chain(_cast_kernel(kernel, dtype), rank, grid)
            for kernel, rank, grid in zip(self.kernels, self.ranks, grids, strict=True)
        ]
        ranks, cp, core_scale = self.ranks, self.cp, self.core_scale
        noise_shape, noise_rate = self.noise_shape, self.noise_rate

        def model(y=None):
            if not cp:
                core = numpyro.sample(
                    "core", dist.Normal(0.0, core_scale).expand([math.prod(ranks)]).to_event(1)
                )
            functions = []
            for mode, (transition, root, observation) in enumerate(chains):
                if fixed is not None:
                    functions.append(fixed[mode])
                    continue
                innovations = numpyro.sample(
                    f"innovations_{mode}",
                    dist.Normal(0.0, 1.0).expand(list(root.shape[:2])).to_event(2),
                )

                def step(state, inputs):
                    transition, root, innovation = inputs
                    state = transition @ state + root @ innovation
                    return state, state

                start = jnp.zeros(root.shape[-1], root.dtype)
                _, states = jax.lax.scan(step, start, (transition, root, innovations))
                functions.append(numpyro.deterministic(f"function_{mode}", states @ observation.T))
            precision = numpyro.sample("noise_precision", dist.Gamma(noise_shape, noise_rate))
            with numpyro.plate("data", num_entries, subsample_size=batch_size) as entries:
                entry_means = [f[p[entries]] for f, p in zip(functions, positions, strict=True)]
                if cp:
                    mean = cp_fitted(entry_means)
                else:
                    mean = tucker_fitted(core, ranks, entry_means)
                observed = None if y is None else jnp.asarray(y)[entries]
                numpyro.sample("y", dist.Normal(mean, jax.lax.rsqrt(precision)), obs=observed)

        return model


@eqx.filter_jit
def _markov_chain(kernel: Any, rank: int, grid: Array) -> tuple[Array, Array, Array]:
    r""":math:`(\bar A_s, Q_s^{1/2}, H)` of a mode's prior chain; the root by eigenvalues, so a
    near-singular :math:`Q_s` (close index values) is fine."""
    sde = state_space(kernel, rank, dtype=grid.dtype)
    transition, noise = discretise(sde, grid)
    values, vectors = jnp.linalg.eigh(noise)
    root = vectors * jnp.sqrt(jnp.maximum(values, 0.0))[..., None, :]
    return transition, root, sde.observation


def _run_epochs(
    config: CEPConfig,
    settings: CEPSettings,
    state: CEPState,
    data: TuckerData,
    first_epoch: int,
    end_epoch: int,
    tol: float,
    bar: ProgressBar,
) -> tuple[CEPState, dict[str, list[float]], tuple[StateSpacePosterior, ...], bool]:
    """CEP sweeps ``first_epoch, ..., end_epoch - 1``; the state, their history, the last
    posteriors and whether the sweeps stopped early (converged within ``tol`` or diverged)."""
    history: dict[str, list[float]] = {}
    posteriors: tuple[StateSpacePosterior, ...] = ()
    for epoch in range(first_epoch, end_epoch):
        state, info, posteriors = _compiled_epoch(config, settings, state, data)
        values = {name: float(value) for name, value in info._asdict().items()}
        for name, value in values.items():
            history.setdefault(name, []).append(value)
        bar.advance(1, rmse=values["train_rmse"], change=values["change"])
        if not math.isfinite(values["train_rmse"]):
            logger.warning("CEP diverged at epoch %d (non-finite fit); stopping.", epoch)
            return state, history, posteriors, True
        if epoch > 0 and values["change"] < tol:
            return state, history, posteriors, True
    return state, history, posteriors, False


@eqx.filter_jit
def _compiled_epoch(config: CEPConfig, settings: CEPSettings, state: CEPState, data: TuckerData):
    return cep_epoch(config, settings, state, data)


class TuckerFit(eqx.Module):
    r"""A fitted functional Tucker/CP model: :math:`q(U^k)`, :math:`q(W)`, :math:`q(\tau)`.

    Attributes:
        model: the :class:`FunctionalTucker` with the learned kernels.
        grids: each mode's sorted unique training index values.
        posteriors: each mode's state-space posterior (``None`` with fixed functions).
        fixed_functions: the functions held fixed in the fit, or ``None``.
        core_mean, core_covariance: :math:`q(W)` (CP: ones and zeros).
        noise_shape, noise_rate: :math:`q(\tau) = \mathrm{Gamma}(a, b)`.
        indexes, y: the training entries.
        history: per epoch ``train_rmse``, ``change`` (relative change of the training
            predictive means), ``log_evidence`` (sum of the modes' state-space evidences) and
            ``noise_precision``.
    """

    model: FunctionalTucker
    grids: tuple[Array, ...]
    posteriors: tuple[StateSpacePosterior, ...] | None
    fixed_functions: tuple[Array, ...] | None
    core_mean: Array
    core_covariance: Array
    noise_shape: Array
    noise_rate: Array
    indexes: Array
    y: Array
    history: dict[str, np.ndarray]

    @property
    def noise_precision(self) -> Array:
        r""":math:`\mathbb E[\tau] = a/b`."""
        return self.noise_shape / self.noise_rate

    def function_moments(
        self, mode: int, values: Float[ArrayLike, " query"]
    ) -> tuple[Float[Array, "query rank"], Float[Array, "query rank rank"]]:
        r"""Mean and covariance of :math:`U^k` at any index values of mode ``mode``.

        Example:
            >>> import gpjax as gpx, jax, jax.numpy as jnp
            >>> from bayescore.models.tucker import FunctionalTucker
            >>> x = jax.random.uniform(jax.random.key(1), (40, 1))
            >>> fit = FunctionalTucker(1, [gpx.kernels.Matern32()], cp=True).fit(
            ...     x, jnp.sin(4 * x[:, 0]), num_epochs=3, learn_hyperparameters=False,
            ...     progress=False)
            >>> mean, cov = fit.function_moments(0, jnp.array([0.25, 2.0]))
            >>> mean.shape, cov.shape
            ((2, 1), (2, 1, 1))
        """
        if not 0 <= mode < self.model.num_modes:
            raise ArgumentError(f"mode must be in [0, {self.model.num_modes}), got {mode}.")
        values = jnp.asarray(values, self.indexes.dtype)
        if self.posteriors is None:
            raise ArgumentError(
                "This fit held the functions fixed; they are known only at the training index "
                "values (fit.fixed_functions)."
            )
        return _function_moments(
            self.model.kernels[mode], self.model.ranks[mode], self.posteriors[mode], values
        )

    def predict(
        self,
        indexes: Float[ArrayLike, "query mode"],
        *,
        include_noise: bool = False,
        batch_size: int = 4096,
    ) -> tuple[Float[Array, " query"], Float[Array, " query"]]:
        r"""Predictive mean and variance of :math:`f` (or of :math:`y`) at any indexes.

        :math:`\mathbb E f = \mu_W^\top\bigotimes_k m_k`,
        :math:`\mathbb V f = \langle \mathbb E[ww^\top], \bigotimes_k \mathbb E[U^kU^{k\top}]
        \rangle - (\mathbb E f)^2`, with :math:`(m_k, \mathbb E[U^kU^{k\top}])` from the
        state-space interpolation at each index; plus :math:`1/\mathbb E[\tau]` with
        ``include_noise``. Queries are processed ``batch_size`` at a time.

        Example:
            >>> import gpjax as gpx, jax, jax.numpy as jnp
            >>> from bayescore.models.tucker import FunctionalTucker
            >>> x = jax.random.uniform(jax.random.key(1), (40, 1))
            >>> fit = FunctionalTucker(1, [gpx.kernels.Matern32()], cp=True).fit(
            ...     x, jnp.sin(4 * x[:, 0]), num_epochs=3, learn_hyperparameters=False,
            ...     progress=False)
            >>> mean, variance = fit.predict(jnp.array([[0.3], [5.0]]))
            >>> mean.shape, bool(variance[1] > variance[0])
            ((2,), True)
        """
        indexes, _ = self.model._data(indexes, None)
        indexes = jnp.asarray(indexes, self.indexes.dtype)
        batch_size = check_positive_int("batch_size", batch_size)
        model = self.model
        moments = []
        for mode in range(model.num_modes):
            if self.posteriors is None:
                grid = self.grids[mode]
                position = jnp.searchsorted(grid, indexes[:, mode])
                position = jnp.clip(position, 0, grid.shape[0] - 1)
                if not bool(jnp.all(grid[position] == indexes[:, mode])):
                    raise ArgumentError(
                        "This fit held the functions fixed; it predicts only at training index "
                        "values."
                    )
                mean = self.fixed_functions[mode][position]
                moments.append((mean, jnp.zeros(mean.shape + mean.shape[-1:], mean.dtype)))
            else:
                moments.append(self.function_moments(mode, indexes[:, mode]))
        mean, variance = _combine(
            model.ranks, model.cp, self.core_mean, self.core_covariance, moments, batch_size
        )
        if include_noise:
            variance = variance + 1.0 / self.noise_precision
        return mean, variance

    def numpyro_model(
        self, *, fix_functions: bool = False, batch_size: int | None = None
    ) -> Callable[..., None]:
        """The NumPyro model on the training indexes with the learned kernels.

        With ``fix_functions`` the functions are held at their posterior means (or at the
        fit's fixed functions), leaving the core and the noise. See
        :meth:`FunctionalTucker.numpyro_model`; call it as ``model(y)``.

        Example:
            >>> import gpjax as gpx, jax, jax.numpy as jnp
            >>> from bayescore.models.tucker import FunctionalTucker
            >>> x = jax.random.uniform(jax.random.key(1), (40, 1))
            >>> fit = FunctionalTucker(1, [gpx.kernels.Matern32()], cp=True).fit(
            ...     x, jnp.sin(4 * x[:, 0]), num_epochs=3, learn_hyperparameters=False,
            ...     progress=False)
            >>> callable(fit.numpyro_model(fix_functions=True))
            True
        """
        fixed = None
        if fix_functions:
            fixed = self.fixed_functions
            if fixed is None:
                fixed = tuple(
                    marginals(
                        state_space(kernel, rank, dtype=posterior.grid.dtype),
                        posterior.smoothed.means,
                        posterior.smoothed.covariances,
                    )[0]
                    for kernel, rank, posterior in zip(
                        self.model.kernels, self.model.ranks, self.posteriors, strict=True
                    )
                )
        return self.model.numpyro_model(self.indexes, fixed_functions=fixed, batch_size=batch_size)


@eqx.filter_jit
def _function_moments(kernel, rank, posterior, values):
    sde = state_space(kernel, rank, dtype=values.dtype)
    return marginals(sde, *interpolate(sde, posterior, values))


@eqx.filter_jit
def _combine(ranks, cp, core_mean, core_covariance, moments, batch_size):
    means = [m for m, _ in moments]
    seconds = [c + m[:, :, None] * m[:, None, :] for m, c in moments]
    if cp:
        mean = cp_fitted(means)
        product = seconds[0]
        for second in seconds[1:]:
            product = product * second
        return mean, jnp.maximum(product.sum((-1, -2)) - mean**2, 0.0)
    core_second = (core_covariance + jnp.outer(core_mean, core_mean)).reshape(ranks + ranks)
    mean = tucker_fitted(core_mean, ranks, means)

    def second_moment(seconds):
        tensor = core_second
        for second in seconds:
            # Contract the leading remaining row axis and its matching column axis.
            tensor = jnp.tensordot(second, tensor, axes=([0, 1], [0, tensor.ndim // 2]))
        return tensor

    second = jax.lax.map(lambda s: second_moment(s), seconds, batch_size=batch_size)
    return mean, jnp.maximum(second - mean**2, 0.0)
