"""The SDK: hand samples over and go on; a background thread delivers them."""

from .aio import AsyncJudgeClient
from .sync import JudgeClient

__all__ = ["JudgeClient", "AsyncJudgeClient"]
