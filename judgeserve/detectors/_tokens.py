"""The one tokenizer every detector shares, and the token/n-gram hashes built on it.

Tokens are runs of word characters, single CJK characters and single punctuation marks.
Whitespace is never part of a token, so re-wrapped text tokenizes the same way, and
splitting a text at a whitespace character splits its token list at the same place
(the memorization index relies on this). The tokenizer is a compiled regex: fast,
deterministic and identical in every process, unlike a model's subword tokenizer.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import numpy.typing as npt

__all__ = [
    "TOKEN_RE",
    "TOKENIZER_ID",
    "tokenize",
    "split_tokens",
    "token_spans",
    "token_ids",
    "stable_ids",
    "ngram_hashes",
]

# Scripts written without spaces: each character is a token, otherwise a whole Chinese
# sentence would be one "word" and no repetition inside it could ever be seen.
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002ffff"
TOKEN_RE = re.compile(rf"[{_CJK}]|[^\W{_CJK}]+|[^\w\s]")
# The same tokens for ASCII text at twice the speed (str.isascii() is O(1)). Unicode \s
# also matches the separators 0x1c-0x1f, which ASCII \s does not: named explicitly.
_ASCII_RE = re.compile(r"\w+|[^\w\s\x1c-\x1f]", re.ASCII)
# Stored in memorization indexes: an index built with another tokenizer must not be used.
TOKENIZER_ID = "judgeserve-regex-1"

U64 = npt.NDArray[np.uint64]


@lru_cache(maxsize=2048)
def tokenize(text: str) -> tuple[str, ...]:
    """The tokens of ``text``.

    Cached because several detectors tokenize each sample of a worker batch in turn; the
    size bounds memory (2048 texts of at most 64 KiB) and covers batches up to 2048.
    """
    return tuple(split_tokens(text))


def split_tokens(text: str) -> list[str]:
    """:func:`tokenize` without the cache, for bulk text such as training data."""
    return (_ASCII_RE if text.isascii() else TOKEN_RE).findall(text)


def token_spans(
    text: str, tokens: Sequence[str] | None = None, stop: int | None = None
) -> list[tuple[int, int]]:
    """Character ``(start, end)`` of ``tokens[:stop]`` (all tokens of ``text`` by default).

    Only whitespace lies between tokens, so each token is the first occurrence of its
    string after the previous one: ``str.find`` walks them 3x faster than ``finditer``.
    """
    if tokens is None:
        tokens = tokenize(text)
    spans = []
    pos = 0
    find = text.find
    for tok in tokens[:stop]:
        pos = find(tok, pos)
        end = pos + len(tok)
        spans.append((pos, end))
        pos = end
    return spans


def token_ids(tokens: tuple[str, ...] | list[str]) -> npt.NDArray[np.int64]:
    """Per-process ids (Python's salted ``hash``): equal tokens get equal ids within a process.

    Good for comparing tokens inside one text (repetition); never store them.
    """
    return np.fromiter(map(hash, tokens), dtype=np.int64, count=len(tokens))


# Stable ids must be the same in every process and on every machine, since they are
# stored in indexes. blake2b is slow-ish, so each distinct token is hashed once.
_stable: dict[str, int] = {}
_STABLE_CACHE_MAX = 4_000_000


def _stable_id(token: str) -> int:
    return int.from_bytes(
        hashlib.blake2b(token.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little"
    )


class _StableCache(dict[str, int]):
    def __missing__(self, token: str) -> int:
        value = self[token] = _stable_id(token)
        return value


_cache = _StableCache()


def stable_ids(tokens: tuple[str, ...] | list[str]) -> U64:
    """64-bit ids that are the same in every process (blake2b of the UTF-8 token)."""
    if len(_cache) > _STABLE_CACHE_MAX:  # bound memory on huge vocabularies
        _cache.clear()
    return np.fromiter(map(_cache.__getitem__, tokens), dtype=np.uint64, count=len(tokens))


_MUL = np.uint64(0x9E3779B97F4A7C15)  # golden-ratio multiplier: odd, well spread bits
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def _mix(x: U64) -> U64:
    # splitmix64's finalizer: every input bit affects every output bit, so the low and
    # high halves of the result are both usable as independent-looking hashes.
    x = x ^ (x >> np.uint64(30))
    x = x * _M1
    x = x ^ (x >> np.uint64(27))
    x = x * _M2
    return x ^ (x >> np.uint64(31))


def ngram_hashes(ids: U64, n: int) -> U64:
    """64-bit hash of every n-gram of stable ids (``len(ids) - n + 1`` of them).

    A polynomial over the ids (wrapping uint64 arithmetic) then a finalizer; deterministic
    across processes, so hashes can be written to an index and looked up later.
    """
    count = len(ids) - n + 1
    if count <= 0:
        return np.empty(0, dtype=np.uint64)
    h = ids[:count].copy()
    for j in range(1, n):
        h *= _MUL
        h ^= ids[j : j + count]
    return _mix(h)
