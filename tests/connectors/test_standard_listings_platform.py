"""A town's 空き家バンク export in the Digital Agency's standard model, written by hand in the
standard's Japanese column names and saved as Shift_JIS, run through `tsunagu connector run
vacant_house` into a running platform: what partners see, what is never shown, what is refused."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, text

from connectors.services import SERVICES
from tests.api.test_partner_views import ALL_SCOPES, HOUSING, PERIOD, _grant, _id
from tests.connectors.test_cli import _run
from tests.fixtures.platform import RunningPlatform, register_partner, start_platform, stop_platform

# The 43 項目名 of the model's table, in its order, then the platform's 所有者ID.
HEADER = (
    "全国地方公共団体コード,市町保有の管理ID,町字ID,所在地_連結表記,所在地_都道府県,所在地_市区町村,"
    "所在地_町字,所在地_番地以下,郵便番号,緯度,経度,都市計画区域等コード,区域区分コード,用途地域コード,"
    "敷地面積,所有者等希望売買価格（土地）,所有者等希望賃貸価格（土地）,建築年月日,延べ床面積,"
    "建物の階数（地上）,建物の構造コード,確認申請状況,所有者等希望売買価格（家屋）,"
    "所有者等希望賃貸価格（家屋）,問い合わせ先名,問い合わせ連絡先,市町空き家バンク物件詳細URL,電気,ガス,"
    "風呂,トイレ,上水道,下水道,車庫、駐車スペース,庭,間取り,情報公開日、更新日,取引形態,"
    "空き家バンクへの掲載,告知事項の有無,所有者等希望売買価格（土地＋家屋）,"
    "所有者等希望賃借価格（土地＋家屋）,備考,所有者ID"
)


def _row(owner: str, bank_id: str, **cells: str) -> str:
    """One listing as a bank exports it (a public, rented 古民家 unless ``cells`` say otherwise)."""
    values = {
        "no": bank_id,
        "address": f"香川県三豊市詫間町粟島{bank_id[-3:]}番地",
        "block": f"{bank_id[-3:]}番地",
        "lat": "34.2671",
        "lon": "133.6337",
        "built": "1962-04-01",
        "parking": "なし",
        "contact": "大西 花子",
        "listing": "一般へ公開",
        **cells,
    }
    return (
        f"372081,{values['no']},0012001,{values['address']},香川県,三豊市,詫間町粟島,"
        f"{values['block']},7691108,{values['lat']},{values['lon']},都市計画区域,非線引き区域,,"
        f"212.4,,,{values['built']},98.5,2,木造（W造）,なし,,,{values['contact']},0875-00-1234,"
        f"https://www.city.mitoyo.lg.jp/akiya/detail/{values['no']},あり,プロパンガス（LPG）,"
        f"在来浴室,洋式,公営水道,浄化槽,{values['parking']},あり,5DK,2025-06-02,賃貸,"
        f"{values['listing']},なし,,30000,島の古民家。港から徒歩6分。,{owner}"
    )


def _houses(platform: RunningPlatform, http: httpx.Client, partner: str) -> dict[str, Any]:
    r = http.get(
        "/v1/partner/vacant-houses",
        params={"purpose": HOUSING, **PERIOD, "limit": 500},
        headers=platform.auth("partner", partner, scopes=ALL_SCOPES),
    )
    assert r.status_code == 200, r.text
    return {h["listing_id"]: h for h in r.json()["houses"]}


def _wait_for_listings(platform: RunningPlatform, n: int) -> None:
    engine = create_engine(f"sqlite:///{platform.data_dir / 'store.db'}")
    query = text("SELECT count(*) FROM ingested_events WHERE type LIKE 'vacant_house.%'")
    deadline = time.monotonic() + 20
    try:
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                if int(conn.execute(query).scalar_one()) >= n:
                    return
            time.sleep(0.1)
    finally:
        engine.dispose()
    raise TimeoutError(f"{n} listings not projected")


def test_a_shift_jis_standard_export_is_shown_under_the_property_rule(tmp_path: Path) -> None:
    shown_owner, hidden_owner = _id("res"), _id("res")
    export = tmp_path / "akiya_bank.csv"
    lines = [
        HEADER,
        _row(shown_owner, "MT-2025-0101"),
        _row(hidden_owner, "MT-2025-0102", listing="管理者のみ閲覧", contact="三好 清"),
        _row(_id("res"), "MT-2025-0103", parking="駐車場4台", built="1962/04/01", lat="60.5"),
        _row(_id("res"), "MT-2025-0104", lon="200"),
    ]
    export.write_bytes("\r\n".join(lines).encode("cp932"))
    platform = start_platform(tmp_path / "platform")
    try:
        source = SERVICES["vacant_house"].source
        token = platform.token("connector", "akiya-bank", sources=(source,))
        run = _run(
            tmp_path / "connector",
            *("vacant_house", "--listings", str(export), "--encoding", "cp932"),
            *("--http", platform.base_url, "--token", token),
        )
        _wait_for_listings(platform, 2)
        with platform.client() as http:
            allowed = register_partner(platform, http, HOUSING)
            other = register_partner(platform, http, HOUSING)
            _grant(platform, http, shown_owner, allowed, HOUSING, ["property.details"])
            # Even the hidden listing's owner consenting does not show it: 管理者のみ閲覧 is final.
            _grant(platform, http, hidden_owner, allowed, HOUSING, ["property.details"])
            seen_by_allowed = _houses(platform, http, allowed)
            seen_by_other = _houses(platform, http, other)
            # Nor is it open data, which anyone may download.
            published = http.get("/opendata/datasets/vacant-houses.json")
            assert published.status_code == 200, published.text
    finally:
        stop_platform(platform)

    # Bad rows: reported by file line and by the export's own column, all of a row's cells.
    assert run.returncode == 3, run.stdout + run.stderr
    assert "2 events queued" in run.stdout, run.stdout
    refused = dict(
        x.strip().split(": ", 1) for x in run.stdout.splitlines() if x.startswith(f"  {export}")
    )
    assert set(refused) == {f"{export} line 4", f"{export} line 5"}
    line4, line5 = refused[f"{export} line 4"], refused[f"{export} line 5"]
    assert "column 車庫、駐車スペース: '駐車場4台' is not one of あり, なし" in line4
    assert "column 建築年月日: '1962/04/01' is not a date in YYYY-MM-DD" in line4
    assert "column 緯度: 60.5 is outside Japan" in line4
    assert line5 == "column 経度: 200 is outside Japan (122 to 154)"

    # The owner's consent shows the owner fields to that partner alone.
    shown, hidden = "prop-372081mt20250101", "prop-372081mt20250102"
    house = seen_by_allowed[shown]
    assert house["listing"]["vacantHouseListing"] == "一般へ公開"
    assert house["listing"]["parking"] == "なし"
    assert house["owner_details"]["fullAddress"] == "香川県三豊市詫間町粟島101番地"
    assert house["owner_details"]["contactPointName"] == "大西 花子"
    theirs = seen_by_other[shown]
    assert theirs["owner_details"] is None
    assert theirs["owner_details_withheld"]["reason"] == "owner_consent_missing"
    assert "粟島101番地" not in str(theirs) and "大西" not in str(theirs)
    # The 管理者のみ閲覧 listing is in no partner's view, consent or not, all scopes or not.
    assert hidden not in seen_by_allowed and hidden not in seen_by_other
    assert "三好" not in str(seen_by_allowed) + str(seen_by_other)
    # Open data names a standard listing by the bank's own id (the standard's identifier).
    records = {r["identifier"]: r for r in published.json()["records"]}
    assert "MT-2025-0102" not in published.text and "三好" not in published.text
    assert records["MT-2025-0101"]["town"] == "takuma"  # there, its public part only
    assert "粟島101番地" not in published.text and "大西" not in published.text
