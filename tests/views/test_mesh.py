"""JIS X 0410 third-level mesh codes: computed by the standard's formula, checked as input."""

from __future__ import annotations

import pytest

from broker.views.mesh import MeshCodeError, check_mesh3, mesh3


@pytest.mark.parametrize(
    ("lat", "lon", "code"),
    [
        (35.681236, 139.767125, "53394611"),  # Tokyo Station (東京駅)
        (35.0, 135.0, "52354000"),  # a first-mesh corner: the mesh north and east of it
        (26.2124, 127.6809, "39272554"),  # Naha (first mesh 3927)
        (43.0642, 141.3469, "64414277"),  # Sapporo (first mesh 6441)
    ],
)
def test_mesh3_of_known_points(lat: float, lon: float, code: str) -> None:
    assert mesh3(lat, lon) == code


def test_a_point_on_a_third_mesh_edge_falls_in_the_mesh_north_of_it() -> None:
    # 35°40'30" is a third-mesh edge; 35.675 * 3600 in floats is 128429.99999999999.
    assert mesh3(35.675, 139.75) == "53394610"
    assert mesh3(35.67499, 139.75) == "53394600"


@pytest.mark.parametrize(("lat", "lon"), [(51.5, -0.12), (10.0, 135.0), (35.0, 160.0)])
def test_a_point_outside_japan_has_no_mesh(lat: float, lon: float) -> None:
    with pytest.raises(MeshCodeError, match="outside Japan"):
        mesh3(lat, lon)


def test_a_mesh_code_of_japan_is_accepted_as_given() -> None:
    assert check_mesh3("53394611") == "53394611"


@pytest.mark.parametrize(
    ("code", "why"),
    [
        ("5339461", "8 digits"),
        ("5339461100", "8 digits"),
        ("5339461a", "8 digits"),
        ("１２３４５６７８", "8 digits"),
        ("12345678", "outside Japan"),
        ("53398611", "second mesh digits exceed 7"),
    ],
)
def test_a_mesh_code_not_of_8_digits_or_outside_japan_is_refused_naming_the_rule(
    code: str, why: str
) -> None:
    with pytest.raises(MeshCodeError, match=why) as refused:
        check_mesh3(code)
    assert "JIS X 0410" in str(refused.value)
