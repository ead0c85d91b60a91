"""Inference backends. Each is a Method or Kernel that ``bc.sample`` runs on any Target."""

from bayescore.inference import bridge, programs, sgmcmc, vi
from bayescore.inference.langevin import MALA, MALT, ULA, Underdamped, mala, malt, ula, underdamped
from bayescore.inference.nuts import NUTS, nuts
from bayescore.inference.sgmcmc import psgld, sghmc, sgld, sgnht

__all__ = [
    "MALA",
    "MALT",
    "NUTS",
    "ULA",
    "bridge",
    "Underdamped",
    "mala",
    "malt",
    "nuts",
    "programs",
    "psgld",
    "sghmc",
    "sgld",
    "sgmcmc",
    "sgnht",
    "ula",
    "underdamped",
    "vi",
]
