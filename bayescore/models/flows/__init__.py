"""Normalizing flows: bijections, flow distributions and their training.

Every bijection subclasses :class:`flowjax.bijections.AbstractBijection` and every flow is a
flowjax ``Transformed`` distribution, so bayescore's layers (planar, radial, smooth mixtures
on intervals and tori) compose with flowjax's own (``Chain``, ``Invert``, coupling,
autoregressive and block-autoregressive layers), and :func:`to_numpyro` makes any flow a
NumPyro distribution. :func:`fit_to_data` (maximum likelihood) and :func:`fit_to_density`
(reverse KL) train them.
"""

from bayescore.models.flows.bijections import Planar, Radial, planar, radial
from bayescore.models.flows.flows import (
    block_neural_autoregressive_flow,
    coupling_flow,
    inverse_autoregressive_flow,
    masked_autoregressive_flow,
    planar_flow,
    radial_flow,
    smooth_flow,
    to_numpyro,
)
from bayescore.models.flows.score import sample_with_score
from bayescore.models.flows.smooth import SmoothCoupling, SmoothMixture, smooth_mixture
from bayescore.models.flows.train import fit_to_data, fit_to_density, unroll_layers

__all__ = [
    "Planar",
    "Radial",
    "SmoothCoupling",
    "SmoothMixture",
    "block_neural_autoregressive_flow",
    "coupling_flow",
    "fit_to_data",
    "fit_to_density",
    "inverse_autoregressive_flow",
    "masked_autoregressive_flow",
    "planar",
    "planar_flow",
    "radial",
    "radial_flow",
    "sample_with_score",
    "smooth_flow",
    "smooth_mixture",
    "to_numpyro",
    "unroll_layers",
]
