"""Rotation of the folders judgeserve saves itself (``checkpoint_save="background"``).

Every background save leaves a full or LoRA folder in ``<output dir>/judgeserve``; with a
13B model that is 26 GB per evaluation. Like the Trainer's ``save_total_limit``,
``checkpoint_keep=N`` keeps the ``N`` newest folders and deletes older ones — but only
once judgeserve is done with them: a folder is deleted when its checkpoint job, as
``GET /v1/runs/{run}/checkpoints`` reports it, has ended (``generated``, ``scored``, or
``failed``: dead-lettered). A job still ``queued``, ``generating`` or ``retrying`` (or
not yet delivered to the API) keeps its folder, since the generator still has to read
it. With ``keep_best`` the folder of judgeserve's best checkpoint is never deleted, and
a folder whose samples are generated but not yet scored is kept too (it may become the
best).

:meth:`Rotation.rotate` runs on the runner's watcher thread, never on the training
thread; a folder that cannot be deleted is logged once and left alone, never raised into
training. A folder is renamed to a hidden name before it is removed, so a half-deleted
folder is never seen under its checkpoint's name.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["Rotation", "DONE_STATES"]

log = logging.getLogger("judgeserve.callbacks")

# Job states after which the generator no longer reads the folder.
DONE_STATES = frozenset({"generated", "scored", "failed"})


class Rotation:
    """Which of judgeserve's own folders may go, and deleting them."""

    def __init__(self, keep: int | None) -> None:
        self.keep = keep
        self.deleted: list[Path] = []  # in the order deleted
        self.failed: dict[Path, str] = {}  # could not delete: the error (logged once)
        self.looks = 0  # how many job lists were looked at (tests wait on it)
        self._saved: dict[int, Path] = {}  # step -> complete folder
        self._lock = threading.Lock()

    def saved(self, step: int, folder: Path) -> None:
        """``folder`` (``step``'s checkpoint) is complete on disk and submitted."""
        with self._lock:
            self._saved[step] = folder

    def candidates(self) -> list[tuple[int, Path]]:
        """Folders beyond the newest ``keep``, oldest first (empty: nothing to look up)."""
        if self.keep is None:
            return []
        with self._lock:
            steps = sorted(self._saved)
            return [(s, self._saved[s]) for s in steps[: max(len(steps) - self.keep, 0)]]

    def rotate(
        self,
        jobs: Callable[[], Sequence[dict[str, Any]]],
        best_step: Callable[[], int | None] | None = None,
    ) -> list[Path]:
        """Delete the candidates whose jobs have ended. ``jobs`` fetches the run's
        checkpoint jobs; ``best_step`` (keep_best) fetches judgeserve's best step, and is
        called after ``jobs`` so that a job seen scored is already in the ranking it
        reads. Returns the folders deleted now."""
        candidates = self.candidates()
        if not candidates:
            return []
        listed = jobs()
        self.looks += 1
        states = {(int(j["step"]), str(j.get("path"))): str(j.get("state")) for j in listed}
        protected = best_step() if best_step is not None else None
        done = {"scored", "failed"} if best_step is not None else DONE_STATES
        gone: list[Path] = []
        for step, folder in candidates:
            state = states.get((step, os.path.abspath(folder)))
            if state not in done or step == protected:
                continue
            with self._lock:
                self._saved.pop(step, None)
            if self._delete(folder):
                gone.append(folder)
        return gone

    def _delete(self, folder: Path) -> bool:
        # Never into training: a failure is said, once, and the folder left alone.
        hidden = folder.with_name(f".{folder.name}.deleting-{uuid.uuid4().hex[:8]}")
        try:
            os.rename(folder, hidden)
        except OSError as e:
            return self._failed(folder, f"{type(e).__name__}: {e}", folder)
        try:
            shutil.rmtree(hidden)
        except OSError as e:
            return self._failed(folder, f"{type(e).__name__}: {e}", hidden)
        self.deleted.append(folder)
        log.info("judgeserve: deleted %s (its checkpoint job has ended)", folder)
        return True

    def _failed(self, folder: Path, error: str, left: Path) -> bool:
        self.failed[folder] = error
        log.warning("judgeserve: could not delete the old checkpoint folder %s (%s); "
                    "it is left on disk as %s", folder, error, left)
        return False
