"""``tsunagu deadletters``: list, show and replay the dead letters of either bus.

Exit codes: 0 done (``list`` also when there is none), 2 an error (the bus unreachable or a
wrong bus URL, a bad option or file), 3 no such dead letter, 4 the replay was refused (an
``unauthenticated`` dead letter, a changed event id, a token that does not name the event's
source or type), 5 the event would be dead-lettered again (it names the reason and path).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import orjson
import typer

from broker.bus import open_bus, redact
from broker.ingest.deadletters import (
    DeadLetter,
    ReplayRefusedError,
    StillInvalidError,
    UnknownDeadLetterError,
    dead_letter_topics,
    find,
    read_dead_letters,
    replay_event,
    replay_plan,
    select,
)
from broker.progress import progress
from broker.settings import Settings
from contract.bus import Bus, BusError
from contract.deadletter import DeadLetterReason
from contract.domains import DOMAINS
from contract.origin import OriginSigner

deadletters_app = typer.Typer(
    help="Dead letters: events the platform refused, with why; replay one after a fix.",
    no_args_is_help=True,
)

EXIT_ERROR = 2
EXIT_UNKNOWN_REF = 3
EXIT_REFUSED = 4
EXIT_STILL_INVALID = 5

_DURATION = re.compile(r"(\d+)([smhd])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}

BusOpt = Annotated[str | None, typer.Option("--bus", help="Bus URL (default: TSUNAGU_BUS).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="JSON for machines.")]
TimeoutOpt = Annotated[
    float, typer.Option("--timeout", min=1, help="Seconds to wait for the bus to answer.")
]


def _fail(code: int, message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


@contextmanager
def _bus(url: str) -> Iterator[Bus]:
    """The bus of ``url``; a wrong URL or an unreachable bus ends the command (exit 2)."""
    try:
        bus = open_bus(url)
    except BusError as exc:
        raise _fail(EXIT_ERROR, str(exc)) from None
    try:
        yield bus
    except BusError as exc:
        raise _fail(EXIT_ERROR, f"{redact(url)}: {exc}") from None
    finally:
        bus.close()


def _since(text: str | None) -> datetime | None:
    if text is None:
        return None
    if m := _DURATION.fullmatch(text.strip()):
        return datetime.now(UTC) - timedelta(**{_UNITS[m[2]]: int(m[1])})
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise _fail(
            EXIT_ERROR,
            f"--since {text!r}: give a moment with its zone (2026-11-02T09:00+09:00) "
            "or a duration back from now (90m, 6h, 7d)",
        )
    return moment


def _topics(domain: str | None, prefix: str) -> list[str]:
    if domain is None:
        return dead_letter_topics(DOMAINS.names(), prefix)
    name = domain.removesuffix(".dlq")
    if name == "unrouted":
        return dead_letter_topics((), prefix)
    if name not in DOMAINS:
        known = ", ".join([*DOMAINS.names(), "unrouted"])
        raise _fail(EXIT_ERROR, f"--domain {domain!r} is no domain; the domains are {known}")
    return dead_letter_topics([name], prefix)[:1]


def _line(letter: DeadLetter) -> str:
    return "  ".join(
        [
            letter.at.astimezone().isoformat(timespec="seconds"),
            letter.ref,
            letter.event_id or "-",
            letter.source or "-",
            letter.event_type or "-",
            letter.reason or "-",
            letter.path or "-",
        ]
    )


@deadletters_app.command("list")
def list_(
    domain: Annotated[
        str | None,
        typer.Option(
            "--domain",
            "--topic",
            help="Only this domain's dead letters (transport, or transport.dlq; unrouted).",
        ),
    ] = None,
    source: Annotated[
        str | None, typer.Option("--source", help="Only events claiming this source.")
    ] = None,
    reason: Annotated[
        str | None, typer.Option("--reason", help="Only this reason (schema_violation, ...).")
    ] = None,
    since: Annotated[
        str | None,
        typer.Option("--since", help="Only since this moment (with its zone) or e.g. 6h, 7d."),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many.")] = 50,
    as_json: JsonOpt = False,
    bus: BusOpt = None,
    timeout: TimeoutOpt = 30.0,
) -> None:
    """Dead letters, newest first: when, reference, event id, source, type, reason, path."""
    settings = Settings()
    if reason is not None and reason not in {r.value for r in DeadLetterReason}:
        known = ", ".join(r.value for r in DeadLetterReason)
        raise _fail(EXIT_ERROR, f"--reason {reason!r} is no reason; the reasons are {known}")
    topics = _topics(domain, settings.topic_prefix)
    moment = _since(since)
    with _bus(bus or settings.bus_url) as b, progress("reading dead letters") as meter:
        letters = read_dead_letters(b, topics, timeout_s=timeout, steps=meter)
    chosen = select(letters, source=source, reason=reason, since=moment, limit=limit)
    if as_json:
        typer.echo(orjson.dumps([d.summary() for d in chosen]).decode())
        return
    for letter in chosen:
        typer.echo(_line(letter))
    if not chosen:
        typer.echo("no dead letters", err=True)


@deadletters_app.command("show")
def show(
    ref: Annotated[str, typer.Argument(help="The dead letter, as list prints it: topic/p/offset")],
    as_json: JsonOpt = False,
    bus: BusOpt = None,
    timeout: TimeoutOpt = 30.0,
) -> None:
    """One dead letter: its reason, JSON path and detail, and the event as it keeps it."""
    settings = Settings()
    with _bus(bus or settings.bus_url) as b:
        letter = _find(b, ref, timeout)
    details = letter.details()
    if as_json:
        typer.echo(orjson.dumps(details).decode())
        return
    for name in ("ref", "at", "reason", "path", "detail", "event_id", "source", "type", "schema"):
        typer.echo(f"{name:9} {details[name] or '-'}")
    typer.echo(f"{'origin':9} {details['origin'] or '-'}")
    typer.echo("event:")
    typer.echo(orjson.dumps(details["event"], option=orjson.OPT_INDENT_2).decode())


def _find(bus: Bus, ref: str, timeout: float) -> DeadLetter:
    try:
        return find(bus, ref, timeout_s=timeout)
    except UnknownDeadLetterError as exc:
        raise _fail(EXIT_UNKNOWN_REF, str(exc)) from None


@deadletters_app.command("replay")
def replay(
    ref: Annotated[str, typer.Argument(help="The dead letter, as list prints it: topic/p/offset")],
    file: Annotated[
        Path | None,
        typer.Option(
            "--file",
            exists=True,
            dir_okay=False,
            help="The fixed event (one CloudEvent, JSON); its id must stay the dead letter's.",
        ),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            envvar="TSUNAGU_CONNECTOR_TOKEN",
            help="The connector's token (default: on the platform's machine, its own).",
        ),
    ] = None,
    key: Annotated[
        str | None,
        typer.Option(
            "--key", envvar="TSUNAGU_CONNECTOR_KEY", help="The connector's bus key, with --token."
        ),
    ] = None,
    bus: BusOpt = None,
    timeout: TimeoutOpt = 30.0,
) -> None:
    """Publish a dead letter's event again (or its fixed version) as its connector, to be
    judged by ingest like any new event; the same event id, so a second replay adds nothing."""
    from broker.auth.errors import TokenRejectedError
    from broker.auth.provider import open_identity
    from broker.registry.catalogue import SchemaRegistry
    from contract.validation import EventValidator

    settings = Settings()
    fixed = file.read_bytes() if file is not None else None
    with _bus(bus or settings.bus_url) as b:
        letter = _find(b, ref, timeout)
        try:
            event = replay_event(letter, fixed)
            credentials = _credentials(event.source, token, key)
            identity = open_identity(settings)
            try:
                principal = identity.verifier.verify(credentials[0])
            except TokenRejectedError as exc:
                raise _fail(EXIT_REFUSED, f"the connector token is refused: {exc.detail}") from None
            finally:
                identity.verifier.close()
            registry = SchemaRegistry.from_directory(settings.schemas_dir, DOMAINS)
            validator = EventValidator(
                registry, settings.max_event_bytes, settings.topic_prefix, domains=DOMAINS.names()
            )
            plan = replay_plan(
                letter,
                event,
                principal,
                OriginSigner(*credentials),
                validator,
                fixed=fixed,
                topic_prefix=settings.topic_prefix,
                domains=DOMAINS.names(),
            )
        except ReplayRefusedError as exc:
            raise _fail(EXIT_REFUSED, str(exc)) from None
        except StillInvalidError as exc:
            raise _fail(EXIT_STILL_INVALID, f"{ref}: the event is {exc}") from None
        b.publish(plan.topic, [plan.record])
    typer.echo(
        f"replayed {ref} as event {plan.event.id} on {plan.topic}, signed by "
        f"{principal.subject}; ingest judges it again (a repeat of an event it has is dropped)"
    )


def _credentials(source: str, token: str | None, key: str | None) -> tuple[str, bytes]:
    """The token and MAC key of the connector publishing as ``source``: the given ones, or on
    the platform's machine (embedded identity) those of the service connector of that source."""
    from broker.connector_cli import bus_credentials
    from connectors.services import SERVICES, Service

    service = next((s for s in SERVICES.values() if s.source == source), None)
    if token is None and service is None:
        raise _fail(
            EXIT_REFUSED,
            f"no connector of this machine publishes as {source!r}: pass --token and --key of "
            "the connector that does",
        )
    # With --token the service is not looked at: the token says who the connector is.
    given, mac_key = bus_credentials(service or Service("", source, ()), token, key)
    if given is None or mac_key is None:
        raise _fail(
            EXIT_REFUSED,
            "the platform trusts an OIDC provider: pass the connector's --token and --key",
        )
    return given, mac_key
