"""The HTTP API: validates what trainers send, queues it, and serves what was scored."""

from .app import create_app

__all__ = ["create_app"]
