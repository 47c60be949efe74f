"""People flow (人流データ) and ridership (乗降実績) from the trips at stops: k-anonymous
statistics in the shapes of the national standards.

- **People flow** follows the Digital Agency's 人流データ model (「エリアデータ活用のための
  データモデル」, 2026-09-04, 3.3 2)): ``areaCode`` (the JIS X 0410 third-level mesh, 8
  digits, of the stop), ``locationName`` (kept as the model requires the field; empty),
  ``measurementDate``, ``startTime``/``endTime`` (hourly bands, Japan time; the last band ends
  at 24:00), ``dayOfWeek`` (月..日) and ``peopleCount``: the distinct residents who boarded or
  alighted at a stop in that mesh in that band.
- **Ridership** (乗降実績): the model delegates it to 国土交通省 COMmmmONS' 乗降実績データ標準
  仕様書, whose field names could not be checked here; the fields are ours, named plainly:
  ``stop_id`` (GTFS), ``date``, ``startTime``/``endTime``, ``boardings``, ``alightings``.

Both count boardings and alightings at stops (a door-to-door pick-up's place is the
resident's own, sealed, and in neither). Every cell counts at least k distinct residents
(``broker.views.statistics``: the platform's k rule, monthly publication and freezing); a
smaller cell is **left out** of every output, not listed: at this grain (a 1 km square in one
hour of one day) even the existence of a cell would tell that someone travelled there then.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Engine

from broker.views.mesh import MeshCodeError, check_mesh3
from broker.views.statistics import (
    NO_MESH,
    FilterError,
    Statistic,
    Tables,
    published_months,
)

#: 曜日 of the 人流データ model, Monday first (``date.weekday()``).
DAYS_OF_WEEK = "月火水木金土日"

#: The hourly bands a day is cut into (Japan time): their starts.
BANDS = tuple(f"{hour:02d}:00" for hour in range(24))

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def band_end(start: str) -> str:
    """The end of the hourly band starting at ``start`` (``23:00`` ends at ``24:00``)."""
    return f"{int(start[:2]) + 1:02d}:00"


def check_date(field: str, value: str) -> str:
    """``value`` when it is a calendar date written YYYY-MM-DD; refused, naming ``field``."""
    try:
        if not _DATE.fullmatch(value):
            raise ValueError
        date.fromisoformat(value)
    except ValueError:
        raise FilterError(
            field, f"{value!r} is not a date written YYYY-MM-DD (for example 2025-05-10)"
        ) from None
    return value


def check_band(field: str, value: str) -> str:
    """``value`` when it starts one of the hourly bands; refused, naming ``field``."""
    if value not in BANDS:
        raise FilterError(
            field,
            f"{value!r} is not an hourly band: bands start on the hour, Japan time, "
            "00:00 to 23:00 (for example 10:00)",
        )
    return value


def check_area_code(field: str, value: str) -> str:
    """``value`` when it is a third-level mesh code of Japan; refused, naming ``field``."""
    try:
        return check_mesh3(value)
    except MeshCodeError as e:
        raise FilterError(field, str(e)) from None


# -- people flow ---------------------------------------------------------------------------------


class PeopleFlowCell(BaseModel):
    """One published cell of 人流データ: a mesh, a day and an hourly band."""

    areaCode: str = Field(
        description="JIS X 0410 third-level mesh (8 digits)", examples=["51332517"]
    )
    locationName: str | None = Field(
        default=None, description="地点名: the model's field, kept; not filled (a mesh, no place)"
    )
    measurementDate: str = Field(description="JST date, YYYY-MM-DD", examples=["2025-05-10"])
    startTime: str = Field(description="Band start (JST), hh:mm", examples=["10:00"])
    endTime: str = Field(
        description="Band end (JST), hh:mm; 24:00 ends the day", examples=["11:00"]
    )
    dayOfWeek: str = Field(description="曜日, 月..日", examples=["土"])
    peopleCount: int = Field(
        description="Distinct residents who boarded or alighted in the mesh in the band (人)",
        examples=[14],
    )


class PeopleFlow(Statistic):
    """人流データ: distinct residents per mesh, day and hourly band; cells under k left out."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "statistic": "people-flow",
                    "k": 10,
                    "period": {
                        "from": "2025-05-01T00:00:00+09:00",
                        "to": "2025-06-01T00:00:00+09:00",
                    },
                    "cells": [
                        {
                            "areaCode": "51332517",
                            "locationName": None,
                            "measurementDate": "2025-05-10",
                            "startTime": "10:00",
                            "endTime": "11:00",
                            "dayOfWeek": "土",
                            "peopleCount": 14,
                        }
                    ],
                    "suppressed_cells": 3,
                    "totals_cover": "published cells only",
                }
            ]
        }
    )

    statistic: Literal["people-flow"] = "people-flow"
    cells: list[PeopleFlowCell]


def _day_of_week(day: str) -> str:
    return DAYS_OF_WEEK[date.fromisoformat(day).weekday()]


def _published(
    months: list[tuple[str, Tables]], table: str, keep: tuple[str | None, ...]
) -> tuple[list[tuple[tuple[str, ...], dict[str, int]]], int]:
    """The published cells of ``table`` whose key matches ``keep`` (None: any value), and how
    many cells of the period were suppressed (counted, never listed)."""
    published, suppressed = [], 0
    for _month, tables in months:
        for key, measures in tables[table]:
            if measures is None:
                suppressed += 1
            elif all(want is None or want == got for want, got in zip(keep, key, strict=True)):
                published.append((key, measures))
    published.sort(key=lambda cell: cell[0])
    return published, suppressed


def people_flow(
    engine: Engine,
    start: datetime,
    end: datetime,
    *,
    k: int,
    settle_days: int,
    minimum_k: int | None = None,
    now: datetime | None = None,
    area_code: str | None = None,
    measurement_date: str | None = None,
    start_time: str | None = None,
) -> PeopleFlow:
    """人流データ of [start, end) (whole JST months), optionally of one mesh, day or band."""
    keep = (
        None if area_code is None else check_area_code("areaCode", area_code),
        None if measurement_date is None else check_date("measurementDate", measurement_date),
        None if start_time is None else check_band("startTime", start_time),
    )
    period, months = published_months(
        engine, "touches", start, end, k=k, minimum_k=minimum_k, settle_days=settle_days, now=now
    )
    published, suppressed = _published(months, "people-flow", keep)
    # Stops with no place in Japan have no mesh: their riders are in ridership only.
    published = [cell for cell in published if cell[0][0] != NO_MESH]
    cells = [
        PeopleFlowCell(
            areaCode=area,
            measurementDate=day,
            startTime=band,
            endTime=band_end(band),
            dayOfWeek=_day_of_week(day),
            peopleCount=m["subjects"],
        )
        for (area, day, band), m in published
    ]
    return PeopleFlow(k=k, period=period, cells=cells, suppressed_cells=suppressed)


# -- ridership -----------------------------------------------------------------------------------


class RidershipCell(BaseModel):
    """One published cell of ridership: a stop, a day and an hourly band."""

    stop_id: str = Field(description="The stop (GTFS stop_id)", examples=["mitoyo-city-hall"])
    date: str = Field(description="JST date, YYYY-MM-DD", examples=["2025-05-10"])
    startTime: str = Field(description="Band start (JST), hh:mm", examples=["08:00"])
    endTime: str = Field(
        description="Band end (JST), hh:mm; 24:00 ends the day", examples=["09:00"]
    )
    boardings: int = Field(description="Trips that started at the stop in the band", examples=[31])
    alightings: int = Field(description="Trips that ended at the stop in the band", examples=[12])


class RidershipTotals(BaseModel):
    """Boardings and alightings summed over the published cells."""

    boardings: int = Field(examples=[31])
    alightings: int = Field(examples=[12])


class Ridership(Statistic):
    """乗降実績: boardings and alightings per stop, day and hourly band; cells under k left out.
    Field names ours: COMmmmONS' 乗降実績データ標準仕様書 could not be checked here."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "statistic": "ridership",
                    "k": 10,
                    "period": {
                        "from": "2025-05-01T00:00:00+09:00",
                        "to": "2025-06-01T00:00:00+09:00",
                    },
                    "cells": [
                        {
                            "stop_id": "mitoyo-city-hall",
                            "date": "2025-05-10",
                            "startTime": "08:00",
                            "endTime": "09:00",
                            "boardings": 31,
                            "alightings": 12,
                        }
                    ],
                    "suppressed_cells": 5,
                    "totals": {"boardings": 31, "alightings": 12},
                    "totals_cover": "published cells only",
                }
            ]
        }
    )

    statistic: Literal["ridership"] = "ridership"
    cells: list[RidershipCell]
    totals: RidershipTotals


def ridership(
    engine: Engine,
    start: datetime,
    end: datetime,
    *,
    k: int,
    settle_days: int,
    minimum_k: int | None = None,
    now: datetime | None = None,
    stop_id: str | None = None,
    day: str | None = None,
    start_time: str | None = None,
) -> Ridership:
    """Ridership of [start, end) (whole JST months), optionally of one stop, day or band."""
    keep = (
        None,  # the stop's mesh, the first dimension (people flow is ridership's margin)
        None if day is None else check_date("date", day),
        None if start_time is None else check_band("startTime", start_time),
        stop_id,
    )
    period, months = published_months(
        engine, "touches", start, end, k=k, minimum_k=minimum_k, settle_days=settle_days, now=now
    )
    published, suppressed = _published(months, "ridership", keep)
    cells = [
        RidershipCell(
            stop_id=stop,
            date=day_,
            startTime=band,
            endTime=band_end(band),
            boardings=m["boardings"],
            alightings=m["alightings"],
        )
        for (_mesh, day_, band, stop), m in published
    ]
    return Ridership(
        k=k,
        period=period,
        cells=cells,
        suppressed_cells=suppressed,
        totals=RidershipTotals(
            boardings=sum(c.boardings for c in cells), alightings=sum(c.alightings for c in cells)
        ),
    )
