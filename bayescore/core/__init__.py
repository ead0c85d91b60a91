"""The shared vocabulary: Target, Kernel/Method, driver, Result, errors.

Imports nothing else from bayescore.
"""

from bayescore.core import distributed, errors

# Join the multi-process run that BAYESCORE_* variables describe, if any, before the imports
# below: BlackJAX starts JAX's backend when imported, and jax.distributed cannot start after.
distributed.initialize()

from bayescore.core.driver import sample  # noqa: E402
from bayescore.core.errors import BayescoreError  # noqa: E402
from bayescore.core.kernel import Kernel, Method, as_method  # noqa: E402
from bayescore.core.result import Result, predict  # noqa: E402
from bayescore.core.target import Target  # noqa: E402

__all__ = [
    "BayescoreError",
    "Kernel",
    "Method",
    "Result",
    "Target",
    "as_method",
    "distributed",
    "errors",
    "predict",
    "sample",
]
