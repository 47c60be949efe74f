"""`tsunagu regionid`: the region ID's administration (registering service companies)."""

from __future__ import annotations

from typing import Annotated

import typer

from broker.settings import Settings

regionid_app = typer.Typer(
    help="The region ID (the embedded OpenID provider).", no_args_is_help=True
)
client_app = typer.Typer(help="Service companies registered as clients.", no_args_is_help=True)
regionid_app.add_typer(client_app, name="client")


@client_app.command("add")
def client_add(
    client_id: Annotated[str, typer.Argument(help="The client id (e.g. the firm's code).")],
    name: Annotated[str, typer.Option(help="The firm's name, shown on the sign-in page.")],
    redirect_uri: Annotated[
        list[str],
        typer.Option(help="An exact redirect URI of the firm's app (repeat for several)."),
    ],
    sector: Annotated[
        str | None,
        typer.Option(
            help="The firm's sector (its pairwise subjects' scope); default: the redirect "
            "URIs' host."
        ),
    ] = None,
    public: Annotated[
        bool, typer.Option(help="A public client (an app that keeps no secret): PKCE alone.")
    ] = False,
    connector: Annotated[
        str | None,
        typer.Option(
            help="The connector publishing the firm's events (its token's subject), whose "
            "events under the firm's subjects resolve to residents; default: the client id."
        ),
    ] = None,
) -> None:
    """Register a service company as a client; prints its secret once."""
    from broker.audit import AuditLog, EntryKind
    from broker.regionid.directory import Directory
    from broker.regionid.errors import ClientRegistrationError
    from broker.store.database import make_engine
    from consent.keys import KeyRing

    settings = Settings()
    engine = make_engine(settings.store_url, upgrade=settings.upgrades_on_start(settings.store_url))
    try:
        try:
            added = Directory(engine).add_client(
                client_id, name, redirect_uri, sector=sector, public=public, connector=connector
            )
        except ClientRegistrationError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        with AuditLog(engine, KeyRing.in_data_dir(settings.data_dir), background=False) as audit:
            audit.append_now(
                EntryKind.ADMIN_CHANGE,
                actor="tsunagu regionid client add",
                action="regionid_client_add",
                target=client_id,
                detail=f"sector {added.sector}; connector {connector or client_id}; "
                f"redirect URIs {' '.join(added.redirect_uris)}",
            )
    finally:
        engine.dispose()
    typer.echo(f"client_id      {added.client_id}")
    typer.echo(f"client_secret  {added.secret or '(none: a public client, PKCE alone)'}")
    typer.echo(f"sector         {added.sector}")
    typer.echo(f"connector      {connector or client_id}")
    typer.echo(f"issuer         {settings.regionid_issuer_url}")
