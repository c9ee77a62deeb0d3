"""chrF (Popović 2015) exactly as sacrebleu computes it, with the n-gram counting compiled.

sacrebleu counts character n-grams with ``collections.Counter``: ~1.5 ms per 200-token
pair, too slow to score every sample. Here the same statistics (per order: hypothesis
n-grams, reference n-grams, matches) are counted in one compiled pass and handed to
sacrebleu's own ``CHRF._compute_f_score``, so the score is sacrebleu's chrF with its
default settings (character order 6, beta 2, whitespace ignored). The tests check that
the two agree on varied texts.

How: with whitespace removed and each character coded as one byte, position ``i`` of a
text gets one 48-bit key, its next six bytes. In sorted order, keys sharing an n-byte
prefix are adjacent, so one sorted array holds the n-grams of all six orders, and a
merge of the hypothesis and reference arrays counts ``min(hyp, ref)`` per n-gram. The
six bytes after the end are padded with 0x00 (hypothesis) and 0x01 (reference), which
never match each other. Characters outside ASCII get byte codes 128-255 from a table
filled as they are first seen; a pair using characters beyond it falls back to a
per-pair alphabet, and a pair with over 254 distinct characters to sacrebleu itself.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import numpy.typing as npt
from sacrebleu.metrics.chrf import CHRF

from ._jit import jit

__all__ = ["chrf", "chrf_batch"]

ORDER = 6
BETA = 2
_SACREBLEU = CHRF()  # default chrF: char_order=6, word_order=0, beta=2
U64 = npt.NDArray[np.uint64]


class _ByteCodes(dict[int, int]):
    """``str.translate`` table: ASCII stays itself, other characters get 128-255 on demand.

    Codes are never reassigned, so cached reference keys stay valid. NUL and 0x01 are
    remapped too because they are the padding bytes. When the table is full, unmapped
    characters become NUL, which :func:`_bytes` treats as "no single-byte coding".
    """

    def __init__(self) -> None:
        super().__init__({c: c for c in range(2, 128)})
        self._next = 128
        self._lock = threading.Lock()

    def __missing__(self, char: int) -> int:
        with self._lock:
            if char not in self:
                self[char] = self._next if self._next < 256 else 0
                self._next += 1
            return self[char]


_codes = _ByteCodes()


# The ASCII characters str.split() splits on (0x1c-0x1f too).
_ASCII_SPACE = bytes(c for c in range(128) if chr(c).isspace())


def _bytes(text: str) -> bytes | None:
    if text.isascii():
        # Deleting whitespace from the bytes costs half of splitting and joining the str.
        raw = text.encode("ascii").translate(None, _ASCII_SPACE)
        if b"\x00" not in raw and b"\x01" not in raw:
            return raw  # the table maps ASCII 2-127 to itself
    squeezed = "".join(text.split())
    coded = squeezed.translate(_codes).encode("latin-1")
    return None if b"\x00" in coded else coded


def _keys(chars: bytes, pad: bytes) -> U64:
    # Big-endian 8-byte windows at stride 1 read bytes i..i+7; >> 16 keeps i..i+5.
    if not chars:
        return np.empty(0, dtype=np.uint64)
    view = np.ndarray((len(chars),), dtype=">u8", buffer=chars + pad * 7, strides=(1,))
    keys: U64 = (view >> np.uint64(16)).astype(np.uint64)
    keys.sort()
    return keys


@lru_cache(maxsize=4096)
def _ref_keys(ref: str) -> tuple[U64, int] | None:
    # References repeat across checkpoints (the same probes), so their keys are cached.
    chars = _bytes(ref)
    return None if chars is None else (_keys(chars, b"\x01"), len(chars))


def _pair_keys(hyp: str, ref: str) -> tuple[U64, int, U64, int] | None:
    hb, cached = _bytes(hyp), _ref_keys(ref)
    if hb is not None and cached is not None:
        return _keys(hb, b"\x00"), len(hb), cached[0], cached[1]
    # Code this pair's characters as bytes 2..255 when it uses few enough of them.
    h, r = "".join(hyp.split()), "".join(ref.split())
    codes = np.frombuffer((h + r).encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    alphabet, inverse = np.unique(codes, return_inverse=True)
    if len(alphabet) > 254:
        return None
    mapped = (inverse + 2).astype(np.uint8).tobytes()
    return _keys(mapped[: len(h)], b"\x00"), len(h), _keys(mapped[len(h) :], b"\x01"), len(r)


# x > _Bk: x has a set bit above its lowest k bytes (numba keeps these uint64 constants).
_B0, _B1, _B2, _B3, _B4, _B5 = (np.uint64((1 << (8 * k)) - 1) for k in range(ORDER))


@jit
def _matches(kh: U64, kr: U64, out: npt.NDArray[np.float64]) -> None:
    """Matches per order of two sorted key arrays, in one merge pass over both.

    Walking the merged order, a key sharing ``same`` leading bytes with its predecessor
    continues the groups of orders ``1..same``; the groups of higher orders end there,
    each adding ``min(hypothesis count, reference count)`` to its order's matches. A
    group's counts are differences of the running totals since the group began.
    """
    h_at = np.zeros(ORDER, dtype=np.int64)  # running totals when each order's group began
    r_at = np.zeros(ORDER, dtype=np.int64)
    out[:] = 0.0
    i = j = 0
    nh, nr = len(kh), len(kr)
    prev = np.uint64(0)
    while i < nh or j < nr:
        from_hyp = j >= nr or (i < nh and kh[i] <= kr[j])
        key = kh[i] if from_hyp else kr[j]
        differing = ORDER  # trailing bytes in which key and prev differ
        if i + j > 0:
            # Compared, not shifted in a loop: a branch per byte mispredicts often.
            x = key ^ prev
            differing = (
                (x > _B0) + (x > _B1) + (x > _B2) + (x > _B3) + (x > _B4) + (x > _B5)
            )
        for n in range(ORDER - differing, ORDER):
            out[n] += min(i - h_at[n], j - r_at[n])
            h_at[n] = i
            r_at[n] = j
        if from_hyp:
            i += 1
        else:
            j += 1
        prev = key
    for n in range(ORDER):
        out[n] += min(i - h_at[n], j - r_at[n])


def _f_score(len_h: int, len_r: int, matches: npt.NDArray[np.float64]) -> float:
    """sacrebleu 2.x ``CHRF._compute_f_score`` (beta 2, no eps smoothing), inlined.

    Calling it through its statistics list cost as much as counting the matches; the
    tests compare every score with sacrebleu's own.
    """
    factor = BETA**2
    avg_prec = avg_rec = 0.0
    effective_order = 0
    for n, match in enumerate(matches.tolist(), 1):
        n_ref = len_r - n + 1
        # sacrebleu counts no hypothesis n-grams of an order the reference lacks.
        n_hyp = len_h - n + 1 if n_ref > 0 else 0
        if n_hyp > 0 and n_ref > 0:
            avg_prec += match / n_hyp
            avg_rec += match / n_ref
            effective_order += 1
    if effective_order == 0:
        return 0.0
    avg_prec /= effective_order
    avg_rec /= effective_order
    if not avg_prec + avg_rec:
        return 0.0
    score = (1 + factor) * avg_prec * avg_rec  # in sacrebleu's order, for equal floats
    score /= (factor * avg_prec) + avg_rec
    return 100 * score


def chrf_batch(pairs: Sequence[tuple[str, str]]) -> list[float]:
    """sacrebleu's sentence-level chrF (0-100) of each ``(hypothesis, reference)`` pair."""
    scores: list[float] = []
    matches = np.zeros(ORDER)
    for hyp, ref in pairs:
        keyed = _pair_keys(hyp, ref)
        if keyed is None:  # too many distinct characters for one byte each
            scores.append(float(_SACREBLEU.sentence_score(hyp, [ref]).score))
            continue
        kh, len_h, kr, len_r = keyed
        _matches(kh, kr, matches)
        scores.append(_f_score(len_h, len_r, matches))
    return scores


def chrf(hypothesis: str, reference: str) -> float:
    """sacrebleu's sentence-level chrF (0-100) of one pair."""
    return chrf_batch([(hypothesis, reference)])[0]
