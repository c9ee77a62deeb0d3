"""judgeserve: evaluate LLM fine-tuning runs beside the training loop.

The package root is the SDK surface: importing it never imports the server parts.
"""

from .client import AsyncJudgeClient, JudgeClient
from .exceptions import (
    APIError,
    ClientError,
    ConfigError,
    JudgeserveError,
    MissingExtraError,
)
from .schema import Alert, Sample, SampleIn, Score

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "JudgeClient",
    "AsyncJudgeClient",
    "Sample",
    "SampleIn",
    "Score",
    "Alert",
    "JudgeserveError",
    "ClientError",
    "APIError",
    "ConfigError",
    "MissingExtraError",
]
