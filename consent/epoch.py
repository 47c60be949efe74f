"""The consent epoch: a counter in the store (its row made by the store's migrations) that every
consent or partner change moves in its own transaction.

The bus tells every process *which* cached consents a change made stale, but it takes a few
to a few hundred milliseconds to arrive. A partner read first compares the store's epoch with
the epochs this process has applied (``DecisionPoint.sync``): if one is missing, the cache is
dropped and the read decides from the store. So a revocation holds from the next request in
every process sharing the store, not from when the bus delivers it.
"""

from __future__ import annotations

from sqlalchemy import Connection, select, update

from consent.model import ConsentEpoch

_epoch = ConsentEpoch.__table__  # type: ignore[attr-defined]
# Built once: every partner read runs it, and building it cost more than running it.
_CURRENT = select(_epoch.c.seq).where(_epoch.c.id == 1)


def advance(conn: Connection) -> int:
    """Move the epoch by one inside the caller's transaction; the new value."""
    return int(
        conn.execute(
            update(_epoch)
            .where(_epoch.c.id == 1)
            .values(seq=_epoch.c.seq + 1)
            .returning(_epoch.c.seq)
        ).scalar_one()
    )


def current(conn: Connection) -> int:
    """The store's epoch now (0 before the consent service has made its row)."""
    seq = conn.execute(_CURRENT).scalar()
    return 0 if seq is None else int(seq)
