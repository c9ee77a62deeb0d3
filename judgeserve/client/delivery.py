"""How journal lines become HTTP requests, and what the agent does with each answer.

:func:`plan` joins consecutive sample lines into requests within the API's limits, sized
in bytes as they travel. :class:`Sender` posts one planned request and settles it:

* 2xx: delivered;
* 408/425/429/5xx, or no answer: :class:`Retry` (the journal keeps it);
* 401/403 (a revoked or wrong token, a run of another project): :class:`Retry` too, slowly,
  and reported once: the samples are good, and a client with the right token delivers them;
* 413: the request is split in halves and each is sent; a lone sample still too large is
  refused;
* 422: the samples the API names (``body.samples.<i>...``) are refused, each with its own
  reason, and the rest resent; a 422 that names no sample refuses the request;
* any other 4xx: refused.

Refused samples are recorded in the journal's errors file (``client.errors``), never
silently dropped, and one bad sample never costs its neighbours their delivery.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx
import orjson

from ..exceptions import RETRYABLE_STATUS
from .journal import Files, record_error

__all__ = ["MAX_SAMPLES", "MAX_BYTES", "Retry", "plan", "Sender"]

log = logging.getLogger("judgeserve.agent")

MAX_SAMPLES = 1000
MAX_BYTES = 8 * 1024 * 1024  # of JSON per request: well under the API's body cap
AUTH_STATUS = frozenset({401, 403})


class Retry(Exception):
    def __init__(self, after: float | None = None) -> None:
        self.after = after


def _size(sample: dict[str, Any]) -> int:
    # Bytes as they travel, escapes and all: characters undercount multi-byte text.
    return len(orjson.dumps(sample)) + 1


def plan(lines: list[tuple[int, dict[str, Any] | str]]) -> list[dict[str, Any]]:
    """Turn journal lines (with the offset where each ends) into requests, in order.

    A line is a request, or a string saying why it could not be read (it becomes a
    ``bad`` entry, reported in its turn). Consecutive sample lines for the same
    run/step/checkpoint are joined within MAX_SAMPLES and MAX_BYTES. Each entry carries
    ``end``: the journal offset that is fully delivered once it is accepted (None while a
    line is split over several requests), so a retry resends only what was not accepted.
    """
    out: list[dict[str, Any]] = []
    cur: dict[str, Any] | None = None
    for end, req in lines:
        if isinstance(req, str):
            cur = None
            out.append({"bad": req, "end": end})
            continue
        body = req["body"]
        if "samples" not in body:
            cur = None
            out.append({"method": req.get("method", "POST"), "path": req["path"], "body": body, "end": end})
            continue
        key = (
            req["path"], body["step"], body.get("checkpoint"), tuple(body.get("rubrics") or ()),
            body.get("expected"),
        )
        for s in body["samples"]:
            size = _size(s)
            if (
                cur is None
                or cur["key"] != key
                or len(cur["body"]["samples"]) >= MAX_SAMPLES
                or cur["bytes"] + size > MAX_BYTES
            ):
                cur = {"path": req["path"], "body": {**body, "samples": []}, "bytes": 0, "key": key, "end": None}
                out.append(cur)
            cur["body"]["samples"].append(s)
            cur["bytes"] += size
        if cur is not None:
            cur["end"] = end
    return out


def _detail(resp: httpx.Response) -> Any:
    try:
        return resp.json().get("detail")
    except (ValueError, AttributeError):
        return resp.text[:2000]


def _refused_samples(detail: Any, n: int) -> dict[int, list[Any]] | None:
    """The samples a 422 names, each with its problems; None when one names no sample."""
    if not isinstance(detail, list) or not detail:
        return None
    found: dict[int, list[Any]] = {}
    for err in detail:
        loc = err.get("loc") if isinstance(err, dict) else None
        if not (isinstance(loc, list) and len(loc) >= 3 and loc[:2] == ["body", "samples"]):
            return None
        index = loc[2]
        if not isinstance(index, int) or not 0 <= index < n:
            return None
        found.setdefault(index, []).append(err)
    return found


class Sender:
    """Posts planned requests for one agent; see the module docstring for each status."""

    def __init__(self, http: httpx.Client, max_backoff: float) -> None:
        self.http = http
        self.max_backoff = max_backoff
        self._auth_reported: int | None = None

    def _post(self, method: str, path: str, body: dict[str, Any]) -> httpx.Response:
        try:
            return self.http.request(method, path, json=body)
        except httpx.HTTPError as e:
            log.debug("send failed: %s", e)
            raise Retry() from e

    def send(self, req: dict[str, Any], files: Files) -> None:
        """Settle one planned request; raises :class:`Retry` when it must be sent again."""
        path = req["path"]
        pending = [req["body"]]
        while pending:
            body = pending.pop(0)
            resp = self._post(req.get("method", "POST"), path, body)
            status = resp.status_code
            if status < 300:
                self._auth_reported = None
                continue
            if status in RETRYABLE_STATUS:
                after = resp.headers.get("retry-after", "")
                raise Retry(float(after) if after.isdigit() else None)
            samples: list[dict[str, Any]] = body.get("samples") or []
            if status in AUTH_STATUS:
                self._auth_failed(files, status, _detail(resp), path)
                raise Retry(self.max_backoff)
            if status == 413 and len(samples) > 1:
                half = len(samples) // 2
                pending[:0] = [{**body, "samples": samples[:half]}, {**body, "samples": samples[half:]}]
                continue
            detail = _detail(resp)
            refused = _refused_samples(detail, len(samples)) if status == 422 else None
            if refused:
                for i, errors in refused.items():
                    self._refuse(files, status, errors, path, [samples[i].get("id")])
                rest = [s for i, s in enumerate(samples) if i not in refused]
                if rest:
                    pending.insert(0, {**body, "samples": rest})
                continue
            # Refused for good: retrying cannot help; recorded for the client to report.
            self._refuse(files, status, detail, path, [s.get("id") for s in samples])

    def _refuse(
        self, files: Files, status: int, detail: Any, path: str, ids: list[Any]
    ) -> None:
        log.warning("HTTP %d refused %s (%d samples): %s", status, path, len(ids), str(detail)[:500])
        record_error(files, {"status": status, "detail": detail, "path": path, "samples": ids})

    def _auth_failed(self, files: Files, status: int, detail: Any, path: str) -> None:
        if self._auth_reported == status:
            return
        self._auth_reported = status
        log.error("HTTP %d on %s: %s; the journal keeps everything and retries", status, path, detail)
        record_error(files, {
            "status": status,
            "detail": f"{detail} (nothing was dropped: the journal keeps these requests, retried "
                      "every few seconds and delivered by a client with a valid token)",
            "path": path, "samples": [], "kept": True,
        })
