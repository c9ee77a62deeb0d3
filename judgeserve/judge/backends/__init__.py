"""Judge backends, one module each; they all meet the :class:`JudgeBackend` Protocol.

Importing this package imports no model library: each backend imports torch, vLLM or
httpx only when it is instantiated.
"""

from .base import (
    JudgeBackend,
    backend_names,
    label_token_ids,
    load_backend,
    match_label,
    prompt_text,
    register_backend,
)

__all__ = [
    "JudgeBackend",
    "backend_names",
    "label_token_ids",
    "load_backend",
    "match_label",
    "prompt_text",
    "register_backend",
]
