"""Schrödinger bridges: LightSB, Gaussian closed forms and the Schrödinger–Föllmer sampler.

All use the convention of the LightSB papers: the reference process is
:math:`dX_t = \\sqrt{\\varepsilon}\\,dW_t`, so ``epsilon`` is the Brownian variance per unit
time, the entropic OT cost is :math:`\\tfrac12\\|x-y\\|^2` with weight :math:`\\varepsilon` on
the KL term, and the reference conditional is :math:`N(x, \\varepsilon I)` (ott-jax's
``epsilon`` is :math:`2\\varepsilon`; torchcfm's ``sigma`` is :math:`\\sqrt{\\varepsilon}`).
"""

from bayescore.inference.bridge.follmer import schrodinger_follmer, score_drift, stein_drift
from bayescore.inference.bridge.gaussian import GaussianBridge, gaussian_bridge
from bayescore.inference.bridge.lightsb import LightSB, fit_lightsb, init_lightsb

__all__ = [
    "GaussianBridge",
    "LightSB",
    "fit_lightsb",
    "gaussian_bridge",
    "init_lightsb",
    "schrodinger_follmer",
    "score_drift",
    "stein_drift",
]
