"""numba's ``njit`` for the few loops numpy cannot express cheaply.

Counting repeats and character n-gram matches are tight loops over a few hundred items
per sample; as numpy calls they cost 10x more in call overhead than in arithmetic. The
compiled functions are cached on disk next to this package (``cache=True``), so only
the first process on a machine pays the ~1 s compile, and they release the GIL.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

import numba

__all__ = ["jit"]

F = TypeVar("F", bound=Callable[..., Any])


def jit(fn: F) -> F:
    """``numba.njit(cache=True, nogil=True)``, typed so mypy keeps ``fn``'s signature."""
    return cast(F, numba.njit(cache=True, nogil=True)(fn))
