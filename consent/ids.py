"""Identifier types of the consent service, their shapes, and how new ones are made."""

from __future__ import annotations

import re
import uuid
from typing import NewType

PartnerId = NewType("PartnerId", str)
SubjectId = NewType("SubjectId", str)
ConsentId = NewType("ConsentId", str)
PurposeCode = NewType("PurposeCode", str)
CategoryCode = NewType("CategoryCode", str)

#: Residents and owners share one platform id space (an owner is a resident of the platform).
SUBJECT_ID = re.compile(r"res-[0-9a-z]{4,40}")
PARTNER_ID = re.compile(r"ptn-[0-9a-z]{4,40}")


def new_partner_id() -> PartnerId:
    """A fresh ``ptn-`` id."""
    return PartnerId(f"ptn-{uuid.uuid4().hex[:16]}")


def new_consent_id() -> ConsentId:
    """A fresh ``cns-<uuid>`` id."""
    return ConsentId(f"cns-{uuid.uuid4()}")


def new_receipt_id() -> str:
    """A fresh ``rcp-<uuid>`` id for one receipt."""
    return f"rcp-{uuid.uuid4()}"
