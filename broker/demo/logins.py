"""The demo's region ID accounts: a resident (proofed with the My Number card) and an auditor
(checked at the counter), whose logins `tsunagu up --demo` prints. Their passwords are made
at the first run and kept in ``<data_dir>/demo/regionid-logins.json`` (mode 0600)."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from broker.regionid.directory import Directory
from broker.regionid.proofing import Proofing
from consent.keys import create_private_file_once

DEMO_RESIDENT_LOGIN = "hanako"
DEMO_AUDITOR_LOGIN = "auditor"


@dataclass(frozen=True, slots=True)
class DemoLogin:
    """A demo account's username and password, and its role."""

    username: str
    password: str
    role: str


def _passwords(path: Path) -> dict[str, str]:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        made = {
            name: secrets.token_urlsafe(9) for name in (DEMO_RESIDENT_LOGIN, DEMO_AUDITOR_LOGIN)
        }
        create_private_file_once(path, json.dumps(made).encode())
    found: dict[str, str] = json.loads(path.read_text())
    return found


def seed_logins(
    directory: Directory, data_dir: Path, resident_id: str | None = None
) -> list[DemoLogin]:
    """Create the demo resident's and auditor's accounts if missing; their logins. The
    resident's account is ``resident_id``, the demo resident's id on the platform."""
    passwords = _passwords(data_dir / "demo" / "regionid-logins.json")
    if directory.by_username(DEMO_RESIDENT_LOGIN) is None:
        directory.add_account(
            DEMO_RESIDENT_LOGIN,
            passwords[DEMO_RESIDENT_LOGIN],
            role="resident",
            proofing=Proofing.MYNUMBER_CARD,
            proofed_at=datetime(2026, 4, 1, 10, 0, tzinfo=UTC),
            name="三豊 花子",
            birthdate="1956-04-01",
            account_id=resident_id,
        )
    if directory.by_username(DEMO_AUDITOR_LOGIN) is None:
        directory.add_account(
            DEMO_AUDITOR_LOGIN,
            passwords[DEMO_AUDITOR_LOGIN],
            role="auditor",
            proofing=Proofing.COUNTER,
            proofed_at=datetime(2026, 4, 1, 9, 0, tzinfo=UTC),
            name="監査 一郎",
        )
    return [
        DemoLogin(DEMO_RESIDENT_LOGIN, passwords[DEMO_RESIDENT_LOGIN], "resident"),
        DemoLogin(DEMO_AUDITOR_LOGIN, passwords[DEMO_AUDITOR_LOGIN], "auditor"),
    ]
