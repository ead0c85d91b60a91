"""Inference backends. Each is a Method or Kernel that ``bc.sample`` runs on any Target."""

from bayescore.inference.nuts import NUTS, nuts

__all__ = ["NUTS", "nuts"]
