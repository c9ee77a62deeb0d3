"""Finding a submitted checkpoint: a local folder, or an fsspec URL fetched to a local cache.

The API accepts a checkpoint without looking for it (the generator may see another
filesystem); here is where a missing one is found out. A folder that is gone raises
:class:`~judgeserve.exceptions.CheckpointMissingError` (the trainer's ``save_total_limit``
deletes old checkpoints; the worker dead-letters the job with that reason), a folder
that holds the wrong thing a :class:`~judgeserve.exceptions.CheckpointError`.

URLs (``s3://``, ``gs://``, ``memory://``... anything fsspec knows) need the optional
``fsspec`` extra and the scheme's own package (``s3fs``, ``gcsfs``). They are downloaded
once into ``cache_dir``, keyed by the URL and the remote files' sizes and modification
stamps, so a checkpoint rewritten under the same URL is fetched again; only the
``keep`` most recent downloads stay.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..exceptions import CheckpointError, CheckpointMissingError, require
from .base import CheckpointKind

__all__ = ["LocalCheckpoint", "resolve_checkpoint", "DEFAULT_CACHE_DIR"]

DEFAULT_CACHE_DIR = Path.home() / ".cache" / "judgeserve" / "checkpoints"
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_WEIGHTS = {
    "lora": ("adapter_model.safetensors", "adapter_model.bin"),
    "full": ("*.safetensors", "*.bin", "*.safetensors.index.json"),
}
_MARKER = {"lora": "adapter_config.json", "full": "config.json"}


@dataclass(frozen=True)
class LocalCheckpoint:
    """A checkpoint found on this machine."""

    source: str  # as submitted
    path: Path  # the local folder
    kind: CheckpointKind
    key: str  # changes when the folder's files change: engines cache adapters by it

    def config(self) -> dict[str, Any]:
        """Its ``adapter_config.json`` (lora) or ``config.json`` (full)."""
        name = _MARKER[self.kind]
        try:
            data = json.loads((self.path / name).read_text())
        except FileNotFoundError:
            raise CheckpointMissingError(self.source) from None
        except (OSError, ValueError) as e:
            raise CheckpointError(f"checkpoint {self.source}: unreadable {name}: {e}") from e
        if not isinstance(data, dict):
            raise CheckpointError(f"checkpoint {self.source}: {name} is not a JSON object")
        return data

    def gone(self) -> CheckpointMissingError | None:
        """The error to raise instead if the folder vanished since it was found."""
        return None if self.path.exists() else CheckpointMissingError(self.source)


def resolve_checkpoint(
    source: str, kind: CheckpointKind, *, cache_dir: Path | None = None, keep: int = 8
) -> LocalCheckpoint:
    """The local folder of ``source``, checked to hold a checkpoint of ``kind``."""
    if _URL.match(source) and not source.startswith("file://"):
        path = _fetch(source, cache_dir or DEFAULT_CACHE_DIR, keep)
    else:
        path = Path(source.removeprefix("file://")).expanduser()
        if not path.exists():
            raise CheckpointMissingError(source)
        if not path.is_dir():
            raise CheckpointError(f"checkpoint {source} is a file; submit the folder it lies in")
    _check_kind(source, path, kind)
    return LocalCheckpoint(source, path, kind, f"{path.resolve()}@{_fingerprint(path)}")


def _check_kind(source: str, path: Path, kind: CheckpointKind) -> None:
    other: CheckpointKind = "full" if kind == "lora" else "lora"
    if not (path / _MARKER[kind]).is_file():
        if (path / _MARKER[other]).is_file():
            what = "a LoRA adapter" if other == "lora" else "a full model"
            raise CheckpointError(
                f"checkpoint {source} holds {what} ({_MARKER[other]}), not a {kind} "
                f"checkpoint: submit it with kind={other!r}"
            )
        raise CheckpointError(
            f"checkpoint {source} has no {_MARKER[kind]}: not a "
            f"{'PEFT adapter' if kind == 'lora' else 'Hugging Face model'} folder"
        )
    if not any(any(path.glob(pattern)) for pattern in _WEIGHTS[kind]):
        raise CheckpointError(f"checkpoint {source} has no weights ({', '.join(_WEIGHTS[kind])})")


def _fingerprint(path: Path) -> str:
    """Names, sizes and modification times of the folder's files (cheap; no reading)."""
    h = hashlib.sha256()
    for f in sorted(path.iterdir()):
        if f.is_file():
            st = f.stat()
            h.update(f"{f.name} {st.st_size} {st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def _fetch(url: str, cache_dir: Path, keep: int) -> Path:
    fsspec: Any = require("fsspec", "fsspec")
    try:
        fs, root = fsspec.core.url_to_fs(url)
    except ImportError as e:  # the scheme's own package (s3fs, gcsfs ...) is missing
        raise CheckpointError(f"cannot open {url}: {e}") from e
    root = root.rstrip("/")
    try:
        listing: dict[str, dict[str, Any]] = fs.find(root, detail=True)
    except FileNotFoundError:
        listing = {}
    if not listing:
        raise CheckpointMissingError(url)
    stamp = {
        name[len(root) :].lstrip("/"): [
            info.get("size"),
            str(
                info.get("mtime")
                or info.get("LastModified")
                or info.get("ETag")
                or info.get("created")
                or ""
            ),
        ]
        for name, info in listing.items()
    }
    digest = hashlib.sha256(json.dumps([url, stamp], sort_keys=True).encode()).hexdigest()[:24]
    target = cache_dir / digest
    if (target / ".complete").is_file():
        target.touch()  # most recently used
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=cache_dir, prefix=".fetch-"))
    try:
        for name in stamp:
            local = staging / name
            local.parent.mkdir(parents=True, exist_ok=True)
            fs.get_file(f"{root}/{name}", str(local))
        (staging / ".complete").write_text(url)
        try:
            staging.rename(target)  # atomic: a concurrent fetch sees all or nothing
        except OSError:
            shutil.rmtree(staging)  # another process fetched it first
    except FileNotFoundError as e:  # deleted while we fetched it
        shutil.rmtree(staging, ignore_errors=True)
        raise CheckpointMissingError(url) from e
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _prune(cache_dir, keep)
    return target


def _prune(cache_dir: Path, keep: int) -> None:
    done = [d for d in cache_dir.iterdir() if (d / ".complete").is_file()]
    done.sort(key=lambda d: d.stat().st_mtime, reverse=True)
    for old in done[keep:]:
        shutil.rmtree(old, ignore_errors=True)
