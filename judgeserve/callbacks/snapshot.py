"""Checkpoint mode's own save: copy the weights in memory, write them in the background.

With ``checkpoint_save="background"`` judgeserve saves the checkpoints it submits itself
instead of submitting the trainer's. The training thread is blocked only while
:func:`snapshot` copies the weights into CPU memory (a device-to-host copy on a GPU, a
memory copy on CPU); a :class:`BackgroundSaver` thread then writes them as the folder a
generator loads — safetensors and the config, no optimizer, scheduler, RNG or trainer
state — and only then submits it.

A generator never reads a half-written folder: the files are written into a hidden
temporary folder beside the target (``.step-<N>.partial-<id>``), flushed to disk
(``fsync``), and the folder is renamed to its name in one step (``rename(2)`` is atomic
on one filesystem), so ``step-<N>`` either does not exist or is complete; the job naming
it is submitted after the rename.

One write runs at a time: a save due while the previous write is still running waits for
it (that wait is counted as blocked time), so at most one snapshot is held in memory.
"""

from __future__ import annotations

import copy
import logging
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

__all__ = ["BackgroundSaver", "Snapshot", "snapshot"]

log = logging.getLogger("judgeserve.callbacks")


@dataclass
class Snapshot:
    """A model's weights copied at one step, and what writing them needs."""

    kind: Literal["lora", "full"]
    tensors: dict[str, Any]  # name -> CPU tensor (tied weights share one copy)
    model: Any  # full: whose save_pretrained writes the folder (only its config is read)
    peft_config: Any = None  # lora: the adapter's config, copied at the snapshot
    tokenizer: Any = None
    copy_s: float = 0.0

    @property
    def bytes(self) -> int:
        seen: dict[int, int] = {}
        for t in self.tensors.values():
            seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return sum(seen.values())


def is_peft(model: Any) -> bool:
    return hasattr(model, "peft_config") and hasattr(model, "active_adapter")


def snapshot(model: Any, tokenizer: Any = None, reuse: dict[str, Any] | None = None) -> Snapshot:
    """Copy ``model``'s weights to CPU memory: the adapter's alone for a PEFT model (what
    its adapter folder holds), else the whole state dict. Runs on the training thread.

    ``reuse``: the tensors of an earlier snapshot no longer needed (its write is done);
    each weight is copied into its old buffer when shapes and dtypes match. Fresh memory
    costs a page fault per 4 KiB on its first write, which on a loaded machine can take
    longer than the copy itself."""
    import torch

    started = time.perf_counter()
    peft_config = None
    if is_peft(model):
        from peft import get_peft_model_state_dict

        state = get_peft_model_state_dict(model)
        peft_config = copy.deepcopy(model.peft_config[model.active_adapter])
    else:
        state = model.state_dict()
    copies: dict[tuple[Any, ...], Any] = {}
    tensors: dict[str, Any] = {}
    with torch.no_grad():
        for name, t in state.items():
            # Tied weights (GPT-2's embedding and LM head) are one tensor: copy it once, so
            # save_pretrained still sees them tied and writes them once.
            key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), t.stride())
            if key not in copies:
                old = (reuse or {}).get(name)
                if old is not None and old.shape == t.shape and old.dtype == t.dtype:
                    copies[key] = old.copy_(t.detach())
                else:
                    copies[key] = t.detach().to("cpu", copy=True)
            tensors[name] = copies[key]
    return Snapshot(
        kind="lora" if peft_config is not None else "full", tensors=tensors, model=model,
        peft_config=peft_config, tokenizer=tokenizer, copy_s=time.perf_counter() - started,
    )


def write(snap: Snapshot, folder: Path) -> None:
    """Write ``snap`` as a model folder (full) or PEFT adapter folder (lora) into ``folder``."""
    folder.mkdir(parents=True)
    if snap.kind == "lora":
        from safetensors.torch import save_file

        tensors = {k: v.contiguous() for k, v in snap.tensors.items()}
        save_file(tensors, str(folder / "adapter_model.safetensors"), metadata={"format": "pt"})
        config = snap.peft_config
        config.inference_mode = True  # as PeftModel.save_pretrained writes it
        config.save_pretrained(str(folder))
    else:
        # Only the model's config is read here (the training thread goes on changing its
        # weights); the weights written are the snapshot's.
        snap.model.save_pretrained(str(folder), state_dict=dict(snap.tensors), safe_serialization=True)
    if snap.tokenizer is not None:
        snap.tokenizer.save_pretrained(str(folder))


def _fsync_tree(folder: Path) -> None:
    for path in [*folder.rglob("*"), folder]:
        flags = os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() else 0)
        fd = os.open(path, flags)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def publish(tmp: Path, folder: Path) -> None:
    """Rename the complete ``tmp`` to ``folder`` in one step; a folder already there (a
    resumed run saving the same step again) is replaced."""
    _fsync_tree(tmp)
    old: Path | None = None
    if folder.exists():
        old = folder.with_name(f".{folder.name}.old-{uuid.uuid4().hex[:8]}")
        os.rename(folder, old)
    os.rename(tmp, folder)
    fd = os.open(folder.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)  # the rename itself survives a crash
    finally:
        os.close(fd)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@dataclass
class SaveRecord:
    """One background save: the copy (blocking), the write (not) and how it ended."""

    step: int
    folder: Path
    copy_s: float
    wait_s: float  # waiting for the previous write before copying (blocking too)
    bytes: int
    write_s: float | None = None
    error: str | None = None
    done: threading.Event = field(default_factory=threading.Event)


class BackgroundSaver:
    """Writes snapshots on a thread of its own, one at a time; see the module docstring."""

    def __init__(self) -> None:
        self.records: list[SaveRecord] = []
        self._thread: threading.Thread | None = None
        self._last: dict[str, Any] = {}  # the last snapshot's tensors, reused once written

    def save(
        self, step: int, model: Any, tokenizer: Any, folder: Path,
        then: Callable[[Path], None],
    ) -> SaveRecord:
        """Snapshot ``model`` now (the caller is blocked for this), write it into
        ``folder`` in the background, then call ``then(folder)`` (the submit)."""
        started = time.perf_counter()
        self.wait()
        waited = time.perf_counter() - started
        snap = snapshot(model, tokenizer, reuse=self._last)  # the last write is done: reuse
        self._last = snap.tensors
        record = SaveRecord(step, folder, snap.copy_s, waited, snap.bytes)
        self.records.append(record)
        self._thread = threading.Thread(
            target=self._run, args=(snap, record, then), name=f"judgeserve-save-{step}"
        )
        self._thread.start()
        return record

    def _run(self, snap: Snapshot, record: SaveRecord, then: Callable[[Path], None]) -> None:
        started = time.perf_counter()
        folder = record.folder
        tmp = folder.with_name(f".{folder.name}.partial-{uuid.uuid4().hex[:8]}")
        try:
            write(snap, tmp)
            publish(tmp, folder)
            record.write_s = time.perf_counter() - started
            then(folder)
        except Exception as e:  # a failed save must say so, and never stop training
            record.error = f"{type(e).__name__}: {e}"
            log.exception("judgeserve: could not save the checkpoint of step %d to %s; "
                          "it is not submitted", record.step, folder)
            shutil.rmtree(tmp, ignore_errors=True)
        finally:
            record.done.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the write in flight; False if it is still running after ``timeout``."""
        thread = self._thread
        if thread is None:
            return True
        thread.join(timeout)
        if thread.is_alive():
            return False
        self._thread = None
        return True

    @property
    def errors(self) -> list[str]:
        return [f"step {r.step}: {r.error}" for r in self.records if r.error]
