"""The health connector's readers: step counts and check-ups become awards by the programme's
published rules, each award naming the rule that produced it; redemptions are read as sent.
"""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from connectors import health
from connectors.health import DailyPoints, Programme, RulesError
from connectors.sdk.rows import RowError
from tests.connectors.test_readers_csv import SAMPLES, schema_problems, split

JST = timezone(timedelta(hours=9))
HEALTH = SAMPLES / "health"


@pytest.fixture(scope="module")
def programme() -> Programme:
    return health.load_programme(HEALTH / "rules.json")


def walk(resident: str, day: str, steps: int, record: str) -> dict[str, str]:
    return {
        "record_id": record,
        "resident_id": resident,
        "date": day,
        "kind": "walking",
        "steps": str(steps),
    }


class TestRules:
    def test_the_published_rules_load(self, programme: Programme) -> None:
        assert programme.programme_id == "mitoyo-kenko-2025"
        assert programme.name == "みとよ健康ポイント 2025"
        assert programme.daily_caps == {"walking": 15, "checkup": 800}
        assert {r.kind for r in programme.rules} == {"walking", "checkup"}

    @pytest.mark.parametrize(
        ("steps", "rule_id", "points"),
        [
            (5000, "walk-5000-steps", 5),
            (7999, "walk-5000-steps", 5),
            (8000, "walk-8000-steps", 10),
            (9120, "walk-8000-steps", 10),
            (25000, "walk-10000-steps", 15),
        ],
    )
    def test_the_highest_threshold_met_wins_and_the_award_names_it(
        self, programme: Programme, steps: int, rule_id: str, points: int
    ) -> None:
        [award] = list(
            health.award_drafts([walk("res-a1b2c3d4", "2025-06-11", steps, "s1")], programme)
        )
        assert not isinstance(award, RowError)
        assert (award.data["rule_id"], award.data["points"], award.data["steps"]) == (
            rule_id,
            points,
            steps,
        )
        assert award.data["rule_name"] == next(
            r.name for r in programme.rules if r.rule_id == rule_id
        )

    @pytest.mark.parametrize("steps", [0, 1200, 4999])
    def test_below_every_threshold_there_is_no_event_and_no_error(
        self, programme: Programme, steps: int
    ) -> None:
        assert (
            list(health.award_drafts([walk("res-a1b2c3d4", "2025-06-11", steps, "s1")], programme))
            == []
        )

    def test_the_daily_cap_holds_across_rows_of_the_same_resident_and_day(
        self, programme: Programme
    ) -> None:
        rows = [
            walk("res-a1b2c3d4", "2025-06-11", 9120, "s1"),  # 10
            walk("res-a1b2c3d4", "2025-06-11", 10400, "s2"),  # 15 wanted, 5 left under 15
            walk("res-a1b2c3d4", "2025-06-11", 12000, "s3"),  # the cap is reached: no event
            walk("res-a1b2c3d4", "2025-06-12", 12000, "s4"),  # a new day: 15
            walk("res-k9x2m4p7", "2025-06-11", 12000, "s5"),  # someone else: 15
        ]
        drafts, errors = split(health.award_drafts(rows, programme))
        assert errors == []
        assert [(d.natural_key, d.data["rule_id"], d.data["points"]) for d in drafts] == [
            ("s1", "walk-8000-steps", 10),
            ("s2", "walk-10000-steps", 5),
            ("s4", "walk-10000-steps", 15),
            ("s5", "walk-10000-steps", 15),
        ]

    def test_a_ledger_carries_the_cap_across_exports(self, programme: Programme) -> None:
        ledger = DailyPoints()
        first = [walk("res-a1b2c3d4", "2025-06-11", 9000, "a1")]
        second = [walk("res-a1b2c3d4", "2025-06-11", 11000, "b1")]
        list(health.award_drafts(first, programme, ledger=ledger))
        [later] = list(health.award_drafts(second, programme, ledger=ledger))
        assert not isinstance(later, RowError)
        assert later.data["points"] == 5

    def test_a_checkup_earns_its_kinds_rule(self, programme: Programme) -> None:
        row = {
            "record_id": "ck1",
            "resident_id": "res-k9x2m4p7",
            "date": "2025-06-10",
            "kind": "checkup",
            "checkup_kind": "specific_health_checkup",
        }
        [award] = list(health.award_drafts([row], programme))
        assert not isinstance(award, RowError)
        assert award.data == {
            "award_id": "ck1",
            "resident_id": "res-k9x2m4p7",
            "programme_id": "mitoyo-kenko-2025",
            "rule_id": "checkup-specific",
            "rule_name": "特定健診の受診",
            "reason": "checkup",
            "checkup_kind": "specific_health_checkup",
            "points": 500,
            "date": "2025-06-10",
            "expires_on": "2026-03-31",
        }
        # Without a recorded_at the award is made when the day is over.
        assert award.time == datetime(2025, 6, 10, 23, 59, 59, tzinfo=JST)

    def test_a_checkup_kind_the_programme_has_no_rule_for_is_an_error(self) -> None:
        walking_only = Programme("p1", "歩こう", (health.Rule("w", "歩く", "walking", 5, 5000),))
        row = {
            "record_id": "ck1",
            "resident_id": "res-k9x2m4p7",
            "date": "2025-06-10",
            "kind": "checkup",
            "checkup_kind": "dental_checkup",
        }
        assert list(health.award_drafts([row], walking_only)) == [
            RowError(2, "column checkup_kind: programme p1 has no rule for it")
        ]

    @pytest.mark.parametrize(
        ("day", "expires"),
        [(date(2025, 6, 11), date(2026, 3, 31)), (date(2026, 3, 31), date(2026, 3, 31)),
         (date(2026, 4, 1), date(2027, 3, 31))],
    )  # fmt: skip
    def test_points_expire_at_the_end_of_the_fiscal_year(
        self, programme: Programme, day: date, expires: date
    ) -> None:
        assert programme.expires_on(day) == expires

    @pytest.mark.parametrize(
        ("change", "reason"),
        [
            ({"programme_id": "みとよ"}, "programme_id 'みとよ' is not a valid id"),
            ({"daily_caps": {"walking": 0}}, "daily_caps must map"),
            ({"points_expire": "never"}, "points_expire 'never'"),
            ({"rules": [{"rule_id": "x", "name": "x", "kind": "yo", "points": 1}]}, "kind 'yo'"),
            ({"rules": [{"rule_id": "x", "name": "x", "kind": "walking", "points": 1}]},
             "rules[0]: min_steps must be an integer"),
        ],
    )  # fmt: skip
    def test_a_broken_rules_file_is_refused_saying_why(
        self, tmp_path: Path, change: dict[str, Any], reason: str
    ) -> None:
        doc = json.loads((HEALTH / "rules.json").read_text(encoding="utf-8")) | change
        path = tmp_path / "rules.json"
        path.write_text(json.dumps(doc), encoding="utf-8")
        with pytest.raises(RulesError) as caught:
            health.load_programme(path)
        assert reason in str(caught.value)


class TestSamples:
    def test_the_activities_export_gives_valid_awards(self, programme: Programme) -> None:
        drafts, errors = split(health.read_activities_csv(HEALTH / "activities.csv", programme))
        assert errors == []
        assert schema_problems(drafts) == []
        assert [(d.line, d.data["rule_id"], d.data["points"]) for d in drafts] == [
            (2, "walk-8000-steps", 10),
            # line 3: 4,200 steps earn nothing
            (4, "walk-10000-steps", 15),
            (5, "walk-10000-steps", 5),  # the same resident's second sync: capped at 15 a day
            (6, "checkup-specific", 500),
            (7, "checkup-dental", 200),
        ]
        assert {d.subject for d in drafts} == {d.data["resident_id"] for d in drafts}
        assert drafts[0].time == datetime(2025, 6, 11, 21, 5, tzinfo=JST)

    def test_bad_activity_rows_are_named_and_the_good_ones_still_come(
        self, programme: Programme
    ) -> None:
        drafts, errors = split(
            health.read_activities_csv(HEALTH / "activities_with_errors.csv", programme)
        )
        assert errors[0] == RowError(3, "column steps: 'たくさん' is not an integer")
        assert errors[1].line == 4
        assert errors[1].reason.startswith("column checkup_kind: 'eye_exam' is not one of")
        assert [d.line for d in drafts] == [2, 5]

    def test_the_redemptions_export_gives_valid_redemptions(self, programme: Programme) -> None:
        drafts, errors = split(health.read_redemptions_csv(HEALTH / "redemptions.csv", programme))
        assert errors == []
        assert schema_problems(drafts) == []
        assert drafts[0].data["reward_name"] == "地域通貨「みとよコイン」1,000円分"  # quoted comma
        assert {d.data["programme_id"] for d in drafts} == {"mitoyo-kenko-2025"}
        assert [d.natural_key for d in drafts] == [
            "rd-20250615-0007",
            "rd-20250615-0008",
            "rd-20250616-0001",
            "rd-20250616-0002",
        ]

    def test_bad_redemption_rows_are_named(self, programme: Programme) -> None:
        drafts, errors = split(
            health.read_redemptions_csv(HEALTH / "redemptions_with_errors.csv", programme)
        )
        assert errors == [
            RowError(3, "column points: 0 is less than 1"),
            RowError(
                4,
                "column reward: 'cash' is not one of "
                "local_currency, goods, public_transport_ticket, donation",
            ),
        ]
        assert [d.line for d in drafts] == [2, 5]


class TestAgeBand:
    def test_an_age_band_column_is_carried_for_statistics(self, programme: Programme) -> None:
        row = {**walk("res-a1b2c3d4", "2025-06-11", 9120, "s1"), "age_band": "65-74"}
        [award] = list(health.award_drafts([row], programme))
        assert not isinstance(award, RowError)
        assert award.data["age_band"] == "65-74"
        assert schema_problems([award]) == []

    def test_an_unknown_age_band_refuses_the_row(self, programme: Programme) -> None:
        row = {**walk("res-a1b2c3d4", "2025-06-11", 9120, "s1"), "age_band": "sixties"}
        [refused] = list(health.award_drafts([row], programme))
        assert isinstance(refused, RowError)
        assert "age_band" in refused.reason

    def test_without_the_column_the_award_has_no_age_band(self, programme: Programme) -> None:
        [award] = list(
            health.award_drafts([walk("res-a1b2c3d4", "2025-06-11", 9120, "s1")], programme)
        )
        assert not isinstance(award, RowError)
        assert "age_band" not in award.data
