"""Moments a request may name: aware, and inside the calendar the platform reasons about."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime

from contract.cloudevents import YEARS

#: The years a request's moments may fall in: the events' own (one rule). Periods are moved
#: to month starts, shifted by time zones and widened by defaults; a moment at either end of
#: Python's calendar (year 1 or 9999) would overflow that arithmetic.
FIRST_YEAR, END_YEAR = YEARS.start, YEARS.stop


def within_calendar(value: datetime) -> datetime:
    """``value`` when its year is in [FIRST_YEAR, END_YEAR); a ValueError saying so otherwise."""
    # The year as written, not converted: converting year 1 or 9999 may itself overflow.
    if not FIRST_YEAR <= value.year < END_YEAR:
        raise ValueError(
            f"{value.isoformat()} is outside the years {FIRST_YEAR}-{END_YEAR - 1} the platform "
            "accepts; send a moment within them"
        )
    return value


#: A timezone-aware moment within the accepted years (422 problem otherwise).
Moment = Annotated[AwareDatetime, AfterValidator(within_calendar)]
