"""Statistics as first published: each closed month's cells, frozen at first publication.

A month's figures are computed once, after the month has closed, and stored here; every later
read of that month answers from this row. Re-reading a month while late events arrive would
otherwise change a published count by one trip at a time and isolate each of them. Only
published figures are stored: a suppressed cell is kept as its dimensions with no measures.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column
from sqlmodel import Field, SQLModel

from broker.store.projections.timestamps import UtcDateTime


class PublishedStatistics(SQLModel, table=True):
    """The published tables of one family of statistics for one closed JST month."""

    __tablename__ = "published_statistics"

    #: Statistics computed together because they share margins (``trips``: trips by town and
    #: town flows), or alone (``points``, ``spending``, ``stops``).
    family: str = Field(primary_key=True, max_length=32)
    month: str = Field(primary_key=True, max_length=7)  # "YYYY-MM", Japan time
    #: The k it was first published at. A month is published once: a later read at a higher
    #: k suppresses more of these cells; none is computed again over newer events.
    k: int
    published_at: datetime = Field(sa_type=UtcDateTime)
    #: Table name -> cells, each ``[dimension values, measures or null when suppressed]``.
    tables: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
