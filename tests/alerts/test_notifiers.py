"""Webhooks delivered to a real local HTTP receiver, retried on failure."""

from __future__ import annotations

import logging
import socket

import pytest

from judgeserve.alerts import LogNotifier, WebhookNotifier
from judgeserve.schema import Alert

from .conftest import Receiver

ALERT = Alert(
    id=7,
    run="run-1",
    step=300,
    rule="memorization_while_loss_falls",
    severity="critical",
    message="memorization.ngram_overlap rose 0 → 0.5 while train.loss fell 3 → 0.3",
    evidence={"sample_ids": ["a", "b"]},
    action="stop",
)


def test_json_webhook_delivered(receiver: Receiver) -> None:
    hook = WebhookNotifier(receiver.url, web_url="http://judge:8000")
    try:
        hook.notify(ALERT)
        assert hook.join(10)
    finally:
        hook.close()
    (body,) = receiver.bodies
    assert body["type"] == "judgeserve.alert" and body["url"] == "http://judge:8000/runs/run-1"
    assert body["alert"]["rule"] == ALERT.rule and body["alert"]["evidence"]["sample_ids"] == ["a", "b"]
    assert hook.delivered == 1 and hook.failed == 0


def test_slack_payload(receiver: Receiver) -> None:
    hook = WebhookNotifier(receiver.url, format="slack", web_url="http://judge:8000")
    try:
        assert hook.send(ALERT)
    finally:
        hook.close()
    (body,) = receiver.bodies
    assert set(body) == {"text", "blocks"}
    assert "*memorization_while_loss_falls*" in body["text"] and "`run-1`" in body["text"]
    assert "action: stop" in body["text"] and "`a`, `b`" in body["text"]
    assert body["blocks"][1]["elements"][0]["text"] == "<http://judge:8000/runs/run-1|open the run>"


def test_retried_until_the_receiver_accepts(receiver: Receiver) -> None:
    receiver.fail = 2  # two 503s, then 200
    hook = WebhookNotifier(receiver.url, retries=3, backoff_s=0.01)
    try:
        assert hook.send(ALERT)
    finally:
        hook.close()
    assert receiver.attempts == 3 and len(receiver.bodies) == 1


def test_gives_up_after_the_retries(receiver: Receiver) -> None:
    receiver.fail = 10
    hook = WebhookNotifier(receiver.url, retries=2, backoff_s=0.01)
    try:
        hook.notify(ALERT)
        assert hook.join(10)
    finally:
        hook.close()
    assert receiver.attempts == 3 and hook.failed == 1 and not receiver.bodies


def test_a_client_error_is_not_retried(receiver: Receiver) -> None:
    receiver.fail, receiver.fail_status = 10, 400
    hook = WebhookNotifier(receiver.url, retries=3, backoff_s=0.01)
    try:
        assert not hook.send(ALERT)
    finally:
        hook.close()
    assert receiver.attempts == 1


def test_unreachable_receiver_is_retried_then_reached() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    hook = WebhookNotifier(f"http://127.0.0.1:{port}/hook", retries=1, backoff_s=0.01, timeout_s=1)
    try:
        assert not hook.send(ALERT)  # nothing listens: both attempts fail
    finally:
        hook.close()


def test_log_notifier(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="judgeserve.alerts"):
        LogNotifier().notify(ALERT)
    (record,) = caplog.records
    assert record.levelno == logging.CRITICAL and "memorization_while_loss_falls" in record.getMessage()
