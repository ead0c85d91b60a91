"""Functional Bayesian Tucker/CP decomposition (FunBaT) with its conditional-EP solver.

:class:`FunctionalTucker` (``cp=True`` for the CP model) puts a state-space GP on each mode's
latent functions of a continuous index (Fang et al. 2024, ICLR). :meth:`FunctionalTucker.fit`
runs conditional EP with Kalman smoothing per mode (:mod:`bayescore.models.tucker.cep`) and
returns a :class:`TuckerFit` that predicts anywhere; :meth:`FunctionalTucker.numpyro_model`
gives the same model to every generic backend.

Example:
    >>> import gpjax as gpx, jax, jax.numpy as jnp
    >>> from bayescore.models.tucker import FunctionalTucker
    >>> x = jax.random.uniform(jax.random.key(0), (80, 2))
    >>> y = jnp.sin(3 * x[:, 0]) * jnp.exp(-x[:, 1])
    >>> fit = FunctionalTucker(1, [gpx.kernels.Matern32(lengthscale=0.3)] * 2, cp=True).fit(
    ...     x, y, num_epochs=40, key=0, progress=False)
    >>> bool(fit.history["train_rmse"].take(-1) < 0.05)
    True
"""

from bayescore.models.tucker.cep import (
    CEPConfig,
    CEPSettings,
    CEPState,
    EpochInfo,
    TuckerData,
    cep_epoch,
)
from bayescore.models.tucker.datasets import (
    TensorData,
    load_funbat,
    synthetic_cp,
    synthetic_cp_factors,
)
from bayescore.models.tucker.model import FunctionalTucker, TuckerFit
from bayescore.models.tucker.moments import segment_kron_sum

__all__ = [
    "CEPConfig",
    "CEPSettings",
    "CEPState",
    "EpochInfo",
    "FunctionalTucker",
    "TensorData",
    "TuckerData",
    "TuckerFit",
    "cep_epoch",
    "load_funbat",
    "segment_kron_sum",
    "synthetic_cp",
    "synthetic_cp_factors",
]
