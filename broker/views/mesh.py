"""JIS X 0410 地域メッシュコード (standard grid square codes) of Japan, at the third level
(3次メッシュ, about 1 km: 30" of latitude by 45" of longitude, 8 digits).

The code is computed by the standard's formula: the first mesh (4 digits) is 40' of latitude
(``floor(lat * 1.5)``) by 1° of longitude (``floor(lon) - 100``); the second (2 digits)
divides it 8 × 8; the third (2 digits) divides that 10 × 10. Coordinates are read as
decimals (``Decimal(str(x))``) so that a point on a mesh edge falls in the mesh north or east
of it, as the standard says, and not on either side by a float's rounding.
"""

from __future__ import annotations

from decimal import Decimal

#: The first-mesh rows and columns that cover Japan (JIS X 0410: 20°N–46°N, 122°E–154°E).
_ROWS = range(30, 69)
_COLUMNS = range(22, 54)

#: The rule a third-level mesh code follows, as an error message names it.
MESH3_RULE = (
    "a JIS X 0410 third-level mesh code (3次メッシュ) of 8 digits inside Japan: "
    "first mesh rows 30–68 and columns 22–53, second mesh digits 0–7, third mesh digits 0–9"
)


class MeshCodeError(ValueError):
    """A mesh code or a point that is not a third-level mesh of Japan; the message says why."""


def mesh3(lat: float, lon: float) -> str:
    """The 8-digit third-level mesh code (3次メッシュ) holding the point (lat, lon)."""
    seconds_lat = Decimal(str(lat)) * 3600
    seconds_lon = (Decimal(str(lon)) - 100) * 3600
    row, lat_rest = divmod(seconds_lat, 2400)  # first mesh: 40' of latitude
    column, lon_rest = divmod(seconds_lon, 3600)  # first mesh: 1° of longitude
    if seconds_lat < 0 or seconds_lon < 0 or int(row) not in _ROWS or int(column) not in _COLUMNS:
        raise MeshCodeError(
            f"({lat}, {lon}) is outside Japan (20°N–46°N, 122°E–154°E): it has no JIS X 0410 "
            "mesh code"
        )
    second_lat, lat_rest = divmod(lat_rest, 300)  # second mesh: 5' × 7'30"
    second_lon, lon_rest = divmod(lon_rest, 450)
    third_lat = lat_rest // 30  # third mesh: 30" × 45"
    third_lon = lon_rest // 45
    return f"{int(row):02d}{int(column):02d}{second_lat}{second_lon}{third_lat}{third_lon}"


def check_mesh3(code: str) -> str:
    """``code`` when it is a third-level mesh code of Japan; refused, naming the rule, if not."""
    if len(code) != 8 or not code.isascii() or not code.isdigit():
        raise MeshCodeError(f"{code!r} is not {MESH3_RULE}: it must be 8 digits")
    row, column = int(code[0:2]), int(code[2:4])
    if row not in _ROWS or column not in _COLUMNS:
        raise MeshCodeError(f"{code!r} is not {MESH3_RULE}: its first mesh is outside Japan")
    if code[4] > "7" or code[5] > "7":
        raise MeshCodeError(f"{code!r} is not {MESH3_RULE}: its second mesh digits exceed 7")
    return code
