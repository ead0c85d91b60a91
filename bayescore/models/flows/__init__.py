"""Normalizing flows: bijections (flowjax-compatible) and, as they arrive, flow distributions.

Every bijection subclasses :class:`flowjax.bijections.AbstractBijection`, so it composes with
flowjax's own (``Chain``, ``Invert``, coupling and autoregressive layers) and trains with
flowjax's fitting routines.
"""

from bayescore.models.flows.bijections import Planar, Radial, planar, radial
from bayescore.models.flows.smooth import SmoothMixture, smooth_mixture

__all__ = ["Planar", "Radial", "SmoothMixture", "planar", "radial", "smooth_mixture"]
