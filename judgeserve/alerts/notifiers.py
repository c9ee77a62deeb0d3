"""Where alerts go besides the store (which the API and ``client.alerts()`` read).

* :class:`LogNotifier` — one log line per alert (logger ``judgeserve.alerts``).
* :class:`WebhookNotifier` — an HTTP POST per alert: the alert as JSON, or a
  Slack-compatible payload (``{"text": ..., "blocks": [...]}``, what Slack incoming
  webhooks and Mattermost accept). Deliveries run on a background thread, so a slow
  receiver never holds up the worker; failures (network errors, 429 and 5xx) are retried
  with exponential backoff, other 4xx answers are not.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any, Literal, Protocol

import httpx

from ..exceptions import RETRYABLE_STATUS
from ..schema import Alert

__all__ = ["Notifier", "LogNotifier", "WebhookNotifier", "alert_payload", "slack_payload"]

log = logging.getLogger("judgeserve.alerts")


class Notifier(Protocol):
    def notify(self, alert: Alert) -> None:
        """Send one alert; must not block the caller for long."""

    def close(self) -> None:
        """Deliver what is pending (bounded), then release resources."""


class LogNotifier:
    """Logs each alert at WARNING (CRITICAL for critical alerts)."""

    def notify(self, alert: Alert) -> None:
        level = logging.CRITICAL if alert.severity == "critical" else logging.WARNING
        log.log(level, "alert %s on %s@%d [%s]: %s", alert.rule, alert.run, alert.step,
                alert.action, alert.message)

    def close(self) -> None:
        pass


def alert_payload(alert: Alert, web_url: str | None = None) -> dict[str, Any]:
    """The JSON body of the plain webhook: the alert, plus a link when the web view is known."""
    body: dict[str, Any] = {"type": "judgeserve.alert", "alert": alert.model_dump(mode="json")}
    if web_url:
        body["url"] = f"{web_url.rstrip('/')}/runs/{alert.run}"
    return body


def slack_payload(alert: Alert, web_url: str | None = None) -> dict[str, Any]:
    """A Slack incoming-webhook body (``text`` is the fallback; ``blocks`` the layout)."""
    icon = {"info": ":information_source:", "warning": ":warning:", "critical": ":rotating_light:"}
    head = f"{icon[alert.severity]} judgeserve alert *{alert.rule}* on run `{alert.run}` at step {alert.step}"
    text = f"{head}\n{alert.message}"
    if alert.action == "stop":
        text += "\n(action: stop: the trainer's callback stops the run)"
    ids = alert.evidence.get("sample_ids") or []
    if ids:
        text += "\nsamples: " + ", ".join(f"`{i}`" for i in ids[:5])
    blocks: list[dict[str, Any]] = [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]
    if web_url:
        link = f"{web_url.rstrip('/')}/runs/{alert.run}"
        blocks.append(
            {"type": "context", "elements": [{"type": "mrkdwn", "text": f"<{link}|open the run>"}]}
        )
    return {"text": text, "blocks": blocks}


class WebhookNotifier:
    """POSTs each alert to ``url`` from a background thread, retrying failures."""

    def __init__(
        self,
        url: str,
        *,
        format: Literal["json", "slack"] = "json",
        retries: int = 4,
        backoff_s: float = 0.5,
        timeout_s: float = 5.0,
        web_url: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.url = url
        self.format = format
        self.retries = retries
        self.backoff_s = backoff_s
        self.web_url = web_url
        self.delivered = 0
        self.failed = 0
        self._http = httpx.Client(timeout=timeout_s, headers=headers or {})
        self._inbox: queue.Queue[Alert | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="judgeserve-webhook", daemon=True)
        self._thread.start()

    def notify(self, alert: Alert) -> None:
        self._inbox.put(alert)

    def payload(self, alert: Alert) -> dict[str, Any]:
        make = slack_payload if self.format == "slack" else alert_payload
        return make(alert, self.web_url)

    def send(self, alert: Alert) -> bool:
        """Deliver one alert now, retrying; True once the receiver answered 2xx."""
        body = self.payload(alert)
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff_s * 2 ** (attempt - 1))
            try:
                resp = self._http.post(self.url, json=body)
            except httpx.HTTPError as e:
                log.warning("webhook %s unreachable (attempt %d): %s", self.url, attempt + 1, e)
                continue
            if resp.status_code < 300:
                return True
            if resp.status_code not in RETRYABLE_STATUS:
                log.error("webhook %s refused alert %s: HTTP %d %s", self.url, alert.id,
                          resp.status_code, resp.text[:200])
                return False
            log.warning("webhook %s answered %d (attempt %d)", self.url, resp.status_code, attempt + 1)
        log.error("webhook %s: alert %s not delivered after %d attempts", self.url, alert.id,
                  self.retries + 1)
        return False

    def _run(self) -> None:
        while True:
            alert = self._inbox.get()
            try:
                if alert is None:
                    return
                if self.send(alert):
                    self.delivered += 1
                else:
                    self.failed += 1
            finally:
                self._inbox.task_done()

    def join(self, timeout: float | None = None) -> bool:
        """Wait until every alert notified so far was delivered or given up on."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._inbox.unfinished_tasks:
            if deadline is not None and time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def close(self, timeout: float = 10.0) -> None:
        self._inbox.put(None)
        self._thread.join(timeout)
        self._http.close()
