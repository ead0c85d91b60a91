"""The shared vocabulary: Target, Kernel/Method, driver, Result, errors.

Imports nothing else from bayescore.
"""

from bayescore.core import errors
from bayescore.core.driver import sample
from bayescore.core.errors import BayescoreError
from bayescore.core.kernel import Kernel, Method, as_method
from bayescore.core.result import Result, predict
from bayescore.core.target import Target

__all__ = [
    "BayescoreError",
    "Kernel",
    "Method",
    "Result",
    "Target",
    "as_method",
    "errors",
    "predict",
    "sample",
]
