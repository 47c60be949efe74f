"""The vacant-house bank's readers: listings (registered, then updated with only what changed),
the owner-identifying fields kept apart from the public listing, and inquiries.
"""

from __future__ import annotations

import pytest

from connectors import vacant_house
from connectors.sdk.rows import RowError
from connectors.vacant_house import LISTING_COLUMNS, ListingBook
from tests.connectors.test_readers_csv import SAMPLES, schema_problems, split

BANK = SAMPLES / "vacant_house"
OWNER_FIELDS = {"exact_address", "lot_number", "owner_name", "owner_name_kana", "owner_address"}

REGISTER = {
    "listing_id": "prop-mno0021d",
    "owner_id": "res-c3v4b5n6",
    "recorded_at": "2025-04-05T10:00:00+09:00",
    "town": "三野町",
    "district": "大見",
    "building_type": "detached_house",
    "floor_area_m2": "72.5",
    "offer_type": "rent",
    "rent_band": "under_20k",
    "status": "available",
    "exact_address": "香川県三豊市三野町大見321番地",
    "lot_number": "三野町大見字中村321番",
    "owner_name": "三好 清",
    "owner_phone": "0875-00-2468",
}


def update(**cells: str) -> dict[str, str]:
    return {"listing_id": "prop-mno0021d", "owner_id": "res-c3v4b5n6"} | cells


class TestListings:
    def test_the_sample_export_registers_then_updates(self) -> None:
        drafts, errors = split(vacant_house.read_listings_csv(BANK / "listings.csv"))
        assert errors == []
        assert schema_problems(drafts) == []
        assert [(d.line, d.event_type.rsplit(".", 1)[1], d.subject) for d in drafts] == [
            (2, "registered", "prop-tkm0012a"),
            (3, "registered", "prop-nio0007b"),
            (4, "registered", "prop-sit0003c"),  # no action: the first row of an id registers
            (5, "updated", "prop-tkm0012a"),  # no action: a later row of the same id updates
            (6, "updated", "prop-sit0003c"),
            (7, "updated", "prop-tkm0012a"),
        ]
        registered = drafts[0].data
        assert registered["owner_id"] == "res-8f3k2m9q"
        assert not OWNER_FIELDS & set(registered["public"])  # the public listing names no owner
        assert registered["owner_details"]["owner_contact"] == {
            "phone": "06-0000-1234",
            "email": "hanako.onishi@example.jp",
        }
        assert drafts[1].data["public"]["town"] == "nio"  # 仁尾町
        assert drafts[3].data == {
            "listing_id": "prop-tkm0012a",
            "owner_id": "res-8f3k2m9q",
            "updated_at": "2025-05-20T16:40:00+09:00",
            "public": {"rent_band": "40k_to_60k", "status": "under_negotiation"},
        }
        # A new phone: the contact is one field, so it goes whole (the e-mail is still known).
        assert drafts[5].data["owner_details"] == {
            "owner_contact": {"phone": "090-0000-5678", "email": "hanako.onishi@example.jp"}
        }
        assert drafts[3].natural_key == "prop-tkm0012a@2025-05-20T16:40:00+09:00"

    def test_the_shift_jis_sample_reads_the_same(self) -> None:
        utf8 = list(vacant_house.read_listings_csv(BANK / "listings.csv"))
        sjis = list(vacant_house.read_listings_csv(BANK / "listings_cp932.csv", encoding="cp932"))
        assert sjis == utf8

    def test_bad_rows_are_named_and_the_good_rows_still_come(self) -> None:
        drafts, errors = split(vacant_house.read_listings_csv(BANK / "listings_with_errors.csv"))
        assert errors == [
            RowError(3, "column lot_number: required to register a listing"),
            RowError(
                4, "column district: '比地1234' holds digits: a street number is never public"
            ),
        ]
        assert [d.line for d in drafts] == [2, 5]

    def test_reading_the_same_export_again_with_the_same_book_publishes_nothing(self) -> None:
        book = ListingBook()
        first = list(vacant_house.read_listings_csv(BANK / "listings.csv", book=book))
        again = list(vacant_house.read_listings_csv(BANK / "listings.csv", book=book))
        assert len(first) == 6
        assert again == []
        assert len(book) == 3

    def test_a_row_older_than_the_listings_last_change_is_not_applied(self) -> None:
        rows = [
            REGISTER,
            update(recorded_at="2025-06-01T09:00:00+09:00", status="contracted"),
            update(recorded_at="2025-05-01T09:00:00+09:00", status="under_negotiation"),
        ]
        *_, stale = list(vacant_house.listing_drafts(rows))
        assert stale == RowError(
            4,
            "column recorded_at: 2025-05-01T09:00:00+09:00 is older than the listing's last "
            "change (2025-06-01T09:00:00+09:00): not applied",
        )

    def test_an_update_sends_only_what_changed(self) -> None:
        rows = [
            REGISTER,
            update(recorded_at="2025-05-01T09:00:00+09:00", status="available", parking="有"),
        ]
        _, changed = list(vacant_house.listing_drafts(rows))
        assert not isinstance(changed, RowError)
        assert changed.data["public"] == {"parking": True}  # status was already available

    def test_an_update_that_changes_nothing_is_no_event_and_no_error(self) -> None:
        rows = [REGISTER, update(recorded_at="2025-05-01T09:00:00+09:00", status="available")]
        assert len(list(vacant_house.listing_drafts(rows))) == 1

    def test_an_update_of_a_listing_not_seen_sends_every_filled_cell(self) -> None:
        row = update(action="更新", recorded_at="2025-06-01T09:00:00+09:00", status="contracted")
        [draft] = list(vacant_house.listing_drafts([row]))
        assert not isinstance(draft, RowError)
        assert draft.event_type == "vacant_house.listing.updated"
        assert draft.data["public"] == {"status": "contracted"}
        assert schema_problems([draft]) == []

    def test_a_new_owner_needs_the_new_owners_details(self) -> None:
        rows = [
            REGISTER,
            update(owner_id="res-n3w0wn3r", recorded_at="2025-07-01T09:00:00+09:00"),
            update(
                owner_id="res-n3w0wn3r",
                recorded_at="2025-07-02T09:00:00+09:00",
                owner_name="十河 直美",
                owner_email="naomi.sogo@example.jp",
            ),
        ]
        _, refused, changed = list(vacant_house.listing_drafts(rows))
        assert refused == RowError(
            3, "column owner_id: a new owner needs the new owner's name and contact"
        )
        assert not isinstance(changed, RowError)
        assert changed.data["owner_id"] == "res-n3w0wn3r"
        assert changed.data["owner_details"] == {
            "owner_name": "十河 直美",
            "owner_contact": {"phone": "0875-00-2468", "email": "naomi.sogo@example.jp"},
        }

    @pytest.mark.parametrize(
        ("change", "reason"),
        [
            ({"rent_band": ""}, "column rent_band: required to register a listing"),
            ({"owner_phone": ""}, "column owner_phone: required to register a listing (or"),
            ({"town": "高松"}, "column town: '高松' is not a town of Mitoyo"),
            ({"owner_name_kana": "おおにし"}, "column owner_name_kana: 'おおにし' is not katakana"),
            ({"action": "delete"}, "column action: 'delete' is not register or update"),
            ({"listing_id": "tkm-12"}, "column listing_id: 'tkm-12' is not a property id"),
        ],
    )  # fmt: skip
    def test_a_registration_must_be_complete_and_well_formed(
        self, change: dict[str, str], reason: str
    ) -> None:
        [error] = list(vacant_house.listing_drafts([REGISTER | change]))
        assert isinstance(error, RowError)
        assert error.reason.startswith(reason)

    def test_the_listing_columns_are_the_documented_ones(self) -> None:
        header = (BANK / "listings.csv").read_text(encoding="utf-8").splitlines()[0]
        assert tuple(header.split(",")) == LISTING_COLUMNS


class TestInquiries:
    def test_the_sample_export_gives_valid_inquiries(self) -> None:
        drafts, errors = split(vacant_house.read_inquiries_csv(BANK / "inquiries.csv"))
        assert errors == []
        assert schema_problems(drafts) == []
        assert [d.line for d in drafts] == [2, 4, 5]  # the first message spans two lines
        assert drafts[0].data["message"].splitlines()[1].startswith("リモートワーク")
        assert drafts[0].subject == "res-z7q1w3e5"
        assert drafts[1].data["preferred_move_in"] == "2025-11"  # 2025/11

    def test_bad_rows_are_named_and_the_good_rows_still_come(self) -> None:
        drafts, errors = split(vacant_house.read_inquiries_csv(BANK / "inquiries_with_errors.csv"))
        assert errors == [
            RowError(
                4,
                "column kind: 'rent' is not one of "
                "dual_residence, relocation, visit, short_stay, purchase",
            ),
            RowError(
                5, "column listing_id: 'tkm0012a' is not a property id (prop- and 4-40 of a-z 0-9)"
            ),
        ]
        assert [d.line for d in drafts] == [2, 6]
