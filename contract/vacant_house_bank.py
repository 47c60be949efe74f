"""The Digital Agency's standard data model 空き家バンク: its 43 fields, in its order, by 項目名 and
英字名 (「エリアデータ活用のためのデータモデル」, デジタル庁, 2026-09-04, PDL1.0:
https://github.com/digital-go-jp/area-data-coordination).

A bank's export is read by these names (connectors) and the open data publishes a listing's
public part under them (broker), so they live in the contract: connectors → contract ← broker.
Which of them identify the owner is not said here: that is the property rule's
(``consent.property_rule``).
"""

from __future__ import annotations

__all__ = ["STANDARD_FIELDS", "STANDARD_NAMES"]

#: The standard's 43 fields in its order: (項目名, 英字名), as the model's table writes them.
STANDARD_FIELDS: tuple[tuple[str, str], ...] = (
    ("全国地方公共団体コード", "localGovernmentCode"),
    ("市町保有の管理ID", "identifier"),
    ("町字ID", "streetAddressId"),
    ("所在地_連結表記", "fullAddress"),
    ("所在地_都道府県", "prefecture"),
    ("所在地_市区町村", "city"),
    ("所在地_町字", "streetAddress"),
    ("所在地_番地以下", "cityBlock"),
    ("郵便番号", "contactPointPostalCode"),
    ("緯度", "latitude"),
    ("経度", "longitude"),
    ("都市計画区域等コード", "cityPlanningArea"),
    ("区域区分コード", "areaDivision"),
    ("用途地域コード", "useDistrict"),
    ("敷地面積", "landArea_MTK"),
    ("所有者等希望売買価格（土地）", "landSalePrice_JPY"),
    ("所有者等希望賃貸価格（土地）", "landRent_JPY"),
    ("建築年月日", "dateOfConstruction"),
    ("延べ床面積", "totalFloorArea_MTK"),
    ("建物の階数（地上）", "storeysAboveGround"),
    ("建物の構造コード", "buildingStructure"),
    ("確認申請状況", "buildingConfirmationStatus"),
    ("所有者等希望売買価格（家屋）", "buildingSalePrice_JPY"),
    ("所有者等希望賃貸価格（家屋）", "buildingRent_JPY"),
    ("問い合わせ先名", "contactPointName"),
    ("問い合わせ連絡先", "contactPointPhoneNumber"),
    ("市町空き家バンク物件詳細URL", "propertyDetailUrl"),
    ("電気", "electricity"),
    ("ガス", "gas"),
    ("風呂", "bath"),
    ("トイレ", "toilet"),
    ("上水道", "waterSupply"),
    ("下水道", "drainage"),
    ("車庫、駐車スペース", "parking"),
    ("庭", "privateGarden"),
    ("間取り", "floorPlan"),
    ("情報公開日、更新日", "dateOfPublicationOrUpdate"),
    ("取引形態", "transactionType"),
    ("空き家バンクへの掲載", "vacantHouseListing"),
    ("告知事項の有無", "disclosure"),
    ("所有者等希望売買価格（土地＋家屋）", "propertySalePrice_JPY"),
    ("所有者等希望賃借価格（土地＋家屋）", "propertyRent_JPY"),
    ("備考", "remarks"),
)

#: The standard's 英字名, in its order.
STANDARD_NAMES: tuple[str, ...] = tuple(en for _, en in STANDARD_FIELDS)
