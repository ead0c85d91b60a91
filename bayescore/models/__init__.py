"""Model primitives (state-space GPs, functional Tucker, PDE solvers, flows, higher-order
programs) live in subpackages here; each also exposes itself as a NumPyro model."""

from bayescore.models import flows, ho, pde, statespace, tucker

__all__ = ["flows", "ho", "pde", "statespace", "tucker"]
