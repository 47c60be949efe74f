"""What a request may carry, tried as an attacker would: endless bodies, moments off the calendar.

Bodies are sent over a raw socket, chunked and never finished, so that an answer can only come
from a server that decided without reading the whole body: the order of events is the proof.
"""

from __future__ import annotations

import socket
import stat
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from broker.api.app import API_MAX_BODY_BYTES
from tests.events import make_event
from tests.fixtures.platform import RunningPlatform, start_platform, stop_platform

INGEST_LIMIT = 512 * 1024
CHUNK = 64 * 1024
#: Far over every limit: a server that kept reading would take all of it.
ATTACK_BYTES = 100 * 1024 * 1024


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPlatform]:
    """The embedded platform with a known HTTP ingest limit."""
    running = start_platform(
        tmp_path_factory.mktemp("limits"), {"TSUNAGU_HTTP_MAX_BODY_BYTES": str(INGEST_LIMIT)}
    )
    yield running
    stop_platform(running)


def _open_chunked(platform: RunningPlatform, path: str, headers: dict[str, str]) -> socket.socket:
    """A connection with the request line and headers of a chunked POST sent, no body yet."""
    url = urlsplit(platform.base_url)
    sock = socket.create_connection((url.hostname or "127.0.0.1", url.port or 80), timeout=20)
    lines = [
        f"POST {path} HTTP/1.1",
        f"Host: {url.netloc}",
        "Transfer-Encoding: chunked",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    return sock


def _send_chunks(sock: socket.socket, total: int) -> int:
    """Send up to ``total`` body bytes in chunks, never the last chunk; the bytes sent."""
    sent = 0
    data = b" " * CHUNK
    try:
        while sent < total:
            sock.sendall(b"%x\r\n" % len(data) + data + b"\r\n")
            sent += len(data)
    except OSError:  # the server closed the connection: it will read no more
        pass
    return sent


def _status(sock: socket.socket) -> tuple[int, bytes]:
    """The status code and raw head+body of the response on ``sock``."""
    received = b""
    while b"\r\n\r\n" not in received:
        part = sock.recv(65536)
        if not part:
            break
        received += part
    head, _, body = received.partition(b"\r\n\r\n")
    length = next(
        (
            int(line.split(b":")[1])
            for line in head.lower().split(b"\r\n")
            if line.startswith(b"content-length:")
        ),
        0,
    )
    while len(body) < length:
        part = sock.recv(65536)
        if not part:
            break
        body += part
    return int(head.split(b" ", 2)[1]), head + b"\r\n\r\n" + body


def _refuses_more(sock: socket.socket) -> bool:
    """Whether the server stops taking the body: the rest of the attack cannot be sent."""
    sock.settimeout(5)
    return _send_chunks(sock, ATTACK_BYTES) < ATTACK_BYTES


ROUTES = [
    pytest.param("/v1/me/consents", "resident", "res-ab12cd34", API_MAX_BODY_BYTES, id="api"),
    pytest.param("/v1/events", "connector", "test-connector", INGEST_LIMIT, id="ingest"),
]


@pytest.mark.parametrize(("path", "role", "subject", "limit"), ROUTES)
def test_chunked_body_with_a_bad_token_is_401_before_any_of_it_is_read(
    platform: RunningPlatform, path: str, role: str, subject: str, limit: int
) -> None:
    sock = _open_chunked(
        platform,
        path,
        {"Content-Type": "application/json", "Authorization": "Bearer not-a-token"},
    )
    with sock:
        _send_chunks(sock, CHUNK)  # the body has begun and is never finished
        status, response = _status(sock)
        assert status == 401, response
        assert b"application/problem+json" in response
        assert b"WWW-Authenticate" in response or b"www-authenticate" in response
        assert _refuses_more(sock)


@pytest.mark.parametrize(("path", "role", "subject", "limit"), ROUTES)
def test_chunked_body_without_a_token_is_401_before_any_of_it_is_read(
    platform: RunningPlatform, path: str, role: str, subject: str, limit: int
) -> None:
    with _open_chunked(platform, path, {"Content-Type": "application/json"}) as sock:
        _send_chunks(sock, CHUNK)
        status, response = _status(sock)
        assert status == 401, response
        assert _refuses_more(sock)


@pytest.mark.parametrize(("path", "role", "subject", "limit"), ROUTES)
def test_chunked_body_over_the_limit_is_413_after_reading_about_the_limit(
    platform: RunningPlatform, path: str, role: str, subject: str, limit: int
) -> None:
    sources = ("urn:tsunagu:connector:test",) if role == "connector" else ()
    token = platform.token(role, subject, sources=sources)
    content_type = (
        "application/cloudevents-batch+json" if path == "/v1/events" else "application/json"
    )
    headers = {"Content-Type": content_type, "Authorization": f"Bearer {token}"}
    with _open_chunked(platform, path, headers) as sock:
        # One chunk past the limit, then nothing more: the answer comes with the body unfinished.
        _send_chunks(sock, limit + CHUNK)
        status, response = _status(sock)
        assert status == 413, response
        assert str(limit).encode() in response
        assert _refuses_more(sock)


def test_declared_body_over_the_limit_with_a_bad_token_is_401_unread(
    platform: RunningPlatform,
) -> None:
    url = urlsplit(platform.base_url)
    with socket.create_connection((url.hostname or "", url.port or 80), timeout=20) as sock:
        head = (
            f"POST /v1/me/consents HTTP/1.1\r\nHost: {url.netloc}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {ATTACK_BYTES}\r\n"
            "Authorization: Bearer not-a-token\r\n\r\n"
        )
        sock.sendall(head.encode())
        status, _ = _status(sock)
        assert status == 401


def test_small_chunked_body_with_a_good_token_still_gets_through(
    platform: RunningPlatform,
) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"partner_id": "ptn-none",'
        yield b' "purpose": "transport.planning"}'

    with platform.client() as http:
        r = http.post(
            "/v1/me/consents",
            content=chunks(),
            headers={"content-type": "application/json", **platform.auth("resident", "res-1")},
        )
    # Read whole and judged on its merits: a validation problem, not a size or token refusal.
    assert r.status_code == 422, r.text


@pytest.mark.parametrize(
    "moment", ["9999-12-01T00:00:00+00:00", "0001-01-01T00:00:00+09:00", "0001-01-01T00:00:00Z"]
)
@pytest.mark.parametrize(
    ("path", "role"),
    [
        ("/v1/statistics/trips-by-town-month", "admin"),
        ("/v1/statistics/town-flows", "auditor"),
        ("/v1/audit/entries", "auditor"),
        ("/v1/audit/refusals", "auditor"),
    ],
)
@pytest.mark.parametrize("bound", ["from", "to"])
def test_a_moment_off_the_calendar_is_a_400_problem_saying_which_years(
    platform: RunningPlatform, path: str, role: str, moment: str, bound: str
) -> None:
    name = bound if path.startswith("/v1/statistics") else {"from": "since", "to": "until"}[bound]
    with platform.client() as http:
        r = http.get(path, params={name: moment}, headers=platform.auth(role, "city-ops"))
    # The edge refuses it before the route runs (the events' years, one rule).
    assert r.status_code == 400, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert "1900-2999" in r.json()["detail"]


def test_a_consent_expiring_in_year_9999_is_a_422_problem(platform: RunningPlatform) -> None:
    with platform.client() as http:
        r = http.post(
            "/v1/me/consents",
            json={
                "partner_id": "ptn-none",
                "purpose": "transport.planning",
                "categories": ["transport.trips"],
                "expires_at": "9999-12-31T23:59:59+09:00",
            },
            headers=platform.auth("resident", "res-1"),
        )
    assert r.status_code == 422, r.text
    assert "1900-2999" in r.json()["detail"]


def test_a_webhook_on_loopback_is_a_422_problem_saying_why(platform: RunningPlatform) -> None:
    with platform.client() as http:
        r = http.post(
            "/v1/partners",
            json={
                "id": "ptn-ssrf0001",
                "name_ja": "悪い会社",
                "name_en": "Bad firm",
                "webhook_url": f"{platform.base_url}/v1/partners",
            },
            headers=platform.auth("admin", "city-ops"),
        )
        listed = http.get("/v1/partners", headers=platform.auth("admin", "city-ops"))
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert "TSUNAGU_WEBHOOK_ALLOW_PRIVATE" in r.json()["detail"]
    assert "ptn-ssrf0001" not in listed.text


def test_the_data_directory_is_readable_by_its_owner_only(platform: RunningPlatform) -> None:
    platform.ingest([make_event()])  # the store, the bus and the keys all have data now
    looked_at = 0
    for path in [platform.data_dir, *platform.data_dir.rglob("*")]:
        if path == platform.output:
            continue  # the test's own log of the server's output
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode & 0o077 == 0, f"{path} is {oct(mode)}"
        looked_at += 1
    names = {p.name for p in platform.data_dir.rglob("*")}
    assert {"store.db", "bus.db", "keys"} <= names
    assert looked_at > 5
