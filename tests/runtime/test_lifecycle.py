"""A platform owns its threads: opened and closed again and again in one process (alone, or as
an API process's), it leaves no thread running and no file open; a thread that will not stop
is named, not waited for forever."""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import sys
import threading
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from broker.api.serve import app_for_process
from broker.lifecycle import Lifecycle
from broker.runtime import Platform
from broker.settings import Settings


def _open_files() -> set[str]:
    """What this process's descriptors point at: files and pipes. Not sockets: other tests'
    Kafka clients in this process open and close theirs at any moment, and the embedded
    platform opened here (SQLite bus and store, no network) has none of its own."""
    found = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(FileNotFoundError):  # the one listdir used, closed since
            target = os.readlink(f"/proc/self/fd/{fd}")
            if not target.startswith("socket:"):
                found.add(target)
    return found


def _threads() -> set[threading.Thread]:
    return set(threading.enumerate())


def test_opening_and_closing_twenty_times_leaves_threads_and_files_at_baseline(
    tmp_path: Path,
) -> None:
    settings = Settings(data_dir=tmp_path, audit_verify_interval_s=60)
    threads, files = _threads(), _open_files()
    for _ in range(20):
        platform = Platform.open(settings)
        platform.start_worker_thread()  # with the chain verifier and bus retention
        platform.start_consent_threads()  # listener, relay, webhooks
        started = _threads() - threads
        assert {"ingest", "audit-verify", "bus-retention", "consent-relay"} <= {
            t.name for t in started
        }
        assert platform.listener is not None and platform.listener.wait_ready()
        platform.close()
        assert _threads() == threads
        assert _open_files() == files


def test_close_is_idempotent_and_the_platform_is_a_context_manager(tmp_path: Path) -> None:
    threads = _threads()
    with Platform.open(Settings(data_dir=tmp_path)) as platform:
        platform.start_consent_threads()
        assert _threads() != threads
    assert platform.stop.is_set()
    assert _threads() == threads
    platform.close()  # again: nothing left to do, nothing raised
    with pytest.raises(RuntimeError, match="closed"):
        platform.start_worker_thread()  # a closed platform starts nothing


def test_a_thread_that_does_not_stop_is_logged_and_close_still_releases_the_rest(
    caplog: pytest.LogCaptureFixture,
) -> None:
    released = threading.Event()
    let_go = threading.Event()
    owner = Lifecycle(join_timeout_s=0.1)
    owner.on_close("resource", released.set)
    owner.spawn("stubborn", lambda stop: let_go.wait())  # ignores ``stop``
    owner.spawn("polite", lambda stop: stop.wait())
    with caplog.at_level(logging.WARNING, logger="broker.lifecycle"):
        assert owner.close() == ["stubborn"]
    assert "stubborn" in caplog.text and "polite" not in caplog.text
    assert released.is_set()
    let_go.set()
    for thread in owner.threads():
        thread.join()


def test_closers_run_after_the_threads_stopped_last_registered_first() -> None:
    order: list[str] = []

    def work(stop: threading.Event) -> None:
        stop.wait()
        order.append("worker")

    owner = Lifecycle()
    owner.on_close("store", lambda: order.append("store"))
    owner.on_close("listener", lambda: order.append("listener"))
    owner.spawn("worker", work)
    owner.close()
    assert order == ["worker", "listener", "store"]


def test_an_api_process_closes_its_platform_when_the_server_stops(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TSUNAGU_DATA_DIR", str(tmp_path))
    threads, files = _threads(), _open_files()
    switch = sys.getswitchinterval()
    try:
        for _ in range(3):
            app = app_for_process()  # its own platform, with the consent threads
            with TestClient(app) as http:  # runs the lifespan as uvicorn does
                assert http.get("/healthz").status_code == 200
                assert any(t.name == "consent-relay" for t in _threads() - threads)
            for thread in _threads() - threads:
                # The event loop's own pool (not the platform's): told to end as the loop ends.
                if thread.name == "AnyIO worker thread":
                    thread.join()
            assert _threads() == threads
            assert _open_files() == files
    finally:
        gc.unfreeze()  # the lifespan froze what this test process had built
        sys.setswitchinterval(switch)
