"""The health-points connector's readers: daily step counts and check-up attendance become
point awards by the programme's published rules; redemptions come from a second export.

Each award names the rule that produced it (``rule_id``, ``rule_name``), so a resident can
see why they got what they got. The rules live in a JSON file the programme publishes
(``connectors/samples/health/rules.json`` is the sample):

- walking: the highest ``min_steps`` threshold met wins (8,000 steps → the 8,000 rule only);
  below every threshold there is no award, and that is not an error;
- checkup: one rule per check-up kind;
- ``daily_caps``: at most this many points per resident, day and kind, across all rows of
  that resident and day (a second sync the same day gets only what is left under the cap).

Column formats: ``connectors/samples/README.md``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path
from typing import Any

from connectors.readers import (
    RECORD_ID,
    CsvSource,
    Fields,
    Row,
    Seen,
    end_of_day,
    iso,
    map_rows,
    numbered,
    read_csv,
)
from connectors.sdk.rows import EventDraft, RowError

__all__ = [
    "EVENT_TYPES",
    "POINTS_AWARDED",
    "POINTS_REDEEMED",
    "SAMPLE_RULES",
    "SOURCE",
    "DailyPoints",
    "Programme",
    "Rule",
    "RulesError",
    "award_drafts",
    "load_programme",
    "programme_from_dict",
    "read_activities_csv",
    "read_redemptions_csv",
    "redemption_drafts",
]

SOURCE = "urn:tsunagu:connector:mitoyo-kenko"
POINTS_AWARDED = "health.points.awarded"
POINTS_REDEEMED = "health.points.redeemed"
EVENT_TYPES: tuple[str, ...] = (POINTS_AWARDED, POINTS_REDEEMED)

SAMPLE_RULES = Path(__file__).parent / "samples" / "health" / "rules.json"

KINDS = ("walking", "checkup")
CHECKUP_KINDS = (
    "specific_health_checkup",
    "elderly_health_checkup",
    "cancer_screening",
    "dental_checkup",
    "comprehensive_checkup",
)
REWARDS = ("local_currency", "goods", "public_transport_ticket", "donation")

#: Columns every activities export must have.
ACTIVITY_REQUIRED = ("record_id", "resident_id", "date", "kind")
#: Every column the activities reader reads, in the documented order.
ACTIVITY_COLUMNS = (*ACTIVITY_REQUIRED, "steps", "checkup_kind", "recorded_at", "age_band")
#: Age bands of the programme's participants, as published for statistics (optional column).
AGE_BANDS = ("0-14", "15-39", "40-64", "65-74", "75+")
#: Columns every redemptions export must have.
REDEMPTION_REQUIRED = ("redemption_id", "resident_id", "points", "reward", "redeemed_at")
#: Every column the redemptions reader reads, in the documented order.
REDEMPTION_COLUMNS = (
    "redemption_id",
    "resident_id",
    "points",
    "reward",
    "reward_name",
    "balance_after",
    "redeemed_at",
)


class RulesError(ValueError):
    """A rules file that cannot be used; the message says where and why."""


@dataclass(frozen=True, slots=True)
class Rule:
    """One published rule: what it awards and for what."""

    rule_id: str
    name: str
    kind: str  # walking | checkup
    points: int
    min_steps: int | None = None  # walking
    checkup_kind: str | None = None  # checkup


@dataclass(frozen=True, slots=True)
class Programme:
    """A health-points programme and its rules."""

    programme_id: str
    name: str
    rules: tuple[Rule, ...]
    daily_caps: Mapping[str, int] = field(default_factory=dict)
    expires_at_fiscal_year_end: bool = False

    def walking_rule(self, steps: int) -> Rule | None:
        """The walking rule with the highest threshold ``steps`` meets, if any."""
        met = [r for r in self.rules if r.kind == "walking" and (r.min_steps or 0) <= steps]
        return max(met, key=lambda r: r.min_steps or 0, default=None)

    def checkup_rule(self, checkup_kind: str) -> Rule | None:
        """The rule for this kind of check-up, if the programme awards it."""
        return next((r for r in self.rules if r.checkup_kind == checkup_kind), None)

    def expires_on(self, day: date) -> date | None:
        """When points earned on ``day`` expire (Japan's fiscal year ends on 31 March)."""
        if not self.expires_at_fiscal_year_end:
            return None
        return date(day.year + 1 if day.month >= 4 else day.year, 3, 31)


_KIND_NAMES: dict[type[Any], str] = {int: "an integer", str: "a string", list: "a list"}


def _need(doc: Mapping[str, Any], key: str, kind: type[Any], where: str) -> Any:
    value = doc.get(key)
    if not isinstance(value, kind) or isinstance(value, bool):  # JSON true is no count
        raise RulesError(f"{where}: {key} must be {_KIND_NAMES[kind]}, not {value!r}")
    return value


def programme_from_dict(doc: Mapping[str, Any]) -> Programme:
    """A programme from the parsed rules JSON; raises ``RulesError`` saying what is wrong."""
    programme_id = _need(doc, "programme_id", str, "rules")
    if not RECORD_ID.fullmatch(programme_id):
        raise RulesError(f"rules: programme_id {programme_id!r} is not a valid id")
    rules: list[Rule] = []
    for i, item in enumerate(_need(doc, "rules", list, "rules")):
        where = f"rules[{i}]"
        if not isinstance(item, dict):
            raise RulesError(f"{where}: must be an object")
        rule_id = _need(item, "rule_id", str, where)
        if not RECORD_ID.fullmatch(rule_id):
            raise RulesError(f"{where}: rule_id {rule_id!r} is not a valid id")
        kind = _need(item, "kind", str, where)
        points = _need(item, "points", int, where)
        if not 1 <= points <= 100_000:
            raise RulesError(f"{where}: points must be 1-100000")
        rule = Rule(rule_id, _need(item, "name", str, where), kind, points)
        if kind == "walking":
            rule = replace(rule, min_steps=_need(item, "min_steps", int, where))
            if not 0 <= (rule.min_steps or 0) <= 200_000:
                raise RulesError(f"{where}: min_steps must be 0-200000")
        elif kind == "checkup":
            checkup_kind = _need(item, "checkup_kind", str, where)
            if checkup_kind not in CHECKUP_KINDS:
                known = ", ".join(CHECKUP_KINDS)
                raise RulesError(f"{where}: checkup_kind {checkup_kind!r} is not one of {known}")
            rule = replace(rule, checkup_kind=checkup_kind)
        else:
            raise RulesError(f"{where}: kind {kind!r} is not walking or checkup")
        rules.append(rule)
    ids = [r.rule_id for r in rules]
    if len(set(ids)) != len(ids):
        raise RulesError("rules: a rule_id appears twice")
    caps = doc.get("daily_caps", {})
    if not isinstance(caps, dict) or not all(
        k in KINDS and isinstance(v, int) and v > 0 for k, v in caps.items()
    ):
        raise RulesError("rules: daily_caps must map walking/checkup to positive integers")
    expiry = doc.get("points_expire")
    if expiry not in (None, "end_of_fiscal_year"):
        raise RulesError(f"rules: points_expire {expiry!r} is not null or end_of_fiscal_year")
    return Programme(
        programme_id,
        _need(doc, "programme_name", str, "rules"),
        tuple(rules),
        dict(caps),
        expiry == "end_of_fiscal_year",
    )


def load_programme(path: str | os.PathLike[str] = SAMPLE_RULES) -> Programme:
    """A programme from its published rules file (JSON)."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise RulesError(f"{path}: {e}") from None
    if not isinstance(doc, dict):
        raise RulesError(f"{path}: must hold a JSON object")
    return programme_from_dict(doc)


class DailyPoints:
    """Points already awarded per resident, day and kind: where the daily caps are enforced.

    One reader call keeps its own; pass one in to carry the caps across exports (a second
    file for the same day).
    """

    __slots__ = ("_used",)

    def __init__(self) -> None:
        self._used: dict[tuple[str, date, str], int] = {}

    def grant(self, resident_id: str, day: date, kind: str, points: int, cap: int | None) -> int:
        """Record and return the points that fit under ``cap`` (all of them when no cap)."""
        key = (resident_id, day, kind)
        used = self._used.get(key, 0)
        granted = points if cap is None else max(0, min(points, cap - used))
        if granted:
            self._used[key] = used + granted
        return granted


def award_drafts(
    rows: Iterable[Row], programme: Programme, *, ledger: DailyPoints | None = None
) -> Iterator[EventDraft | RowError]:
    """``health.points.awarded`` drafts from activity rows (first row = line 2)."""
    return _awards(numbered(rows), programme, ledger or DailyPoints())


def read_activities_csv(
    source: CsvSource,
    programme: Programme,
    *,
    ledger: DailyPoints | None = None,
    encoding: str = "utf-8-sig",
) -> Iterator[EventDraft | RowError]:
    """``health.points.awarded`` drafts from the programme's activities CSV."""
    rows = read_csv(source, ACTIVITY_REQUIRED, encoding=encoding)
    return _awards(rows, programme, ledger or DailyPoints())


def _awards(
    rows: Iterable[tuple[int, Row] | RowError], programme: Programme, ledger: DailyPoints
) -> Iterator[EventDraft | RowError]:
    seen = Seen()

    def convert(line: int, f: Fields) -> EventDraft | None:
        record_id = f.record_id("record_id")
        seen.once(f, "record_id", record_id, line)
        resident_id = f.resident_id("resident_id")
        day = f.day("date")
        kind = f.choice("kind", KINDS)
        detail: dict[str, Any]
        if kind == "walking":
            steps = f.integer("steps", 0, 200_000)
            rule = programme.walking_rule(steps)
            if rule is None:
                return None  # below every threshold: nothing earned, nothing wrong
            detail = {"steps": steps}
        else:
            checkup_kind = f.choice("checkup_kind", CHECKUP_KINDS)
            rule = programme.checkup_rule(checkup_kind)
            if rule is None:
                raise f.fail(
                    "checkup_kind", f"programme {programme.programme_id} has no rule for it"
                )
            detail = {"checkup_kind": checkup_kind}
        at = f.timestamp("recorded_at") if f.has("recorded_at") else end_of_day(day)
        points = ledger.grant(resident_id, day, kind, rule.points, programme.daily_caps.get(kind))
        if not points:
            return None  # the day's cap is already reached
        data: dict[str, Any] = {
            "award_id": record_id,
            "resident_id": resident_id,
            "programme_id": programme.programme_id,
            "rule_id": rule.rule_id,
            "rule_name": rule.name,
            "reason": kind,
            **detail,
            "points": points,
            "date": day.isoformat(),
        }
        expires = programme.expires_on(day)
        if expires is not None:
            data["expires_on"] = expires.isoformat()
        if f.has("age_band"):
            data["age_band"] = f.choice("age_band", AGE_BANDS)
        return EventDraft(POINTS_AWARDED, resident_id, data, record_id, at, line)

    return map_rows(rows, convert)


def redemption_drafts(rows: Iterable[Row], programme: Programme) -> Iterator[EventDraft | RowError]:
    """``health.points.redeemed`` drafts from redemption rows (first row = line 2)."""
    return _redemptions(numbered(rows), programme)


def read_redemptions_csv(
    source: CsvSource, programme: Programme, *, encoding: str = "utf-8-sig"
) -> Iterator[EventDraft | RowError]:
    """``health.points.redeemed`` drafts from the programme's redemptions CSV."""
    return _redemptions(read_csv(source, REDEMPTION_REQUIRED, encoding=encoding), programme)


def _redemptions(
    rows: Iterable[tuple[int, Row] | RowError], programme: Programme
) -> Iterator[EventDraft | RowError]:
    seen = Seen()

    def convert(line: int, f: Fields) -> EventDraft:
        redemption_id = f.record_id("redemption_id")
        seen.once(f, "redemption_id", redemption_id, line)
        resident_id = f.resident_id("resident_id")
        redeemed = f.timestamp("redeemed_at")
        data: dict[str, Any] = {
            "redemption_id": redemption_id,
            "resident_id": resident_id,
            "programme_id": programme.programme_id,
            "points": f.integer("points", 1, 1_000_000),
            "reward": f.choice("reward", REWARDS),
        }
        if f.has("reward_name"):
            data["reward_name"] = f.text("reward_name")
        if f.has("balance_after"):
            data["balance_after"] = f.integer("balance_after", 0, 100_000_000)
        data["redeemed_at"] = iso(redeemed)
        return EventDraft(POINTS_REDEEMED, resident_id, data, redemption_id, redeemed, line)

    return map_rows(rows, convert)
