"""Build a run's memorization index from its training text, streaming.

Inputs are JSONL files (one JSON object per line; its ``text_field`` is one document)
or plain text files (each file one document). Files are read line by line, tokens are
hashed in batches of ~1M, and only the Bloom filter, the anchors and the record table
stay in memory: ~2 bytes per training token, so 100M tokens need ~200 MB.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import rbloom
from tqdm import tqdm

from ..exceptions import ConfigError
from ._ngram_index import ANCHOR_DTYPE, FORMAT, RECORD_DTYPE, VERSION, anchor_key, write_index
from ._tokens import TOKENIZER_ID, ngram_hashes, split_tokens, stable_ids

__all__ = ["build_index", "IndexStats", "DEFAULT_N", "DEFAULT_MIN_SPAN", "DEFAULT_FPR"]

DEFAULT_N = 8  # n-gram length for the overlap share (8-grams, as in the demo's story)
DEFAULT_MIN_SPAN = 50  # tokens copied verbatim to count as memorized (extraction literature)
DEFAULT_FPR = 0.002  # Bloom false-positive rate: ~1.6 bytes per n-gram
RECORD_CHARS = 4096  # training text is reread for confirmation in pieces of about this size
FLUSH_TOKENS = 1 << 20
JSONL_SUFFIXES = {".jsonl", ".ndjson"}
_WS = re.compile(r"\s")

# ((offset, source, start, length) of a record, its text)
Piece = tuple[tuple[int, int, int, int], str]
_Part = tuple[
    npt.NDArray[np.uint64], npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]
]


@dataclass
class IndexStats:
    """What :func:`build_index` did; ``bytes_per_token`` counts every index file."""

    path: str
    tokens: int
    ngrams: int
    documents: int
    skipped: int  # JSONL lines without a string ``text_field``
    records: int
    anchors: int
    bytes: int
    seconds: float
    fpr: float  # the target the Bloom filter was sized for
    fpr_estimate: float  # expected at the n-gram count actually inserted

    @property
    def bytes_per_token(self) -> float:
        return self.bytes / max(self.tokens, 1)

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / max(self.seconds, 1e-9)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {
            "bytes_per_token": self.bytes_per_token,
            "tokens_per_second": self.tokens_per_second,
        }


class _Builder:
    """Hashes tokens in large batches; n-grams may cross pieces but never documents."""

    def __init__(self, n: int, min_span: int, bloom: rbloom.Bloom) -> None:
        self.n, self.min_span, self.stride, self.bloom = n, min_span, min_span - n + 1, bloom
        self.parts: list[_Part] = []  # (ids, document, record, position in document)
        self.buffered = self.tokens = self.ngrams = self.docs = self.pos = 0
        self.keep = True
        self.records: list[tuple[int, int, int, int, int]] = []
        self.anchor_parts: list[npt.NDArray[np.void]] = []

    def add_doc(self, pieces: Sequence[Piece], continues: bool = False, keep: bool = False) -> None:
        """Add one document (or, with ``continues``, more of the current one).

        Records (for rereading) are kept when ``keep`` or the document has ``min_span``
        tokens: a shorter one cannot hold a memorized span, and records cost 21 bytes.
        """
        tokenized = [(meta, split_tokens(text)) for meta, text in pieces]
        if not continues:
            self.docs += 1
            self.pos = 0
            self.keep = keep or sum(len(t) for _, t in tokenized) >= self.min_span
        for meta, toks in tokenized:
            rid = -1
            if self.keep:
                rid = len(self.records)
                self.records.append((*meta, int(continues)))
                continues = True
            if toks:
                k = len(toks)
                doc = np.full(k, self.docs, dtype=np.int64)
                self.parts.append(
                    (stable_ids(toks), doc, np.full(k, rid), np.arange(self.pos, self.pos + k))
                )
                self.pos += k
                self.tokens += k
                self.buffered += k
        if self.buffered >= FLUSH_TOKENS:
            self.flush()

    def flush(self, final: bool = False) -> None:
        if not self.parts:
            return
        ids, doc, rec, pos = (np.concatenate(x) for x in zip(*self.parts, strict=True))
        n = self.n
        hashes = ngram_hashes(ids, n)
        m = len(hashes)
        valid = doc[:m] == doc[n - 1 :]  # the n-gram's first and last token share a document
        self.bloom.update(hashes[valid].tolist())
        self.ngrams += int(valid.sum())
        chosen = valid & (pos[:m] % self.stride == 0) & (rec[:m] >= 0)
        anchors = np.empty(int(chosen.sum()), dtype=ANCHOR_DTYPE)
        anchors["key"], anchors["record"] = anchor_key(hashes[chosen]), rec[:m][chosen]
        self.anchor_parts.append(anchors)
        # The last n-1 tokens start n-grams that are not complete yet: keep them.
        tail = slice(max(0, len(ids) - (n - 1)), None)
        self.parts = [] if final else [(ids[tail], doc[tail], rec[tail], pos[tail])]
        self.buffered = 0 if final else len(ids[tail])


def _kind(path: Path) -> str:
    return "jsonl" if path.suffix.lower() in JSONL_SUFFIXES else "text"


def _pieces(text: str) -> Iterator[tuple[int, int]]:
    """Character ranges of about RECORD_CHARS, cut at whitespace so no token is split."""
    start = 0
    while start < len(text):
        end = start + RECORD_CHARS
        if end < len(text):
            match = _WS.search(text, end)
            end = match.start() if match else len(text)
        yield start, min(end, len(text))
        start = end


def _read_jsonl(path: Path, source: int, text_field: str, builder: _Builder, bar: tqdm[Any]) -> int:
    skipped = offset = 0
    with path.open("rb") as f:
        for lineno, line in enumerate(f, 1):
            if line.strip():
                try:
                    obj = json.loads(line)
                except ValueError as e:
                    raise ConfigError(f"{path}:{lineno}: not valid JSON ({e})") from e
                text = obj.get(text_field) if isinstance(obj, dict) else None
                if isinstance(text, str):
                    pieces = [((offset, source, a, b - a), text[a:b]) for a, b in _pieces(text)]
                    builder.add_doc(pieces)
                else:
                    skipped += 1
            offset += len(line)
            bar.update(len(line))
    return skipped


def _read_text(path: Path, source: int, builder: _Builder, bar: tqdm[Any]) -> None:
    # Whole lines are grouped into pieces of >= RECORD_CHARS bytes; the file is one document.
    offset, chunk, size, continues = 0, [], 0, False
    with path.open("rb") as f:
        for line in f:
            chunk.append(line)
            size += len(line)
            if size >= RECORD_CHARS:
                text = b"".join(chunk).decode("utf-8", "replace")
                builder.add_doc([((offset, source, 0, size), text)], continues, keep=True)
                bar.update(size)
                offset, chunk, size, continues = offset + size, [], 0, True
        if chunk:
            text = b"".join(chunk).decode("utf-8", "replace")
            builder.add_doc([((offset, source, 0, size), text)], continues, keep=True)
            bar.update(size)


def _estimate_tokens(paths: Sequence[Path], text_field: str) -> int:
    """Tokens in all files, extrapolated from the first 4 MiB of each: sizes the filter."""
    total = 0.0
    for path in paths:
        size = path.stat().st_size
        with path.open("rb") as f:
            head = f.read(4 << 20)
        if _kind(path) == "jsonl":
            lines = head.split(b"\n")[:-1] if len(head) < size else head.split(b"\n")
            used = sum(len(x) + 1 for x in lines)
            count = 0
            for line in lines:
                try:
                    obj = json.loads(line)
                except ValueError:
                    continue
                text = obj.get(text_field) if isinstance(obj, dict) else None
                count += len(split_tokens(text)) if isinstance(text, str) else 0
        else:
            used, count = len(head), len(split_tokens(head.decode("utf-8", "replace")))
        total += count / max(used, 1) * size
    return int(total * 1.02) + 1000


def build_index(
    paths: Sequence[str | Path],
    out_dir: str | Path,
    *,
    text_field: str = "text",
    n: int = DEFAULT_N,
    min_span: int = DEFAULT_MIN_SPAN,
    fpr: float = DEFAULT_FPR,
    expected_tokens: int | None = None,
    progress: bool = True,
) -> IndexStats:
    """Index the training text in ``paths`` (``.jsonl``/``.ndjson`` or plain text) into ``out_dir``.

    ``out_dir`` is the run's index folder, ``get_settings().index_dir / run``; it is
    replaced atomically. ``min_span`` is the shortest copy the detector can confirm (and
    its default threshold for ``memorization.memorized``). The Bloom filter is sized
    from ``expected_tokens`` or, by default, an estimate from the files' first MiB.
    """
    sources = [Path(p).resolve() for p in paths]
    missing = [str(p) for p in sources if not p.is_file()]
    if not sources or missing:
        raise ConfigError(
            f"training file(s) {', '.join(missing)} do not exist"
            if missing
            else "no training files given"
        )
    if n < 2 or min_span < n:
        raise ConfigError(f"need 2 <= n <= min_span (got n={n}, min_span={min_span})")
    if not 0 < fpr < 0.5:
        raise ConfigError(f"fpr must lie in (0, 0.5), got {fpr}")
    started = time.perf_counter()
    expected = expected_tokens or _estimate_tokens(sources, text_field)
    bloom = rbloom.Bloom(max(expected, 1000), fpr, int)
    builder = _Builder(n, min_span, bloom)
    skipped = 0
    total_bytes = sum(p.stat().st_size for p in sources)
    with tqdm(
        total=total_bytes, unit="B", unit_scale=True, desc="indexing", disable=not progress
    ) as bar:
        for i, src in enumerate(sources):
            if _kind(src) == "jsonl":
                skipped += _read_jsonl(src, i, text_field, builder, bar)
            else:
                _read_text(src, i, builder, bar)
        builder.flush(final=True)
    anchors = np.concatenate([np.empty(0, ANCHOR_DTYPE), *builder.anchor_parts])
    anchors = anchors[np.argsort(anchors["key"], kind="stable")]
    records = np.array(builder.records, dtype=RECORD_DTYPE)
    # Theoretical false-positive rate at the count inserted (optimal k for the estimate).
    bits = bloom.size_in_bits
    k = max(1, round(bits / max(expected, 1000) * math.log(2)))
    fpr_estimate = (1 - math.exp(-k * builder.ngrams / bits)) ** k
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "tokenizer": TOKENIZER_ID,
        "n": n,
        "min_span": min_span,
        "stride": min_span - n + 1,
        "fpr": fpr,
        "fpr_estimate": fpr_estimate,
        "text_field": text_field,
        "tokens": builder.tokens,
        "ngrams": builder.ngrams,
        "documents": builder.docs,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "sources": [{"path": str(p), "size": p.stat().st_size, "kind": _kind(p)} for p in sources],
    }
    out = Path(out_dir)
    write_index(out, meta, bloom, anchors, records)
    size = sum(f.stat().st_size for f in out.iterdir() if f.is_file())
    return IndexStats(
        path=str(out),
        tokens=builder.tokens,
        ngrams=builder.ngrams,
        documents=builder.docs,
        skipped=skipped,
        records=len(records),
        anchors=len(anchors),
        bytes=size,
        seconds=time.perf_counter() - started,
        fpr=fpr,
        fpr_estimate=fpr_estimate,
    )
