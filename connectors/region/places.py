"""The places of the synthetic region: stops and meeting points per town, merchants, districts
(大字) for vacant houses, top-up counters. Made up, but shaped like Mitoyo's.
"""

from __future__ import annotations

from dataclasses import dataclass

from contract.towns import TOWN_BY_CODE

__all__ = [
    "DISTRICTS",
    "MERCHANTS",
    "STOPS",
    "Merchant",
    "PlaceStop",
    "gtfs_stop_rows",
    "town_ja",
]


@dataclass(frozen=True, slots=True)
class PlaceStop:
    """A stop of the on-demand service and what is there (where trips go)."""

    stop_id: str
    name: str
    town: str
    kind: str  # office | station | hospital | clinic | shop | community
    lat: float
    lon: float


STOPS: tuple[PlaceStop, ...] = (
    PlaceStop("mitoyo-shiyakusho", "三豊市役所", "takase", "office", 34.1826, 133.7150),
    PlaceStop("jr-takase-eki", "JR高瀬駅", "takase", "station", 34.1899, 133.7176),
    PlaceStop("takase-shinryojo", "高瀬診療所前", "takase", "clinic", 34.1760, 133.7262),
    PlaceStop("takase-super", "スーパー高瀬店前", "takase", "shop", 34.1742, 133.7198),
    PlaceStop("takase-kominkan", "高瀬公民館", "takase", "community", 34.1718, 133.7301),
    PlaceStop("yamamoto-shisho", "山本支所前", "yamamoto", "office", 34.1384, 133.7531),
    PlaceStop("yamamoto-shinryojo", "山本診療所前", "yamamoto", "clinic", 34.1352, 133.7589),
    PlaceStop("yamamoto-super", "スーパー山本店前", "yamamoto", "shop", 34.1401, 133.7602),
    PlaceStop("yamamoto-kominkan", "山本公民館", "yamamoto", "community", 34.1329, 133.7518),
    PlaceStop("mino-shisho", "三野支所前", "mino", "office", 34.2098, 133.7016),
    PlaceStop("jr-mino-eki", "JRみの駅", "mino", "station", 34.2136, 133.6985),
    PlaceStop("mino-shinryojo", "三野診療所前", "mino", "clinic", 34.2087, 133.7088),
    PlaceStop("mino-super", "スーパー三野店前", "mino", "shop", 34.2151, 133.7077),
    PlaceStop("mino-kominkan", "三野公民館", "mino", "community", 34.2172, 133.7102),
    PlaceStop("toyonaka-shisho", "豊中支所前", "toyonaka", "office", 34.1534, 133.6858),
    PlaceStop("jr-motoyama-eki", "JR本山駅", "toyonaka", "station", 34.1557, 133.6925),
    PlaceStop("mitoyo-sogo-byoin", "三豊総合病院", "toyonaka", "hospital", 34.1478, 133.6836),
    PlaceStop("toyonaka-super", "スーパー豊中店前", "toyonaka", "shop", 34.1502, 133.6921),
    PlaceStop("takuma-shisho", "詫間支所前", "takuma", "office", 34.2313, 133.6347),
    PlaceStop("jr-takuma-eki", "JR詫間駅", "takuma", "station", 34.2275, 133.6431),
    PlaceStop("takuma-byoin", "詫間病院前", "takuma", "hospital", 34.2338, 133.6462),
    PlaceStop("michinoeki-takuma", "道の駅 たくま", "takuma", "shop", 34.2419, 133.6368),
    PlaceStop("takuma-super", "スーパー詫間店前", "takuma", "shop", 34.2381, 133.6490),
    PlaceStop("nio-shisho", "仁尾支所前", "nio", "office", 34.1985, 133.6322),
    PlaceStop("nio-hachimangu", "仁尾八幡宮前", "nio", "community", 34.2010, 133.6290),
    PlaceStop("nio-shinryojo", "仁尾診療所前", "nio", "clinic", 34.1941, 133.6357),
    PlaceStop("nio-super", "スーパー仁尾店前", "nio", "shop", 34.1932, 133.6301),
    PlaceStop("saita-shisho", "財田支所前", "saita", "office", 34.1051, 133.7868),
    PlaceStop("jr-sanuki-saida-eki", "JR讃岐財田駅", "saita", "station", 34.0990, 133.7935),
    PlaceStop("saita-shinryojo", "財田診療所前", "saita", "clinic", 34.1068, 133.7921),
    PlaceStop("saita-super", "スーパー財田店前", "saita", "shop", 34.1027, 133.7889),
)


def gtfs_stop_rows() -> list[dict[str, str]]:
    """The stops as GTFS ``stops.txt`` rows (``zone_id`` = the town, as GTFS-JP feeds do)."""
    return [
        {
            "stop_id": s.stop_id,
            "stop_code": "",
            "stop_name": s.name,
            "stop_desc": "",
            "stop_lat": f"{s.lat:.4f}",
            "stop_lon": f"{s.lon:.4f}",
            "zone_id": s.town,
            "location_type": "0",
            "wheelchair_boarding": "1",
        }
        for s in STOPS
    ]


@dataclass(frozen=True, slots=True)
class Merchant:
    """A shop that takes the local currency."""

    merchant_id: str
    name: str
    category: str
    town: str


MERCHANTS: tuple[Merchant, ...] = (
    Merchant("mer-tks0001", "高瀬ふれあい市場", "grocery", "takase"),
    Merchant("mer-tks0002", "たかせ中央薬局", "pharmacy", "takase"),
    Merchant("mer-tks0003", "高瀬茶屋", "restaurant", "takase"),
    Merchant("mer-tks0004", "高瀬セルフ給油所", "fuel", "takase"),
    Merchant("mer-tks0005", "たかせ理容室", "services", "takase"),
    Merchant("mer-ymm0001", "山本ストア", "grocery", "yamamoto"),
    Merchant("mer-ymm0002", "やまもと産直市", "farm_direct", "yamamoto"),
    Merchant("mer-ymm0003", "山本食堂", "restaurant", "yamamoto"),
    Merchant("mer-ymm0004", "山本内科クリニック", "medical", "yamamoto"),
    Merchant("mer-mno0001", "三野マート", "grocery", "mino"),
    Merchant("mer-mno0002", "みの薬局", "pharmacy", "mino"),
    Merchant("mer-mno0003", "三野うどん", "restaurant", "mino"),
    Merchant("mer-mno0004", "みの金物店", "retail", "mino"),
    Merchant("mer-tyn0001", "豊中スーパー", "grocery", "toyonaka"),
    Merchant("mer-tyn0002", "とよなか薬局", "pharmacy", "toyonaka"),
    Merchant("mer-tyn0003", "豊中カフェ", "restaurant", "toyonaka"),
    Merchant("mer-tyn0004", "豊中ホームセンター", "retail", "toyonaka"),
    Merchant("mer-tyn0005", "豊中給油所", "fuel", "toyonaka"),
    Merchant("mer-tkm0001", "詫間ショッピングセンター", "grocery", "takuma"),
    Merchant("mer-tkm0002", "道の駅 たくま 産直コーナー", "farm_direct", "takuma"),
    Merchant("mer-tkm0003", "詫間港食堂", "restaurant", "takuma"),
    Merchant("mer-tkm0004", "たくま民宿", "lodging", "takuma"),
    Merchant("mer-tkm0005", "詫間タクシー", "transport", "takuma"),
    Merchant("mer-nio0031", "仁尾うどん本舗", "restaurant", "nio"),
    Merchant("mer-nio0001", "仁尾商店", "grocery", "nio"),
    Merchant("mer-nio0002", "仁尾みかん直売所", "farm_direct", "nio"),
    Merchant("mer-nio0003", "仁尾の宿", "lodging", "nio"),
    Merchant("mer-sit0001", "財田ストア", "grocery", "saita"),
    Merchant("mer-sit0002", "さいた産直", "farm_direct", "saita"),
    Merchant("mer-sit0003", "財田そば処", "restaurant", "saita"),
    Merchant("mer-sit0004", "財田はり灸院", "medical", "saita"),
)

#: 大字 (districts) per town: the public part of a vacant house's address.
DISTRICTS: dict[str, tuple[str, ...]] = {
    "takase": ("下勝間", "上勝間", "比地", "新田", "羽方", "上麻", "下麻"),
    "yamamoto": ("財田西", "神田", "辻", "河内", "大野"),
    "mino": ("下高瀬", "大見", "吉津"),
    "toyonaka": ("本山", "笠田", "岡本", "上高野", "下高野"),
    "takuma": ("詫間", "松崎", "香田", "積", "大浜", "箱", "生里", "粟島", "志々島"),
    "nio": ("仁尾", "家の浦", "曽保"),
    "saita": ("財田上", "財田中"),
}

#: 小字 used in lot numbers (地番).
KOAZA: tuple[str, ...] = ("北浦", "南谷", "東原", "西原", "中村", "上所", "下所", "本村", "浜田")


def town_ja(code: str) -> str:
    """The town's name as in an address: ``詫間町``."""
    return TOWN_BY_CODE[code].name_ja + "町"
