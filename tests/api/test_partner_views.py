"""Partner views on a running platform: pseudonyms, the cross-service view, vacant houses."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from consent.webhooks import ID_HEADER, SIGNATURE_HEADER, verify_notification
from tests.consent.test_webhooks import PartnerServer
from tests.events import example_data, make_event
from tests.fixtures.platform import RunningPlatform, register_partner

PLANNING = "transport.planning"
HOUSING = "housing.dual_residence_support"
JST = "+09:00"
PERIOD = {"from": "2025-06-01T00:00:00+09:00", "to": "2025-07-01T00:00:00+09:00"}
ALL_SCOPES = ("admin", "property.details", "override", "consent:bypass", "*")


def _id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def _grant(
    platform: RunningPlatform,
    http: httpx.Client,
    subject: str,
    partner: str,
    purpose: str,
    categories: list[str],
) -> str:
    r = http.post(
        "/v1/me/consents",
        json={
            "partner_id": partner,
            "purpose": purpose,
            "categories": categories,
            "expires_at": (datetime.now(UTC) + timedelta(days=30)).isoformat(),
        },
        headers=platform.auth("resident", subject),
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _trip(resident: str, day: int, minute: int = 0, stop: str = "takuma-shisho") -> dict[str, Any]:
    data = example_data("transport.trip.completed")
    data.update(
        trip_id=_id("trip"),
        resident_id=resident,
        requested_at=f"2025-06-{day:02d}T08:{minute:02d}:00{JST}",
        pickup_at=f"2025-06-{day:02d}T09:{minute:02d}:00{JST}",
        dropoff_at=f"2025-06-{day:02d}T09:{minute + 20:02d}:00{JST}",
    )
    data["origin"] = {**data["origin"], "stop_id": stop}
    return make_event("transport.trip.completed", data=data, subject=resident)


def _points(resident: str, day: int) -> dict[str, Any]:
    data = example_data("health.points.awarded")
    data.update(award_id=_id("aw"), resident_id=resident, date=f"2025-06-{day:02d}")
    return make_event("health.points.awarded", data=data, subject=resident)


def _payment(resident: str, day: int) -> dict[str, Any]:
    data = example_data("currency.payment.settled")
    data.update(
        payment_id=_id("pay"), resident_id=resident, settled_at=f"2025-06-{day:02d}T12:00:00{JST}"
    )
    return make_event("currency.payment.settled", data=data, subject=resident)


def _listing(owner: str, stop: str) -> dict[str, Any]:
    """A v1 listing (v1's fields name the nearest stop; the standard model has none)."""
    data = example_data("vacant_house.listing.registered", 1)
    data.update(listing_id=_id("prop"), owner_id=owner)
    data["public"] = {**data["public"], "nearest_stop_id": stop, "walk_minutes_to_stop": 6}
    return make_event(
        "vacant_house.listing.registered", data=data, subject=data["listing_id"], version=1
    )


def _activity(
    platform: RunningPlatform,
    http: httpx.Client,
    partner: str,
    pseudonym: str,
    purpose: str = PLANNING,
    **params: Any,
) -> httpx.Response:
    return http.get(
        f"/v1/partner/residents/{pseudonym}/activity",
        params={"purpose": purpose, **PERIOD, **params},
        headers=platform.auth("partner", partner),
    )


def _pseudonyms(
    platform: RunningPlatform, http: httpx.Client, partner: str, purpose: str = PLANNING
) -> list[str]:
    r = http.get(
        "/v1/partner/residents",
        params={"purpose": purpose},
        headers=platform.auth("partner", partner),
    )
    assert r.status_code == 200, r.text
    return [x["resident"] for x in r.json()["residents"]]


@pytest.fixture(scope="module")
def world(platform: RunningPlatform) -> dict[str, Any]:
    """Two partners; a resident with trips, points and payments consenting to trips only."""
    resident = _id("res")
    with platform.client() as http:
        one = register_partner(platform, http, PLANNING, HOUSING)
        two = register_partner(platform, http, PLANNING)
        consent = _grant(platform, http, resident, one, PLANNING, ["transport.trips"])
        _grant(platform, http, resident, two, PLANNING, ["transport.trips"])
    platform.ingest(
        [_trip(resident, d) for d in (3, 4, 5)] + [_points(resident, 3), _payment(resident, 4)]
    )
    return {"resident": resident, "one": one, "two": two, "consent": consent}


def test_partners_see_pairwise_pseudonyms_never_the_resident_id(
    platform: RunningPlatform, world: dict[str, Any]
) -> None:
    with platform.client() as http:
        seen_by_one = _pseudonyms(platform, http, world["one"])
        seen_by_two = _pseudonyms(platform, http, world["two"])
        cross = _activity(platform, http, world["two"], seen_by_one[0])
    assert len(seen_by_one) == len(seen_by_two) == 1
    assert seen_by_one[0].startswith("psn-")
    assert seen_by_one != seen_by_two
    assert world["resident"] not in seen_by_one[0]
    # One partner's pseudonym is useless to the other.
    assert cross.status_code == 404


def test_cross_service_view_includes_consented_and_marks_the_rest_withheld(
    platform: RunningPlatform, world: dict[str, Any]
) -> None:
    with platform.client() as http:
        (pseudonym,) = _pseudonyms(platform, http, world["one"])
        r = _activity(platform, http, world["one"], pseudonym)
    assert r.status_code == 200, r.text
    view = r.json()
    assert world["resident"] not in r.text
    parts = {p["category"]: p for p in view["categories"]}
    trips = parts["transport.trips"]
    assert trips["included"] is True
    assert trips["consent_id"] == world["consent"]
    assert trips["totals"]["trips"] == 3
    assert trips["totals"]["fare_jpy"] == 3 * 600
    for withheld in ("health.points", "currency.transactions"):
        assert parts[withheld]["included"] is False
        assert parts[withheld]["withheld"]["reason"] == "category_not_covered"
    kinds = {i["kind"] for i in view["items"]}
    assert kinds == {"trip"}
    trip = next(i for i in view["items"] if i["kind"] == "trip")
    # Sealed fields are opened for an allowed read.
    assert trip["data"]["vehicle_id"] == "veh-od07"
    assert trip["data"]["origin_stop_id"] == "takuma-shisho"


def test_paging_is_stable_under_concurrent_inserts(
    platform: RunningPlatform, world: dict[str, Any]
) -> None:
    resident = _id("res")
    with platform.client() as http:
        partner = register_partner(platform, http, PLANNING)
        _grant(platform, http, resident, partner, PLANNING, ["transport.trips"])
        platform.ingest([_trip(resident, d) for d in (10, 12, 14, 16, 18)])
        (pseudonym,) = _pseudonyms(platform, http, partner)
        first = _activity(platform, http, partner, pseudonym, category="transport.trips", limit=2)
        page = first.json()
        # The next page is linked (RFC 8288) as well as named in the body.
        assert f"cursor={page['next_cursor']}" in first.headers["link"]
        assert first.headers["link"].endswith('>; rel="next"')
        trips = [i for i in page["items"] if i["kind"] == "trip"]
        # Meanwhile, trips arrive before the cursor and after it.
        platform.ingest([_trip(resident, 11), _trip(resident, 20)])
        seen = [i["id"] for i in page["items"]]
        seen_at = [i["at"] for i in page["items"]]
        cursor = page["next_cursor"]
        while cursor:
            page = _activity(
                platform,
                http,
                partner,
                pseudonym,
                category="transport.trips",
                limit=2,
                cursor=cursor,
            ).json()
            assert "items" in page, page
            seen += [i["id"] for i in page["items"]]
            seen_at += [i["at"] for i in page["items"]]
            cursor = page["next_cursor"]
    assert [datetime.fromisoformat(i["at"]).day for i in trips] == [10, 12]
    served = {datetime.fromisoformat(at).day for at in seen_at}
    assert len(seen) == len(set(seen)), "no item is served twice"
    # Every trip after the first page is served, including one inserted after the cursor; one
    # inserted before the cursor is not (it belongs to a page already read).
    assert served == {10, 12, 14, 16, 18, 20}


def test_revocation_withholds_every_category_on_the_next_read(platform: RunningPlatform) -> None:
    resident = _id("res")
    with platform.client() as http:
        partner = register_partner(platform, http, PLANNING)
        consent = _grant(
            platform, http, resident, partner, PLANNING, ["transport.trips", "health.points"]
        )
        platform.ingest([_trip(resident, 7), _points(resident, 7)])
        (pseudonym,) = _pseudonyms(platform, http, partner)
        before = _activity(platform, http, partner, pseudonym).json()
        http.post(
            f"/v1/me/consents/{consent}/revoke", headers=platform.auth("resident", resident)
        ).raise_for_status()
        after = _activity(platform, http, partner, pseudonym).json()
        listed = _pseudonyms(platform, http, partner)
    included = {p["category"]: p["included"] for p in before["categories"]}
    assert included == {
        "transport.trips": True,
        "health.points": True,
        "currency.transactions": False,
    }
    totals = {p["category"]: p["totals"] for p in before["categories"]}
    assert totals["health.points"] == {"awarded": 10, "redeemed": 0, "net": 10}
    assert totals["transport.trips"]["trips"] == 1
    assert before["items"]
    assert after["items"] == []
    reasons = {p["category"]: p["withheld"]["reason"] for p in after["categories"]}
    # What the consent covered is refused as revoked; what it never covered stays withheld.
    assert reasons == {
        "transport.trips": "revoked",
        "health.points": "revoked",
        "currency.transactions": "category_not_covered",
    }
    assert listed == []


def test_paused_consent_is_withheld_as_paused(platform: RunningPlatform) -> None:
    resident = _id("res")
    with platform.client() as http:
        partner = register_partner(platform, http, PLANNING)
        consent = _grant(platform, http, resident, partner, PLANNING, ["transport.trips"])
        (pseudonym,) = _pseudonyms(platform, http, partner)
        http.post(
            f"/v1/me/consents/{consent}/pause", headers=platform.auth("resident", resident)
        ).raise_for_status()
        view = _activity(platform, http, partner, pseudonym).json()
    trips = next(p for p in view["categories"] if p["category"] == "transport.trips")
    assert trips["withheld"]["reason"] == "paused"


def test_a_purpose_the_partner_is_not_approved_for_is_403(
    platform: RunningPlatform, world: dict[str, Any]
) -> None:
    with platform.client() as http:
        (pseudonym,) = _pseudonyms(platform, http, world["one"])
        other = _activity(platform, http, world["one"], pseudonym, purpose="currency.promotion")
        unknown = _activity(platform, http, world["one"], pseudonym, purpose="spying")
        stranger = http.get(
            "/v1/partner/residents",
            params={"purpose": PLANNING},
            headers=platform.auth("partner", "ptn-notregistered"),
        )
    assert other.status_code == 403
    assert "not approved for purpose currency.promotion" in other.json()["detail"]
    assert unknown.status_code == 422
    assert stranger.status_code == 403


@pytest.mark.parametrize("role", ["resident", "auditor", "admin", "connector"])
def test_partner_views_are_for_partners_only(platform: RunningPlatform, role: str) -> None:
    sources = ("urn:tsunagu:connector:x",) if role == "connector" else ()
    with platform.client() as http:
        r = http.get(
            "/v1/partner/vacant-houses",
            params={"purpose": HOUSING},
            headers=platform.auth(role, "res-abcd1234", sources=sources),
        )
        anonymous = http.get("/v1/partner/vacant-houses", params={"purpose": HOUSING})
    assert r.status_code == 403
    assert anonymous.status_code == 401


def _houses(
    platform: RunningPlatform, http: httpx.Client, partner: str, scopes: tuple[str, ...] = ()
) -> dict[str, Any]:
    r = http.get(
        "/v1/partner/vacant-houses",
        params={"purpose": HOUSING, **PERIOD, "limit": 500},
        headers=platform.auth("partner", partner, scopes=scopes),
    )
    assert r.status_code == 200, r.text
    houses: dict[str, Any] = r.json()
    return houses


def test_vacant_house_owner_details_follow_the_property_rule(platform: RunningPlatform) -> None:
    owner, rider = _id("res"), _id("res")
    stop = _id("stop")
    listing = _listing(owner, stop)
    with platform.client() as http:
        allowed = register_partner(platform, http, HOUSING)
        other = register_partner(platform, http, HOUSING)
        platform.ingest([listing, _trip(rider, 8, stop=stop), _trip(rider, 9, stop=stop)])
        before = _houses(platform, http, allowed)
        _grant(platform, http, owner, allowed, HOUSING, ["property.details"])
        after = _houses(platform, http, allowed)
        # Another partner, even with a token carrying every scope, gets the public listing.
        theirs = _houses(platform, http, other, scopes=ALL_SCOPES)
    lid = listing["data"]["listing_id"]
    house_before = next(h for h in before["houses"] if h["listing_id"] == lid)
    house_after = next(h for h in after["houses"] if h["listing_id"] == lid)
    house_theirs = next(h for h in theirs["houses"] if h["listing_id"] == lid)
    assert house_before["owner_details"] is None
    assert house_before["owner_details_withheld"]["reason"] == "owner_consent_missing"
    assert house_before["listing"]["district"] == "粟島"
    assert "大西" not in str(house_before)
    assert house_after["owner_details"]["owner_name"] == "大西 花子"
    assert house_after["owner_details_withheld"] is None
    assert house_theirs["owner_details"] is None
    assert house_theirs["owner_details_withheld"]["reason"] == "owner_consent_missing"
    access = house_before["transport"]
    assert access["nearest_stop_id"] == stop
    assert access["distance_m"] == 6 * 80
    assert access["on_demand"] is True


def _trip_in_march_2024(resident: str, day: int, stop: str) -> dict[str, Any]:
    event = _trip(resident, day, stop=stop)
    for field in ("requested_at", "pickup_at", "dropoff_at"):
        event["data"][field] = event["data"][field].replace("2025-06-", "2024-03-")
    return event


def test_trips_nearby_disclose_no_single_trip_to_a_partner_without_transport_consent(
    platform: RunningPlatform,
) -> None:
    lonely, busy = _id("stop"), _id("stop")
    quiet_house, busy_house = _listing(_id("res"), lonely), _listing(_id("res"), busy)
    rider = _id("res")
    riders = [_id("res") for _ in range(10)]
    with platform.client() as http:
        partner = register_partner(platform, http, HOUSING)  # no one consents to it
        platform.ingest(
            [
                quiet_house,
                busy_house,
                _trip_in_march_2024(rider, 8, lonely),
                _trip_in_march_2024(rider, 9, lonely),
                *(_trip_in_march_2024(r, 10, busy) for r in riders),
            ]
        )
        r = http.get(
            "/v1/partner/vacant-houses",
            params={"purpose": HOUSING, "month": "2024-03", "limit": 500},
            headers=platform.auth("partner", partner),
        )
        under_way = http.get(
            "/v1/partner/vacant-houses",
            params={"purpose": HOUSING, "month": f"{datetime.now(UTC):%Y-%m}"},
            headers=platform.auth("partner", partner),
        )
    assert r.status_code == 200, r.text
    body = r.json()
    houses = {h["listing_id"]: h["transport"] for h in body["houses"]}
    # One resident's two trips are not a count a partner may see; ten residents' trips are.
    assert houses[quiet_house["data"]["listing_id"]]["trips_nearby"] is None
    assert houses[busy_house["data"]["listing_id"]]["trips_nearby"] == 10
    assert body["period_from"].startswith("2024-03-01T00:00:00")
    assert under_way.status_code == 422
    assert "has not ended" in under_way.json()["detail"]


def _sale(listing: dict[str, Any], new_owner: str, **owner_details: Any) -> dict[str, Any]:
    """A listing.updated event naming a new owner, carrying only what changed (the schema's
    own advice): the status, and the new owner's details only when given."""
    data: dict[str, Any] = {
        "listing_id": listing["data"]["listing_id"],
        "owner_id": new_owner,
        "updated_at": "2025-06-20T10:00:00+09:00",
        "public": {"status": "under_negotiation"},
    }
    if owner_details:
        data["owner_details"] = owner_details
    return make_event(
        "vacant_house.listing.updated", data=data, subject=data["listing_id"], version=1
    )


def _details_reads(platform: RunningPlatform, http: httpx.Client, owner: str) -> list[Any]:
    r = http.get("/v1/me/access-log", headers=platform.auth("resident", owner))
    assert r.status_code == 200, r.text
    return [a for a in r.json()["reads"] if "property.details" in a["categories"]]


def test_a_sale_never_carries_the_previous_owners_details_to_the_new_owner(
    platform: RunningPlatform,
) -> None:
    seller, buyer = _id("res"), _id("res")
    listing = _listing(seller, _id("stop"))
    lid = listing["data"]["listing_id"]
    sellers = listing["data"]["owner_details"]
    sellers_values = [
        sellers["owner_name"],
        sellers["owner_address"],
        sellers["exact_address"],
        sellers["owner_contact"]["phone"],
        sellers["owner_contact"]["email"],
    ]
    with platform.client() as http:
        partner = register_partner(platform, http, HOUSING)
        platform.ingest([listing])
        _grant(platform, http, seller, partner, HOUSING, ["property.details"])
        before = _houses(platform, http, partner)
        # The attack: an ordinary sale event, new owner_id and no owner details.
        platform.ingest([_sale(listing, buyer)])
        _grant(platform, http, buyer, partner, HOUSING, ["property.details"])
        after_sale = _houses(platform, http, partner)
        # The buyer's own details arrive later, and only they are shown.
        platform.ingest([_sale(listing, buyer, owner_name="佐藤 一郎")])
        with_buyers = _houses(platform, http, partner)
        seller_reads = _details_reads(platform, http, seller)
        buyer_reads = _details_reads(platform, http, buyer)
    house_before = next(h for h in before["houses"] if h["listing_id"] == lid)
    house_sold = next(h for h in after_sale["houses"] if h["listing_id"] == lid)
    house_buyers = next(h for h in with_buyers["houses"] if h["listing_id"] == lid)
    assert house_before["owner_details"]["owner_name"] == sellers["owner_name"]
    assert house_sold["owner_details"] is None
    assert house_sold["owner_details_withheld"]["reason"] == "no_details"
    assert house_buyers["owner_details"] == {"owner_name": "佐藤 一郎"}
    for seen in (house_sold, house_buyers):
        assert not [v for v in sellers_values if v in str(seen)]
    # Each owner's access log shows every read of their own details, and only those.
    assert [(a["partner"], a["view"]) for a in seller_reads] == [(partner, "vacant_houses")]
    assert [(a["partner"], a["view"]) for a in buyer_reads] == [(partner, "vacant_houses")]


def test_request_body_over_the_api_limit_is_413(platform: RunningPlatform) -> None:
    with platform.client() as http:
        r = http.post(
            "/v1/me/consents",
            content=b"{" + b" " * (300 * 1024) + b"}",
            headers={
                "content-type": "application/json",
                **platform.auth("resident", "res-ab12cd34"),
            },
        )
    assert r.status_code == 413
    assert r.headers["content-type"] == "application/problem+json"


def test_erased_resident_is_gone_from_every_view(platform: RunningPlatform) -> None:
    resident = _id("res")
    me = platform.auth("resident", resident)
    with platform.client() as http:
        partner = register_partner(platform, http, PLANNING)
        _grant(platform, http, resident, partner, PLANNING, ["transport.trips"])
        platform.ingest([_trip(resident, 21), _trip(resident, 22)])
        (pseudonym,) = _pseudonyms(platform, http, partner)
        before = _activity(platform, http, partner, pseudonym).json()
        erased = http.post("/v1/me/erasure", headers=me)
        after = _activity(platform, http, partner, pseudonym)
        listed = _pseudonyms(platform, http, partner)
        again = http.post("/v1/me/erasure", headers=me)
    assert len([i for i in before["items"] if i["kind"] == "trip"]) == 2
    assert erased.status_code == 200, erased.text
    record = erased.json()
    assert record["consents_revoked"] == 1
    assert record["key_destroyed"] is True
    assert record["rows_deleted"]["transport_trips"] == 2
    assert resident not in erased.text.replace(record["digest_salt"], "")
    # The old pseudonym no longer names anyone.
    assert after.status_code == 404, after.text
    assert listed == []
    assert again.json()["key_destroyed"] is False
    assert sum(again.json()["rows_deleted"].values()) == 0


def test_revocation_reaches_the_partners_webhook_signed_and_under_its_pseudonym(
    platform: RunningPlatform,
) -> None:
    hooks = PartnerServer()
    resident = _id("res")
    try:
        with platform.client() as http:
            partner = register_partner(platform, http, PLANNING, webhook_url=hooks.url)
            consent = _grant(platform, http, resident, partner, PLANNING, ["transport.trips"])
            (pseudonym,) = _pseudonyms(platform, http, partner)
            http.post(
                f"/v1/me/consents/{consent}/revoke", headers=platform.auth("resident", resident)
            ).raise_for_status()
            assert hooks.wait_for(1, timeout_s=15)
            jwks = http.get("/.well-known/jwks.json").json()
        (received,) = hooks.received
        payload = verify_notification(
            received.body, received.headers[SIGNATURE_HEADER], jwks, recipient=partner
        )
    finally:
        hooks.close()
    assert payload["type"] == "consent.revoked"
    assert payload["supersedes"] == consent
    assert payload["subject_pseudonym"] == pseudonym
    assert resident.encode() not in received.body
    assert received.headers[ID_HEADER.lower()] == payload["notification_id"]


def test_an_erasure_tells_the_partner_under_its_pseudonym_though_the_consent_is_scrubbed(
    platform: RunningPlatform,
) -> None:
    hooks = PartnerServer()
    hooks.fail_first = 2  # the notice is delivered on a retry, after the consent is scrubbed
    resident = _id("res")
    try:
        with platform.client() as http:
            partner = register_partner(platform, http, PLANNING, webhook_url=hooks.url)
            consent = _grant(platform, http, resident, partner, PLANNING, ["transport.trips"])
            (pseudonym,) = _pseudonyms(platform, http, partner)
            erased = http.post("/v1/me/erasure", headers=platform.auth("resident", resident))
            assert erased.status_code == 200, erased.text
            assert hooks.wait_for(3, timeout_s=30)
            jwks = http.get("/.well-known/jwks.json").json()
        received = hooks.received[-1]
        payload = verify_notification(
            received.body, received.headers[SIGNATURE_HEADER], jwks, recipient=partner
        )
    finally:
        hooks.close()
    assert erased.json()["rows_deleted"]["consents"] == 2  # the grant and its revocation
    assert (payload["type"], payload["supersedes"]) == ("consent.revoked", consent)
    assert payload["subject_pseudonym"] == pseudonym
    assert resident.encode() not in received.body


def test_lists_filter_by_time_range(platform: RunningPlatform) -> None:
    first, second = _id("res"), _id("res")
    with platform.client() as http:
        partner = register_partner(platform, http, PLANNING, HOUSING)
        _grant(platform, http, first, partner, PLANNING, ["transport.trips"])
        between = datetime.now(UTC)
        _grant(platform, http, second, partner, PLANNING, ["transport.trips"])
        headers = platform.auth("partner", partner)
        params = {"purpose": PLANNING}
        everyone = http.get("/v1/partner/residents", params=params, headers=headers).json()
        later = http.get(
            "/v1/partner/residents", params={**params, "from": between.isoformat()}, headers=headers
        ).json()
        earlier = http.get(
            "/v1/partner/residents", params={**params, "to": between.isoformat()}, headers=headers
        ).json()
        old, new = _listing(_id("res"), "s1"), _listing(_id("res"), "s2")
        old["data"]["registered_at"] = "2024-04-01T10:00:00+09:00"
        new["data"]["registered_at"] = "2025-09-01T10:00:00+09:00"
        platform.ingest([old, new])
        recent = http.get(
            "/v1/partner/vacant-houses",
            params={"purpose": HOUSING, "registered_from": "2025-08-01T00:00:00+09:00"},
            headers=headers,
        ).json()
    pseudonyms = [r["resident"] for r in everyone["residents"]]
    assert len(pseudonyms) == 2
    assert [r["resident"] for r in later["residents"]] == pseudonyms[1:]
    assert [r["resident"] for r in earlier["residents"]] == pseudonyms[:1]
    listed = {h["listing_id"] for h in recent["houses"]}
    assert new["data"]["listing_id"] in listed
    assert old["data"]["listing_id"] not in listed


def test_currency_totals_add_up_each_kind(platform: RunningPlatform) -> None:
    resident = _id("res")
    with platform.client() as http:
        partner = register_partner(platform, http, PLANNING)
        _grant(platform, http, resident, partner, PLANNING, ["currency.transactions"])
        platform.ingest([_payment(resident, 4), _payment(resident, 5)])
        (pseudonym,) = _pseudonyms(platform, http, partner)
        view = _activity(platform, http, partner, pseudonym).json()
    money = next(p for p in view["categories"] if p["category"] == "currency.transactions")
    assert money["totals"] == {
        "payments": 2,
        "spent_jpy": 2 * 1280,
        "topped_up_jpy": 0,
        "converted_jpy": 0,
    }
    assert [i["data"]["merchant_name"] for i in view["items"]] == ["仁尾うどん本舗"] * 2


def test_following_next_cursor_without_an_explicit_to_reaches_the_last_page(
    platform: RunningPlatform,
) -> None:
    resident = _id("res")
    with platform.client() as http:
        partner = register_partner(platform, http, PLANNING)
        _grant(platform, http, resident, partner, PLANNING, ["transport.trips"])
        platform.ingest([_trip(resident, d) for d in (10, 12, 14, 16, 18)])
        (pseudonym,) = _pseudonyms(platform, http, partner)
        params: dict[str, Any] = {
            "purpose": PLANNING,
            "from": PERIOD["from"],  # and no `to`: the period ends "now"
            "category": "transport.trips",
            "limit": 2,
        }
        days: list[int] = []
        cursor = None
        for _ in range(10):
            r = http.get(
                f"/v1/partner/residents/{pseudonym}/activity",
                params={**params, **({"cursor": cursor} if cursor else {})},
                headers=platform.auth("partner", partner),
            )
            assert r.status_code == 200, r.text
            days += [datetime.fromisoformat(i["at"]).day for i in r.json()["items"]]
            cursor = r.json()["next_cursor"]
            if cursor is None:
                break
    assert days == [10, 12, 14, 16, 18]


def test_a_vacant_house_cursor_is_refused_with_another_partner_purpose_or_filter(
    platform: RunningPlatform,
) -> None:
    stop = _id("stop")
    with platform.client() as http:
        mine = register_partner(platform, http, HOUSING, PLANNING)
        other = register_partner(platform, http, HOUSING)
        platform.ingest([_listing(_id("res"), stop) for _ in range(3)])
        query: dict[str, Any] = {"purpose": HOUSING, "month": "2025-06", "limit": 1}

        def page(partner: str, **changes: Any) -> httpx.Response:
            return http.get(
                "/v1/partner/vacant-houses",
                params={**query, **changes},
                headers=platform.auth("partner", partner),
            )

        first = page(mine)
        assert first.status_code == 200, first.text
        cursor = first.json()["next_cursor"]
        assert cursor
        assert f"cursor={cursor}" in first.headers["link"]  # RFC 8288, beside the body's
        misuses = {
            "another partner": page(other, cursor=cursor),
            "another purpose": page(mine, cursor=cursor, purpose=PLANNING),
            "another town": page(mine, cursor=cursor, town="takuma"),
            "another month": page(mine, cursor=cursor, month="2025-05"),
            "only available": page(mine, cursor=cursor, available="true"),
        }
        same = page(mine, cursor=cursor)
    for misuse, r in misuses.items():
        assert r.status_code == 400, (misuse, r.text)
        assert r.headers["content-type"] == "application/problem+json"
        assert "same partner, purpose" in r.json()["detail"], misuse
    assert same.status_code == 200, same.text
    assert same.json()["houses"]
    assert same.json()["houses"][0]["listing_id"] != first.json()["houses"][0]["listing_id"]
