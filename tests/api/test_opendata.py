"""The open data catalogue over HTTP, against a running platform: DCAT read by rdflib, CKAN's
action API by a real CKAN client (ckanapi), the downloads, and no personal byte anywhere."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import ckanapi  # type: ignore[import-untyped]
import httpx
import pytest
import rdflib

from broker.views.opendata import DATASETS, PDL_URL
from broker.views.statistics import add_months, jst_month_start
from tests.events import example_data, make_event
from tests.fixtures.platform import RunningPlatform, start_platform, stop_platform

#: A closed month the statistics' default period holds.
MONTH = add_months(jst_month_start(datetime.now(UTC)), -2)
RESIDENTS = [f"res-odr{i:04d}" for i in range(12)]
OWNERS = {
    "res-odo00001": {
        "exact_address": "香川県三豊市詫間町粟島9876番地",
        "lot_number": "詫間町粟島字南浦9876番",
        "owner_name": "尾田 久美子",
        "owner_name_kana": "オダ クミコ",
        "owner_address": "大阪府大阪市北区梅田九丁目9番9号",
        "owner_contact": {"phone": "06-9999-4321", "email": "kumiko.oda@example.jp"},
    },
    "res-odo00002": {
        "exact_address": "香川県三豊市仁尾町仁尾丁5555番地",
        "lot_number": "仁尾町仁尾字丁5555番",
        "owner_name": "仁科 五郎",
        "owner_name_kana": "ニシナ ゴロウ",
        "owner_address": "東京都千代田区丸の内八丁目8番8号",
        "owner_contact": {"phone": "03-8888-7777", "email": "goro.nishina@example.jp"},
    },
}
INQUIRER_NAME = "山際 誠司"
#: Owners of standard (v2) listings: the standard's fields that identify them.
STANDARD_OWNERS = {
    "res-odo00003": {
        "fullAddress": "香川県三豊市詫間町粟島4321番地",
        "cityBlock": "4321番地",
        "latitude": 34.2681,
        "longitude": 133.6359,
        "contactPointName": "粟野 澄江",
        "contactPointPhoneNumber": "0875-77-6543",
        "remarks": "所有者の粟野さんは大阪在住。鍵は隣家に預けてある。",
    },
    "res-odo00004": {
        "fullAddress": "香川県三豊市仁尾町仁尾辛8765番地",
        "cityBlock": "8765番地",
        "latitude": 34.2093,
        "longitude": 133.6523,
        "contactPointName": "辛島 宗一郎",
        "contactPointPhoneNumber": "0875-66-5432",
        "remarks": "成約済み。",
    },
}


def _iso(at: datetime) -> str:
    return at.isoformat(timespec="seconds")


def _trip(n: int, resident: str) -> dict[str, Any]:
    at = MONTH + timedelta(days=4, hours=n)
    return make_event(
        "transport.trip.completed",
        data={
            "trip_id": f"odt-od-{n:04d}",
            "request_id": f"req-od-{n:04d}",
            "resident_id": resident,
            "mode": "on_demand",
            "operator_id": "mitoyo-ondemand",
            "operator_name": "三豊つなぐ交通株式会社",
            "vehicle_id": "veh-od07",
            "origin": {
                "stop_id": "takuma-shisho",
                "stop_name": "詫間支所前",
                "lat": 34.2313,
                "lon": 133.6347,
                "town": "takuma",
            },
            "destination": {
                "stop_id": "jr-takase-eki",
                "stop_name": "JR高瀬駅",
                "lat": 34.1899,
                "lon": 133.7176,
                "town": "takase",
            },
            "requested_at": _iso(at - timedelta(minutes=30)),
            "pickup_at": _iso(at),
            "dropoff_at": _iso(at + timedelta(minutes=25)),
            "fare_jpy": 600,
            "passengers": 1,
            "distance_m": 9400,
        },
    )


def _listing(listing_id: str, owner: str, status: str) -> dict[str, Any]:
    """A listing of schema v1 (its fields: the catalogue publishes them by the standard's names)."""
    return make_event(
        "vacant_house.listing.registered",
        version=1,
        data={
            "listing_id": listing_id,
            "owner_id": owner,
            "registered_at": _iso(MONTH),
            "public": {
                "town": "takuma",
                "district": "粟島",
                "building_type": "kominka",
                "layout": "5DK",
                "floor_area_m2": 98.5,
                "offer_type": "rent",
                "rent_band": "20k_to_40k",
                "parking": False,
                "nearest_stop_id": "takuma-shisho",
                "walk_minutes_to_stop": 6,
                "status": status,
            },
            "owner_details": OWNERS[owner],
        },
    )


def _standard_listing(listing_id: str, owner: str, listed: str) -> dict[str, Any]:
    """A listing of schema v2, the standard model 空き家バンク."""
    data = example_data("vacant_house.listing.registered", 2)
    data.update(listing_id=listing_id, owner_id=owner, owner_details=STANDARD_OWNERS[owner])
    data["public"] = {**data["public"], "identifier": listing_id, "vacantHouseListing": listed}
    return make_event("vacant_house.listing.registered", data=data, subject=listing_id, version=2)


def _seed(platform: RunningPlatform) -> None:
    events = [_trip(n, r) for n, r in enumerate(RESIDENTS)]
    position = make_event("transport.vehicle.position")
    events.append(position)
    events.append(_listing("prop-odpub0001", "res-odo00001", "available"))
    events.append(_listing("prop-odgone001", "res-odo00002", "withdrawn"))
    events.append(_standard_listing("prop-odstd0001", "res-odo00003", "一般へ公開"))
    events.append(_standard_listing("prop-odadmn001", "res-odo00004", "管理者のみ閲覧"))
    inquiry = make_event("vacant_house.inquiry.received")
    inquiry["data"].update(
        resident_id=RESIDENTS[0],
        listing_id="prop-odpub0001",
        message=f"{INQUIRER_NAME}です。内覧を希望します。",
    )
    inquiry["subject"] = RESIDENTS[0]
    events.append(inquiry)
    platform.ingest(events)


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPlatform]:
    """A platform with residents, owners and their events in its store; its open-data rate
    out of the way of these tests (``tight`` proves the limit)."""
    running = start_platform(
        tmp_path_factory.mktemp("opendata"),
        {"TSUNAGU_OPENDATA_RATE_PER_S": "100000", "TSUNAGU_OPENDATA_BURST": "100000"},
    )
    try:
        _seed(running)
        yield running
    finally:
        stop_platform(running)


def _ckan(platform: RunningPlatform) -> ckanapi.RemoteCKAN:
    return ckanapi.RemoteCKAN(platform.base_url, user_agent="tsunagu-tests/1 (ckanapi)")


def _rows(csv_bytes: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(csv_bytes.decode("utf-8-sig"))))


# -- CKAN ------------------------------------------------------------------------------------


def test_a_ckan_client_lists_shows_and_searches_the_datasets(seeded: RunningPlatform) -> None:
    ckan = _ckan(seeded)
    names = ckan.action.package_list()
    assert names == [ds.name for ds in DATASETS]
    package = ckan.action.package_show(id="vacant-houses")
    assert package["license_url"] == PDL_URL
    assert package["organization"]["title"] == "三豊市"
    assert {r["format"] for r in package["resources"]} == {"CSV", "JSON"}
    assert any("出典：三豊市" in e["value"] for e in package["extras"])
    found = ckan.action.package_search(q="GTFS-JP")
    assert found["count"] == 2
    assert {p["name"] for p in found["results"]} == {"bus-stops", "bus-routes"}
    page = ckan.action.package_search(q="*:*", rows=2, start=1)
    assert page["count"] == len(DATASETS)
    assert [p["name"] for p in page["results"]] == names[1:3]
    assert ckan.action.organization_list() == ["mitoyo-city"]
    [org] = ckan.action.organization_list(all_fields=True)
    assert org["package_count"] == len(DATASETS)


def test_a_ckan_client_reads_every_resource_url_it_is_given(seeded: RunningPlatform) -> None:
    ckan = _ckan(seeded)
    with seeded.client() as http:
        for name in ckan.action.package_list():
            for resource in ckan.action.package_show(id=name)["resources"]:
                r = http.get(resource["url"])
                assert r.status_code == 200, (resource["url"], r.text)
                assert r.headers["content-type"].startswith(resource["mimetype"])


def test_ckan_refusals_are_ckan_errors_the_client_understands(seeded: RunningPlatform) -> None:
    ckan = _ckan(seeded)
    with pytest.raises(ckanapi.NotFound):
        ckan.action.package_show(id="residents")
    with pytest.raises(ckanapi.ValidationError) as missing:
        ckan.action.package_show()
    assert "id" in missing.value.error_dict
    with pytest.raises(ckanapi.ValidationError) as bad_rows:
        ckan.action.package_search(rows="ten")
    assert "rows" in bad_rows.value.error_dict


def test_ckan_errors_keep_ckans_envelope_and_status_not_problem_details(
    seeded: RunningPlatform,
) -> None:
    with seeded.client() as http:
        r = http.get("/api/3/action/package_show", params={"id": "residents"})
        assert r.status_code == 404
        assert r.headers["content-type"].startswith("application/json")
        body = r.json()
        assert body["success"] is False
        assert body["error"]["__type"] == "Not Found Error"
        assert "help" in body
        r = http.get("/api/3/action/package_search", params={"start": "-1"})
        assert r.status_code == 409
        assert r.json()["error"]["__type"] == "Validation Error"
        r = http.get("/api/3/action/package_create")
        assert r.status_code == 400
        assert r.json()["success"] is False
        assert "package_list" in r.json()["error"]["message"]
        r = http.post("/api/3/action/package_list", content=b"{not json")
        assert r.status_code == 400
        assert "JSON" in r.json()["error"]["message"]


def test_the_help_every_ckan_answer_points_to_answers(seeded: RunningPlatform) -> None:
    with seeded.client() as http:
        help_url = http.get("/api/3/action/package_search").json()["help"]
        r = http.get(help_url)
    assert r.json()["success"] is True
    assert "q" in r.json()["result"]


def test_ckan_takes_a_small_anonymous_body_and_refuses_a_large_one(
    seeded: RunningPlatform,
) -> None:
    with seeded.client() as http:
        small = http.post("/api/3/action/package_show", json={"id": "bus-stops"})
        assert small.json()["result"]["name"] == "bus-stops"
        large = http.post("/api/3/action/package_list", json={"q": "x" * 20_000})
        assert large.status_code == 413
        # Elsewhere a body still needs a token first.
        assert http.post("/v1/partners", json={"id": "ptn-x"}).status_code == 401


# -- DCAT and downloads ----------------------------------------------------------------------

_DCAT_CHECKS = """
PREFIX dcat: <http://www.w3.org/ns/dcat#>
PREFIX dct: <http://purl.org/dc/terms/>
SELECT ?dataset ?license ?download ?media ?publisher WHERE {
  ?catalogue a dcat:Catalog ; dcat:dataset ?dataset .
  ?dataset a dcat:Dataset ; dct:license ?license ; dct:rightsHolder ?publisher ;
           dcat:distribution ?dist .
  ?dist a dcat:Distribution ; dcat:downloadURL ?download ; dcat:mediaType ?media .
}
"""


def test_the_dcat_catalogue_parses_and_every_dataset_has_a_licence_and_a_distribution(
    seeded: RunningPlatform,
) -> None:
    with seeded.client() as http:
        r = http.get("/opendata/catalog.jsonld")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/ld+json")
    graph = rdflib.Graph().parse(data=r.content, format="json-ld")
    dcat = rdflib.Namespace("http://www.w3.org/ns/dcat#")
    datasets = set(graph.subjects(rdflib.RDF.type, dcat.Dataset))
    assert len(datasets) == len(DATASETS)
    results = list(graph.query(_DCAT_CHECKS))
    assert {row.dataset for row in results} == datasets  # type: ignore[union-attr]
    assert {str(row.license) for row in results} == {PDL_URL}  # type: ignore[union-attr]
    assert {str(row.publisher) for row in results} == {"https://www.city.mitoyo.lg.jp/"}  # type: ignore[union-attr]
    medias = {str(row.media).rsplit("/", 2)[-2:][0] for row in results}  # type: ignore[union-attr]
    assert medias == {"text", "application"}
    dct = rdflib.Namespace("http://purl.org/dc/terms/")
    rdfs = rdflib.RDFS
    for ds in datasets:
        rights = graph.value(ds, dct.rights)
        assert "公共データ利用規約（第1.0版）" in str(graph.value(rights, rdfs.label))


def test_the_stops_dataset_names_each_stop_as_gtfs_does_in_csv_and_json(
    seeded: RunningPlatform,
) -> None:
    with seeded.client() as http:
        csv_rows = _rows(http.get("/opendata/datasets/bus-stops.csv").content)
        json_body = http.get("/opendata/datasets/bus-stops.json").json()
    names = {"takuma-shisho": "詫間支所前", "jr-takase-eki": "JR高瀬駅"}
    assert names.items() <= {r["stop_id"]: r["stop_name"] for r in csv_rows}.items()
    assert "stop_name" in json_body["columns"]
    assert names.items() <= {r["stop_id"]: r["stop_name"] for r in json_body["records"]}.items()


def test_each_dataset_downloads_as_csv_with_a_bom_and_as_json(seeded: RunningPlatform) -> None:
    with seeded.client() as http:
        stops = http.get("/opendata/datasets/bus-stops.csv")
        routes = http.get("/opendata/datasets/bus-routes.csv")
        houses = http.get("/opendata/datasets/vacant-houses.csv")
        trips = http.get("/opendata/datasets/trips-by-town-month.json")
    assert stops.content.startswith(b"\xef\xbb\xbf")
    assert stops.headers["content-type"] == "text/csv; charset=utf-8"
    stop_rows = _rows(stops.content)
    assert list(stop_rows[0])[:4] == ["stop_id", "stop_name", "stop_lat", "stop_lon"]
    assert {"takuma-shisho", "jr-takase-eki"} <= {r["stop_id"] for r in stop_rows}
    assert {"route_id": "nio-takuma", "agency_id": "mitoyo-community-bus", "route_type": "3"} in (
        _rows(routes.content)
    )
    house_rows = _rows(houses.content)
    # Neither the withdrawn one nor the admin-only one.
    assert [r["identifier"] for r in house_rows] == ["prop-odpub0001", "prop-odstd0001"]
    house = house_rows[0]
    assert house["streetAddress"] == "粟島"
    assert house["transactionType"] == "賃貸"
    assert house["vacantHouseListing"] == "一般へ公開"
    body = trips.json()
    assert body["license"]["url"] == PDL_URL
    assert body["attribution"].startswith("出典：三豊市")
    [takuma] = [r for r in body["records"] if r["town"] == "takuma" and not r["suppressed"]]
    assert takuma["subjects"] == len(RESIDENTS)
    assert takuma["trips"] == len(RESIDENTS)


def test_a_standard_listings_public_fields_download_in_the_standards_names(
    seeded: RunningPlatform,
) -> None:
    with seeded.client() as http:
        csv_rows = _rows(http.get("/opendata/datasets/vacant-houses.csv").content)
        body = http.get("/opendata/datasets/vacant-houses.json").json()
    [csv_house] = [r for r in csv_rows if r["identifier"] == "prop-odstd0001"]
    [json_house] = [r for r in body["records"] if r["identifier"] == "prop-odstd0001"]
    assert list(csv_rows[0])[:3] == ["localGovernmentCode", "identifier", "streetAddressId"]
    for house in (csv_house, json_house):
        assert house["localGovernmentCode"] == "372081"
        assert house["streetAddress"] == "詫間町粟島"
        assert house["buildingStructure"] == "木造（W造）"
        assert house["gas"] == "プロパンガス（LPG）"
        assert house["vacantHouseListing"] == "一般へ公開"
        assert house["town"] == "takuma"
    assert json_house["propertyRent_JPY"] == 30000
    assert csv_house["propertyRent_JPY"] == "30000"
    identifying = set(STANDARD_OWNERS["res-odo00003"])  # fullAddress, cityBlock, latitude, ...
    assert identifying.isdisjoint(body["columns"])
    assert identifying.isdisjoint(csv_rows[0])
    assert "prop-odadmn001" not in {r["identifier"] for r in body["records"]}


def test_an_unknown_dataset_is_a_problem_naming_those_published(seeded: RunningPlatform) -> None:
    with seeded.client() as http:
        r = http.get("/opendata/datasets/residents.csv")
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["type"] == "urn:tsunagu:problem:unknown-dataset"
    assert "bus-stops" in r.json()["detail"]


def _published_bytes(platform: RunningPlatform) -> dict[str, bytes]:
    ckan = _ckan(platform)
    pages: dict[str, bytes] = {}
    with platform.client() as http:
        for path in (
            "/opendata/catalog.jsonld",
            "/api/3/action/package_list",
            "/api/3/action/package_search?rows=1000",
            "/api/3/action/organization_list?all_fields=true",
        ):
            pages[path] = http.get(path).raise_for_status().content
        for name in ckan.action.package_list():
            show = f"/api/3/action/package_show?id={name}"
            pages[show] = http.get(show).raise_for_status().content
            for fmt in ("csv", "json"):
                path = f"/opendata/datasets/{name}.{fmt}"
                pages[path] = http.get(path).raise_for_status().content
    return pages


def _identifying(details: dict[str, Any]) -> Iterator[str]:
    for value in details.values():
        if isinstance(value, dict):
            yield from _identifying(value)
        else:
            yield str(value)


def test_no_published_byte_names_a_resident_or_an_owner(seeded: RunningPlatform) -> None:
    needles = [*RESIDENTS, INQUIRER_NAME]
    owners: dict[str, dict[str, Any]] = {**OWNERS, **STANDARD_OWNERS}
    for owner, details in owners.items():
        needles.append(owner)
        needles.extend(_identifying(details))
    pages = _published_bytes(seeded)
    assert len(pages) == 4 + 3 * len(DATASETS)
    published = {path: body.decode("utf-8-sig") for path, body in pages.items()}
    # The search finds what is there: the public listing is published.
    assert any("prop-odpub0001" in text for text in published.values())
    leaks = [(path, n) for path, text in published.items() for n in needles if n in text]
    assert leaks == []
    assert any("prop-odstd0001" in text for text in published.values())
    # The withdrawn listing is nowhere either, nor the one its bank keeps to its administrators.
    assert not any("prop-odgone001" in text for text in published.values())
    assert not any("prop-odadmn001" in text for text in published.values())


# -- access ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tight(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPlatform]:
    """A platform allowing each client address a burst of two open-data requests."""
    running = start_platform(
        tmp_path_factory.mktemp("opendata-tight"),
        {"TSUNAGU_OPENDATA_RATE_PER_S": "0.001", "TSUNAGU_OPENDATA_BURST": "2"},
    )
    yield running
    stop_platform(running)


def test_open_data_needs_no_sign_in_and_is_rate_limited_per_client(tight: RunningPlatform) -> None:
    with httpx.Client(base_url=tight.base_url, timeout=10) as http:
        assert http.get("/opendata/catalog.jsonld").status_code == 200
        assert http.get("/api/3/action/package_list").status_code == 200
        over = http.get("/opendata/datasets/bus-stops.csv")
        assert over.status_code == 429
        assert over.headers["content-type"] == "application/problem+json"
        assert int(over.headers["retry-after"]) >= 1
        ckan_over = http.get("/api/3/action/package_list")
        assert ckan_over.status_code == 429
        assert ckan_over.json()["success"] is False
        assert int(ckan_over.headers["retry-after"]) >= 1
    with pytest.raises(ckanapi.CKANAPIError):
        _ckan(tight).action.package_list()
