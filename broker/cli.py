"""The `tsunagu` command: run the platform, its worker, and check schemas."""

from __future__ import annotations

import logging
import shutil
import signal
import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from broker.audit.cli import audit_app
from broker.bus import redact
from broker.bus.cli import topics_app
from broker.connector_cli import app as connector_app
from broker.ingest.cli import deadletters_app
from broker.regionid.cli import regionid_app
from broker.settings import Settings
from contract.domains import DomainError

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from broker.auth.issuer import EmbeddedIssuer
    from broker.auth.principals import Role
    from broker.demo import DemoLife, IssueToken
    from broker.regionid.server import RegionId
    from broker.runtime import Platform
    from broker.store.migrate import Chain

app = typer.Typer(help="Tsunagu: a regional data-linkage platform.", no_args_is_help=True)
schemas_app = typer.Typer(help="The shared JSON Schemas.", no_args_is_help=True)
token_app = typer.Typer(help="Tokens of the embedded identity provider.", no_args_is_help=True)
db_app = typer.Typer(help="The store's schema: its revision and upgrades.", no_args_is_help=True)
app.add_typer(schemas_app, name="schemas")
app.add_typer(token_app, name="token")
app.add_typer(db_app, name="db")
app.add_typer(audit_app, name="audit")
app.add_typer(connector_app, name="connector")
app.add_typer(topics_app, name="topics")
app.add_typer(deadletters_app, name="deadletters")
app.add_typer(regionid_app, name="regionid")


def _logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")


@app.command()
def up(
    demo: Annotated[
        bool, typer.Option(help="Stream the synthetic region through the four connectors.")
    ] = False,
    demo_speed: Annotated[
        float,
        typer.Option(
            help="Simulated seconds per real second once the demo region has caught up with "
            "the present (1: real time; faster runs ahead of the clock)."
        ),
    ] = 1.0,
    population: Annotated[int, typer.Option(help="Residents of the demo region.")] = 2000,
) -> None:
    """Run the embedded platform: ingest worker and API together (and the demo region)."""
    import uvicorn

    from broker.api.app import create_app
    from broker.api.metrics import share_between_processes
    from broker.api.processes import ApiProcesses
    from broker.api.serve import configure_serving
    from broker.api.services import Readiness

    _logging()
    settings = Settings()
    platform = _open_platform(settings)
    worker_thread = platform.start_worker_thread()
    platform.start_consent_threads()
    base = f"http://{settings.host}:{settings.port}"
    running = _start_demo(platform, demo_speed, population) if demo else None
    identity = (
        f"OIDC {settings.oidc_issuer}"
        if settings.oidc_issuer
        else f"embedded; {_command()} token issue --role admin --sub ops"
    )
    typer.echo(
        "\nTsunagu is running.\n"
        f"  API docs        {base}/docs\n"
        f"  OpenAPI         {base}/openapi.json\n"
        f"  Schemas         {base}/v1/schemas\n"
        f"  Health          {base}/healthz  {base}/readyz\n"
        f"  Metrics         {base}/metrics\n"
        f"  Bus             {redact(settings.bus_url)}\n"
        f"  Store           {settings.store_url}\n"
        f"  Keys (JWKS)     {base}/.well-known/jwks.json\n"
        f"  Tokens          {identity}\n"
        + (
            f"  Region ID       {platform.regionid.issuer}/.well-known/openid-configuration\n"
            if platform.regionid is not None
            else ""
        )
        + (
            f"  Demo            the synthetic region ({population:,} residents) has data from "
            f"{running.region.start} on: the days since its last run are published at once, "
            f"then it streams {'in real time' if demo_speed == 1 else f'at {demo_speed:g}x'} "
            f"through the four connectors; outboxes in {settings.data_dir / 'outbox'}\n"
            + _demo_summary(settings, base, running, platform.regionid)
            if running is not None
            else ""
        )
    )
    try:
        if settings.api_processes > 1:
            # Extra processes serve the API, each on its own socket; this one keeps ingest
            # (and the demo), and each reads its worker's heartbeat for readiness. Their
            # metrics add up in whichever of them answers /metrics.
            share_between_processes(settings.data_dir)
            ApiProcesses(
                "broker.api.serve:app_beside_ingest",
                settings.host,
                settings.port,
                settings.api_processes,
            ).run()
        else:
            # /readyz reports on the worker thread and its heartbeat.
            readiness = Readiness(platform.ingest_heartbeat(), worker_thread)
            api = create_app(platform, readiness)
            configure_serving(api, settings.api_threads)
            uvicorn.run(api, host=settings.host, port=settings.port, log_level="warning")
    finally:
        # Joins every thread the platform started (the demo's connectors and partners too)
        # before the bus and the store close.
        platform.close()


def _open_platform(settings: Settings) -> Platform:
    """The platform of this process, or why it may not start (what to run) and exit code 2:
    a store it may not upgrade, or a plug-in domain that cannot join."""
    from broker.runtime import Platform
    from broker.store.migrate import StoreSchemaError

    try:
        return Platform.open(settings)
    except StoreSchemaError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    except DomainError as exc:
        typer.echo(f"tsunagu up: refused to start: {exc}", err=True)
        raise typer.Exit(2) from None


def _start_demo(platform: Any, speed: float, population: int) -> DemoLife:
    """Seed the demo's partners and consents, then stream the region and run the partners."""
    from broker.auth.origin import connector_key, master_key_of
    from broker.auth.principals import Role
    from broker.demo import DemoLife
    from connectors.demo import DemoCalendar, open_connectors, stream_region
    from connectors.readers import JST
    from connectors.region import Region
    from connectors.sdk import BusSink, LocalSchemas, OutboxInUseError
    from connectors.services import SERVICES

    settings = platform.settings
    issuer = platform.identity.issuer
    # The demo partners call the API every few seconds: a log line per request would bury
    # the platform's own log.
    logging.getLogger("httpx").setLevel(logging.WARNING)

    types = {s.source: s.event_types for s in SERVICES.values()}

    def sink_for(source: str) -> BusSink:
        # The demo connectors sign in like any connector: a token registering each for its
        # own source and event types.
        token = (
            issuer.issue(
                source,
                Role.CONNECTOR,
                sources=[source],
                event_types=types[source],
                ttl_s=30 * 24 * 3600,
            )
            if issuer is not None
            else None
        )
        key = connector_key(master_key_of(settings), source) if token is not None else None
        return BusSink(platform.bus, token, key)

    try:
        connectors = open_connectors(
            LocalSchemas(settings.schemas_dir),
            sink_for,
            settings.data_dir / "outbox",
            settings.topic_prefix,
        )
    except OutboxInUseError as exc:
        platform.close()
        typer.echo(f"tsunagu up: refused to start the demo: {exc}", err=True)
        raise typer.Exit(2) from None
    # The region lives in the present: it began HISTORY_DAYS before its first start.
    calendar = DemoCalendar.open(
        settings.data_dir / "demo" / "calendar.json", today=datetime.now(JST).date()
    )
    region = Region(seed=7, population=population, start=calendar.start)
    life = DemoLife(
        platform.consent,
        region,
        base_url=_local_url(settings),
        interval_s=settings.demo_read_interval_s,
        token_ttl_s=settings.token_ttl_s,
        issue=_audited_issue(settings, issuer) if issuer is not None else None,
        lifecycle=platform.lifecycle,
        audit=platform.audit,
    )
    # Before anything streams or reads: the demo resident's consents are there when the
    # printed page is opened.
    life.seed()
    platform.lifecycle.spawn(
        "demo-region", lambda stop: stream_region(region, connectors, stop, speed, calendar)
    )
    life.start()
    return life


def _command() -> str:
    """How to run ``tsunagu`` from the shell that started this one: its name when the PATH
    finds this very script, else its full path (``make run`` does not put .venv/bin on it)."""
    script = Path(sys.executable).parent / "tsunagu"
    found = shutil.which("tsunagu")
    if found is not None and Path(found).resolve() == script.resolve():
        return "tsunagu"
    return str(script) if script.exists() else f"{sys.executable} -m broker.cli"


def _local_url(settings: Settings) -> str:
    """Where this machine reaches the API (the demo partners call it over HTTP)."""
    host = {"0.0.0.0": "127.0.0.1", "::": "[::1]"}.get(settings.host, settings.host)
    return f"http://{host}:{settings.port}"


def _audited_issue(settings: Settings, issuer: EmbeddedIssuer) -> IssueToken:
    """Issue tokens as `tsunagu token issue` does: each one recorded in the audit log."""

    def issue(role: Role, sub: str, ttl_s: int) -> str:
        token = issuer.issue(sub, role, ttl_s=ttl_s)
        _audit_token(settings, role, sub, token)
        return token

    return issue


def _demo_summary(settings: Settings, base: str, life: DemoLife, regionid: RegionId | None) -> str:
    """The demo's lines of the summary: its partners, and the resident's and auditor's pages
    signed in with fresh tokens (or where tokens come from, under an OIDC provider)."""
    from broker.auth.principals import Role
    from broker.demo import DEMO_AUDITOR, PAGE_TOKEN_TTL_S

    indent = "\n" + " " * 18
    partners = indent.join(f"{p.name_ja} ({p.name_en}): {p.purpose}" for p in life.partners)
    reads = (
        f"each reads the API every {settings.demo_read_interval_s:g} s"
        if life.issue is not None
        else "no reads: partner tokens come from the OIDC provider"
    )
    star = life.resident.resident_id
    theirs = ", ".join(g.partner.name_ja for g in life.grants if g.subject == star)
    lines = (
        f"  Demo partners   {partners}{indent}{reads}; {len(life.grants):,} consents planned\n"
        f"  Demo resident   {star}, consenting to {theirs}\n"
    )
    if regionid is not None:
        from broker.demo.logins import seed_logins

        logins = seed_logins(regionid.directory, settings.data_dir, star)
        lines += "".join(
            f"  {'Region ID login':<16}{login.role}: {login.username} / {login.password}\n"
            for login in logins
        )
    if life.issue is None:
        provider = settings.oidc_issuer
        return lines + (
            f"  Resident page   {base}/resident  (sign in with a token of {provider})\n"
            f"  Auditor page    {base}/auditor  (sign in with a token of {provider})\n"
        )
    resident = life.issue(Role.RESIDENT, life.resident.resident_id, PAGE_TOKEN_TTL_S)
    auditor = life.issue(Role.AUDITOR, DEMO_AUDITOR, PAGE_TOKEN_TTL_S)
    return lines + (
        f"  Resident page   {base}/resident#token={resident}\n"
        f"  Auditor page    {base}/auditor#token={auditor}\n"
    )


@app.command()
def worker() -> None:
    """Run one ingest worker (join the consumer group; scale by running more)."""
    from broker.api.metrics import serve_metrics

    _logging()
    platform = _open_platform(Settings())

    def _stop(*_: Any) -> None:
        platform.stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    platform.start_change_listener()  # an erasure elsewhere evicts the subject's key here
    platform.start_chain_verifier()
    platform.start_bus_retention()  # on the SQLite log; Kafka enforces its own
    settings = platform.settings
    if serve_metrics(settings.host, settings.metrics_port, "ingest worker"):
        typer.echo(f"metrics on http://{settings.host}:{settings.metrics_port}/metrics")
    typer.echo(f"ingest worker consuming {redact(platform.settings.bus_url)}")
    try:
        platform.worker().run(platform.stop)
    finally:
        platform.close()


@token_app.command("issue")
def token_issue(
    role: Annotated[str, typer.Option(help="connector, partner, resident, auditor or admin")],
    sub: Annotated[
        str, typer.Option(help="The subject: a partner id, a resident id, a connector name, ...")
    ],
    source: Annotated[
        list[str] | None,
        typer.Option(help="A CloudEvents source a connector may publish as (repeatable)."),
    ] = None,
    event_type: Annotated[
        list[str] | None,
        typer.Option(
            help="An event type a connector is registered for, or DOMAIN.* for all of a "
            "domain's (repeatable; a connector needs at least one)."
        ),
    ] = None,
    ttl: Annotated[int | None, typer.Option(help="Lifetime in seconds.")] = None,
) -> None:
    """Print a token signed by the embedded issuer (development and the embedded default)."""
    from broker.auth.issuer import EmbeddedIssuer
    from broker.auth.principals import Role

    settings = Settings()
    if settings.oidc_issuer:
        typer.echo(
            f"this platform trusts {settings.oidc_issuer}: ask that provider for tokens", err=True
        )
        raise typer.Exit(2)
    try:
        role_ = Role(role)
    except ValueError:
        typer.echo(f"unknown role {role!r}; one of {', '.join(r.value for r in Role)}", err=True)
        raise typer.Exit(2) from None
    issuer = EmbeddedIssuer.in_data_dir(settings.data_dir, audience=settings.oidc_audience)
    try:
        token = issuer.issue(
            sub,
            role_,
            sources=source or (),
            event_types=event_type or (),
            ttl_s=ttl or settings.token_ttl_s,
        )
    except ValueError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    _audit_token(settings, role_, sub, token)
    typer.echo(token)


@token_app.command("key")
def token_key(
    sub: Annotated[str, typer.Option(help="The connector: its tokens' subject.")],
) -> None:
    """Print a connector's bus key: with it, the connector's records carry their MAC, which
    proves them its own (give it to the connector's operator like a password)."""
    from broker.auth.origin import connector_key, master_key_of
    from contract.origin import encode_key

    typer.echo(encode_key(connector_key(master_key_of(Settings()), sub)))


def _audit_token(settings: Settings, role: Any, sub: str, token: str) -> None:
    """Record the issue in the audit log (a resident's id only as their audit reference)."""
    import jwt

    from broker.audit import AuditLog, EntryKind
    from broker.auth.principals import Role
    from broker.store.database import make_engine
    from consent.keys import KeyRing

    claims = jwt.decode(token, options={"verify_signature": False})
    engine = make_engine(settings.store_url, upgrade=settings.upgrades_on_start(settings.store_url))
    personal = role in (Role.RESIDENT,)
    with AuditLog(engine, KeyRing.in_data_dir(settings.data_dir), background=False) as audit:
        audit.append_now(
            EntryKind.TOKEN_ISSUED,
            actor="tsunagu token issue",
            subject=sub if personal else None,
            role=role.value,
            jti=claims["jti"],
            expires_at=claims["exp"],
            **({} if personal else {"sub": sub}),
        )
    engine.dispose()


@schemas_app.command("check")
def schemas_check(
    directory: Annotated[
        Path | None, typer.Argument(help="The schemas directory (default: the shipped one).")
    ] = None,
) -> None:
    """Check every schema against the meta-schema and every version chain against its mode."""
    from broker.registry.catalogue import check_directory

    root = directory or Settings().schemas_dir
    if not root.is_dir():
        typer.echo(f"{root}: no such directory", err=True)
        raise typer.Exit(2)
    problems = check_directory(root)
    for problem in problems:
        typer.echo(problem, err=True)
    if problems:
        typer.echo(f"{len(problems)} problem(s) in {root}", err=True)
        raise typer.Exit(1)
    typer.echo(f"{root}: every schema and version chain is valid")


def _databases(settings: Settings) -> list[tuple[Chain, Engine]]:
    """The store and the vault, each with its chain of migrations (plain engines)."""
    from broker.store.database import connect
    from broker.store.migrate import STORE, VAULT
    from consent.vault import vault_engine

    return [(STORE, connect(settings.store_url)), (VAULT, vault_engine(settings.vault_store_url))]


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Upgrade the store and the vault to this release's schema; refuse a newer one."""
    from broker.store.migrate import StoreSchemaError, StoreState, upgrade

    _logging()
    before = {StoreState.EMPTY: "empty", StoreState.LEGACY: "the release before migrations"}
    for chain, engine in _databases(Settings()):
        where = engine.url.render_as_string(hide_password=True)
        try:
            was = upgrade(engine, chain)
        except StoreSchemaError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        finally:
            engine.dispose()
        if was.state is StoreState.CURRENT:
            typer.echo(f"{chain.name} {where}: already at revision {was.head}")
        else:
            was_at = before.get(was.state, was.current)
            typer.echo(f"{chain.name} {where}: upgraded from {was_at} to {was.head}")


@db_app.command("current")
def db_current() -> None:
    """Print the revisions of the store and the vault against this release's; exit 1 unless
    both are current."""
    from broker.store.migrate import StoreState, revisions

    behind = False
    for chain, engine in _databases(Settings()):
        try:
            found = revisions(engine, chain)
        finally:
            engine.dispose()
        shown = found.current or {StoreState.EMPTY: "none (empty)"}.get(
            found.state, "none (the release before migrations)"
        )
        typer.echo(f"{chain.name} at {shown}, this release at {found.head} ({found.state.value})")
        behind = behind or found.state is not StoreState.CURRENT
    if behind:
        raise typer.Exit(1)


def main() -> None:
    """Entry point for `python -m broker.cli`."""
    app()


if __name__ == "__main__":
    main()
