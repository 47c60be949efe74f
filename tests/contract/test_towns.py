"""The region's towns: told from an export's spelling, a point, or a standard address."""

from __future__ import annotations

import pytest

from contract.towns import MUNICIPALITY_CODE, nearest_town, town_at, town_code, town_of_address


@pytest.mark.parametrize("text", ["takuma", "Takuma", "詫間", "詫間町"])
def test_a_town_in_any_spelling(text: str) -> None:
    assert town_code(text) == "takuma"


def test_a_name_that_is_no_town_of_ours_is_none() -> None:
    assert town_code("多度津町") is None


def test_the_nearest_town_centroid() -> None:
    assert nearest_town(34.2313, 133.6347).code == "takuma"  # 詫間支所
    assert nearest_town(34.1899, 133.7176).code == "takase"  # JR高瀬駅


def test_a_point_far_from_every_town_is_in_none() -> None:
    assert town_at(34.3428, 134.0466) is None  # 高松駅
    assert town_at(34.2313, 133.6347) is not None


@pytest.mark.parametrize(
    ("street_address", "town"),
    [
        ("詫間町粟島", "takuma"),
        ("仁尾町家の浦", "nio"),
        ("高瀬町下勝間", "takase"),
        ("財田町財田上", "saita"),
    ],
)
def test_a_standard_address_of_mitoyo_is_in_the_town_its_street_names(
    street_address: str, town: str
) -> None:
    assert town_of_address(MUNICIPALITY_CODE, street_address) == town


def test_an_address_of_another_municipality_or_none_of_our_towns_is_in_none() -> None:
    assert town_of_address("372030", "豊中町岡本") is None  # 観音寺市: not ours, whatever it says
    assert town_of_address(MUNICIPALITY_CODE, "中央本町") is None
    assert town_of_address(MUNICIPALITY_CODE, None) is None
    assert town_of_address(None, "詫間町粟島") is None
