"""A sick cluster noticed (``szal.runners.kubernetes.health``), on a fake clock.

Covers: write errors classified by kind (etcd's "database space exceeded",
429, 5xx, unreachable; a 409 or 422 is no cluster trouble); counted per
kind; logged the first time per kind, then at most once a minute, saying
how many were not logged; Warning Events per run at most once a minute per
kind; the ``szal_api_write_errors_total{kind}`` metric. Not covered: a real
API server refusing writes (e2e).
"""

from __future__ import annotations

import logging

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from szal.runners.kubernetes.client import ApiClient, ApiError, Conflict, Credentials, Invalid
from szal.runners.kubernetes.events import EventPoster
from szal.runners.kubernetes.health import ApiHealth, WriteErrorKind, classify_write_error
from szal.runners.kubernetes.metrics import OperatorCollector

FULL = ApiError(500, "InternalError", "etcdserver: mvcc: database space exceeded")


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_errors_are_classified_by_kind() -> None:
    assert classify_write_error(FULL) is WriteErrorKind.ETCD_SPACE_EXCEEDED
    assert classify_write_error(ApiError(429, "TooManyRequests", "slow down")) is (
        WriteErrorKind.THROTTLED
    )
    assert classify_write_error(ApiError(503, "ServiceUnavailable", "x")) is (
        WriteErrorKind.SERVER_ERROR
    )
    assert classify_write_error(ApiError(0, "Unreachable", "refused")) is (
        WriteErrorKind.UNREACHABLE
    )
    assert classify_write_error(Conflict(409, "Conflict", "stale")) is None
    assert classify_write_error(Invalid(422, "Invalid", "bad")) is None
    assert classify_write_error(ValueError("x")) is None


def test_logged_once_per_kind_then_once_a_minute(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    health = ApiHealth(clock=clock)
    caplog.set_level(logging.WARNING, logger="szal.runners.kubernetes.health")
    for _ in range(50):
        assert health.failed(FULL, "patching status") is WriteErrorKind.ETCD_SPACE_EXCEEDED
        clock.now += 1.0
    health.failed(ApiError(429, "TooManyRequests", "slow"), "creating pod p")
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2
    assert "etcd's quota is full" in lines[0] and "database space exceeded" in lines[0]
    assert "throttling" in lines[1]
    clock.now += 11.0  # 61 s after the first etcd line
    health.failed(FULL, "patching status")
    assert len(caplog.records) == 3
    assert "(49 more since the last report)" in caplog.records[-1].getMessage()
    assert health.counts == {
        WriteErrorKind.ETCD_SPACE_EXCEEDED: 51,
        WriteErrorKind.THROTTLED: 1,
    }
    assert health.failed(Conflict(409, "Conflict", "stale"), "x") is None
    assert sum(health.counts.values()) == 52


def test_a_run_is_warned_at_most_once_a_minute_per_kind() -> None:
    clock = FakeClock()
    health = ApiHealth(clock=clock)
    kind = WriteErrorKind.SERVER_ERROR
    assert health.should_note("uid-a", kind)
    assert not health.should_note("uid-a", kind)
    assert health.should_note("uid-b", kind)
    assert health.should_note("uid-a", WriteErrorKind.THROTTLED)
    clock.now += 60.0
    assert health.should_note("uid-a", kind)
    health.forget("uid-a")
    assert health.should_note("uid-a", kind)


def test_the_metric_counts_by_kind() -> None:
    health = ApiHealth(clock=FakeClock())
    health.failed(FULL, "x")
    health.failed(FULL, "x")
    health.failed(ApiError(0, "Unreachable", "down"), "x")
    client = ApiClient(Credentials("https://127.0.0.1:1"))
    collector = OperatorCollector(
        client=client,
        events=EventPoster(client),
        passes=lambda: 0,
        active_runs=lambda: 0,
        write_errors=lambda: health.counts,
    )
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    text = generate_latest(registry).decode()
    assert 'szal_api_write_errors_total{kind="etcd-space-exceeded"} 2.0' in text
    assert 'szal_api_write_errors_total{kind="unreachable"} 1.0' in text
