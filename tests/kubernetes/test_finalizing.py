"""The history finalizer's decisions and patches (finalizing.py), in virtual time.

Covers: release once archived (and the condition flipped back when a
warning was shown), the warning ``timeout`` after the run finished, the
release ``timeout`` after a deletion was requested (never earlier), the
wake-up times in between; the JSON patches (append guarded by the current
list or resourceVersion, removal tested at its index) and the conditions
list keeping the Succeeded condition.

Not covered: the I/O around them (``RunLifecycle``: test_lifecycle.py)
and the real API server's handling (e2e/test_operator_history.py).
"""

from __future__ import annotations

from szal.runners.kubernetes.finalizing import (
    FINALIZER,
    Hold,
    add_patch,
    conditions_with,
    decide,
    deletion_requested_at,
    has_finalizer,
    remove_patch,
    warned,
)

T = 300.0


def test_archived_releases_at_once() -> None:
    assert decide(
        archived=True, finished_at=0, deletion_at=None, warned=False, timeout=T, now=1
    ) == Hold(release=True)
    after_warning = decide(
        archived=True, finished_at=0, deletion_at=5, warned=True, timeout=T, now=9
    )
    assert after_warning.release and after_warning.recovered and not after_warning.timed_out


def test_not_archived_waits_then_warns_once_and_keeps_the_finalizer() -> None:
    early = decide(
        archived=False, finished_at=100, deletion_at=None, warned=False, timeout=T, now=150
    )
    assert early == Hold(wake_at=400)
    due = decide(
        archived=False, finished_at=100, deletion_at=None, warned=False, timeout=T, now=400
    )
    assert due.warn and not due.release and due.wake_at is None
    later = decide(
        archived=False, finished_at=100, deletion_at=None, warned=True, timeout=T, now=9999
    )
    assert later == Hold()  # held until archived or deleted: only news wakes it


def test_a_deletion_is_held_for_at_most_the_timeout() -> None:
    held = decide(
        archived=False, finished_at=100, deletion_at=1000, warned=True, timeout=T, now=1200
    )
    assert not held.release and held.wake_at == 1300
    released = decide(
        archived=False, finished_at=100, deletion_at=1000, warned=True, timeout=T, now=1300
    )
    assert released.release and released.timed_out
    # Deleted right after finishing: the warning comes first, the release at the same bound.
    both = decide(
        archived=False, finished_at=100, deletion_at=100, warned=False, timeout=T, now=250
    )
    assert both == Hold(wake_at=400)


def test_reading_the_object() -> None:
    body = {
        "metadata": {
            "finalizers": ["other", FINALIZER],
            "deletionTimestamp": "2027-01-15T08:00:00Z",
        },
        "status": {"conditions": [{"type": "HistoryArchived", "status": "False"}]},
    }
    assert has_finalizer(body) and warned(body)
    assert deletion_requested_at(body) is not None
    assert not has_finalizer({}) and deletion_requested_at({}) is None and not warned({})


def test_patches() -> None:
    fresh = {"metadata": {"resourceVersion": "42"}}
    assert add_patch(fresh) == [
        {"op": "test", "path": "/metadata/resourceVersion", "value": "42"},
        {"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]},
    ]
    other = {"metadata": {"finalizers": ["x"]}}
    assert add_patch(other)[0] == {"op": "test", "path": "/metadata/finalizers", "value": ["x"]}
    assert add_patch(other)[1]["path"] == "/metadata/finalizers/-"
    held = {"metadata": {"finalizers": ["x", FINALIZER]}}
    assert remove_patch(held) == [
        {"op": "test", "path": "/metadata/finalizers/1", "value": FINALIZER},
        {"op": "remove", "path": "/metadata/finalizers/1"},
    ]


def test_conditions_keep_succeeded_and_replace_history_archived() -> None:
    body = {
        "status": {
            "conditions": [
                {"type": "Succeeded", "status": "True", "reason": "Succeeded"},
                {"type": "HistoryArchived", "status": "False", "reason": "DatabaseUnavailable"},
            ]
        }
    }
    conditions = conditions_with(body, "True", "Archived", "history archived", 1_800_000_000.0)
    assert [(c["type"], c["status"]) for c in conditions] == [
        ("Succeeded", "True"),
        ("HistoryArchived", "True"),
    ]
    assert conditions[1]["lastTransitionTime"].endswith("Z")
