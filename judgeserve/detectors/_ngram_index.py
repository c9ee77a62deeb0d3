"""The on-disk index of a run's training text that the memorization detector looks up.

Two structures, sized for 100M+ training tokens in a few hundred MB:

* ``ngrams.bloom`` — an rbloom Bloom filter of the hash of every token n-gram
  (``n = 8``): "is this n-gram in the training data?" in ~0.2 µs, ~1.6 bytes per n-gram
  at the default false-positive rate of 0.2%.
* ``anchors.npy`` — every ``stride``-th n-gram of each document (32-bit key, record
  number), sorted by key, with ``stride = min_span - n + 1``: any verbatim copy of
  ``min_span`` tokens covers ``stride`` consecutive n-grams, so at least one anchor.
  From the anchor's record (``records.npy``: file, byte offset, character range) the
  training text is reread and the copy confirmed token by token, so the memorized flag
  never rests on a hash.

The training files are not copied: the index points into them and refuses to load if
one went missing or changed size. ``meta.json`` holds the parameters, counts, and the
size and SHA-256 of every index file, so truncation or corruption is caught on load.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import rbloom

from ..exceptions import IndexFileError
from ._tokens import TOKENIZER_ID, ngram_hashes, split_tokens, stable_ids

__all__ = ["NgramIndex", "FORMAT", "VERSION", "RECORD_DTYPE", "ANCHOR_DTYPE", "sha256"]

FORMAT = "judgeserve-ngram-index"
VERSION = 1
FILES = ("ngrams.bloom", "anchors.npy", "records.npy")
# Where a record's text lies: in a plain-text source, bytes [offset, offset+length); in a
# JSONL source, characters [start, start+length) of the text field of the line at
# ``offset``. ``cont`` says the record continues the previous record's document.
RECORD_DTYPE = np.dtype(
    [("offset", "<u8"), ("source", "<u4"), ("start", "<u4"), ("length", "<u4"), ("cont", "u1")]
)
ANCHOR_DTYPE = np.dtype([("key", "<u4"), ("record", "<u4")])
U64 = npt.NDArray[np.uint64]


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def anchor_key(hashes: U64) -> npt.NDArray[np.uint32]:
    # The high half of the n-gram hash; the Bloom filter hashes the whole value again.
    return (hashes >> np.uint64(32)).astype(np.uint32)


class NgramIndex:
    """A loaded index: Bloom filter, anchors and records, plus the meta it was built with."""

    def __init__(
        self,
        path: Path,
        meta: dict[str, Any],
        bloom: rbloom.Bloom,
        anchors: npt.NDArray[np.void],
        records: npt.NDArray[np.void],
    ) -> None:
        self.path, self.meta, self.bloom = path, meta, bloom
        self.anchors, self.records = anchors, records
        self._anchor_keys = anchors["key"]
        self._cont = records["cont"].astype(bool)
        # Confirmation rereads a few records per memorized sample; keep recent ones.
        self._ids = lru_cache(maxsize=256)(self._record_ids)
        self._window = lru_cache(maxsize=64)(self._read_window)

    @property
    def n(self) -> int:
        return int(self.meta["n"])

    @property
    def min_span(self) -> int:
        return int(self.meta["min_span"])

    @classmethod
    def load(cls, path: Path) -> NgramIndex:
        """Load and verify an index folder; every problem raises :class:`IndexFileError`."""
        meta_path = path / "meta.json"
        hint = "rebuild it with `judgeserve index build --run RUN FILE`"
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except FileNotFoundError as e:
            raise IndexFileError(f"memorization index {path} has no meta.json; {hint}") from e
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise IndexFileError(
                f"memorization index file {meta_path} is unreadable ({e}); {hint}"
            ) from e
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise IndexFileError(f"{meta_path} is not a judgeserve memorization index; {hint}")
        if meta.get("version") != VERSION or meta.get("tokenizer") != TOKENIZER_ID:
            raise IndexFileError(
                f"{meta_path} was built by another judgeserve version "
                f"(format {meta.get('version')}, tokenizer {meta.get('tokenizer')}); {hint}"
            )
        for name in FILES:
            file = path / name
            expected = meta.get("files", {}).get(name, {})
            if not file.is_file():
                raise IndexFileError(f"memorization index file {file} is missing; {hint}")
            size = file.stat().st_size
            if size != expected.get("size") or sha256(file) != expected.get("sha256"):
                raise IndexFileError(
                    f"memorization index file {file} is corrupt (size {size}, expected "
                    f"{expected.get('size')}, or its SHA-256 differs); {hint}"
                )
        for src in meta["sources"]:
            source = Path(src["path"])
            if not source.is_file() or source.stat().st_size != src["size"]:
                raise IndexFileError(
                    f"training file {source} behind the memorization index {path} is missing "
                    f"or changed since the index was built; restore it or {hint}"
                )
        try:
            bloom = rbloom.Bloom.load(str(path / "ngrams.bloom"), int)
            anchors = np.load(path / "anchors.npy", allow_pickle=False)
            records = np.load(path / "records.npy", allow_pickle=False)
        except Exception as e:  # rbloom and numpy raise various types on bad bytes
            raise IndexFileError(f"memorization index {path} cannot be read ({e}); {hint}") from e
        if anchors.dtype != ANCHOR_DTYPE or records.dtype != RECORD_DTYPE:
            raise IndexFileError(f"memorization index {path} has unexpected array types; {hint}")
        return cls(path, meta, bloom, anchors, records)

    def contains(self, hashes: U64) -> npt.NDArray[np.bool_]:
        """Bloom membership of each n-gram hash (false positives at ~``meta['fpr']``)."""
        return np.fromiter(
            map(self.bloom.__contains__, hashes.tolist()), dtype=np.bool_, count=len(hashes)
        )

    def anchored(self, hashes: U64) -> list[tuple[int, int]]:
        """``(position in hashes, record)`` for every hash whose key is an anchor."""
        wanted = anchor_key(hashes)
        lo = np.searchsorted(self._anchor_keys, wanted, "left")
        hi = np.searchsorted(self._anchor_keys, wanted, "right")
        return [
            (i, int(r))
            for i in np.flatnonzero(hi > lo).tolist()
            for r in self.anchors["record"][lo[i] : hi[i]].tolist()
        ]

    def window(self, record: int, radius: int) -> tuple[U64, U64, int, int]:
        """Token ids and n-gram hashes of records ``record ± radius`` of one document.

        Returns the ids, their n-gram hashes, and the first and last record read.
        """
        return self._window(record, radius)

    def _read_window(self, record: int, radius: int) -> tuple[U64, U64, int, int]:
        cont = self._cont
        first = last = record
        while cont[first] and record - first < radius:
            first -= 1
        while last + 1 < len(cont) and cont[last + 1] and last - record < radius:
            last += 1
        ids = np.concatenate([self._ids(r) for r in range(first, last + 1)])
        return ids, ngram_hashes(ids, self.n), first, last

    def is_doc_edge(self, record: int, step: int) -> bool:
        """Whether the document has no record beyond ``record`` in direction ``step``."""
        if step < 0:
            return not self._cont[record]
        return record + 1 >= len(self._cont) or not self._cont[record + 1]

    def source_of(self, record: int) -> dict[str, Any]:
        rec = self.records[record]
        return {
            "source": self.meta["sources"][int(rec["source"])]["path"],
            "offset": int(rec["offset"]),
        }

    def _record_ids(self, record: int) -> U64:
        # Uncached tokenizer: training records must not evict samples from tokenize's cache.
        return stable_ids(split_tokens(self.record_text(record)))

    def record_text(self, record: int) -> str:
        """Reread one record's training text from its source file."""
        rec = self.records[record]
        src = self.meta["sources"][int(rec["source"])]
        offset, start, length = int(rec["offset"]), int(rec["start"]), int(rec["length"])
        try:
            with open(src["path"], "rb") as f:
                f.seek(offset)
                if src["kind"] == "text":
                    return f.read(length).decode("utf-8", "replace")
                text = json.loads(f.readline())[self.meta["text_field"]]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise IndexFileError(
                f"cannot reread training text from {src['path']} at byte {offset}: {e}"
            ) from e
        return str(text)[start : start + length]


def write_index(
    path: Path,
    meta: dict[str, Any],
    bloom: rbloom.Bloom,
    anchors: npt.NDArray[np.void],
    records: npt.NDArray[np.void],
) -> None:
    """Write an index folder atomically: into a sibling, then renamed into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    bloom.save(str(tmp / "ngrams.bloom"))
    np.save(tmp / "anchors.npy", anchors, allow_pickle=False)
    np.save(tmp / "records.npy", records, allow_pickle=False)
    meta["files"] = {
        name: {"size": (tmp / name).stat().st_size, "sha256": sha256(tmp / name)} for name in FILES
    }
    (tmp / "meta.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
    old = path.with_name(f".{path.name}.old-{os.getpid()}")
    if path.exists():
        path.rename(old)
    tmp.rename(path)
    shutil.rmtree(old, ignore_errors=True)
