"""The resident's ID links: the services whose accounts are linked with my region ID; link
one with the code a service gave me; end a link. Only translation: the rules are
``broker.regionid.links``'s.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from broker.api.deps import RegionIdDep
from broker.api.identity import AsResident
from broker.api.problems import Problem
from broker.regionid.links import Link

router = APIRouter(
    prefix="/v1/me/links",
    tags=["resident"],
    responses={
        401: {"model": Problem, "description": "No bearer token, or not a valid one"},
        403: {"model": Problem, "description": "The token's role is not resident"},
        404: {"model": Problem, "description": "The region ID is off on this platform"},
    },
)


class LinkOut(BaseModel):
    """A service whose account is linked with my region ID."""

    client_id: str
    name: str = Field(description="The service company's name")
    how: str = Field(description="sign_in (I signed in to it) or link_code (I entered its code)")
    linked_at: datetime
    unlinked_at: datetime | None = None

    @classmethod
    def of(cls, link: Link) -> LinkOut:
        """The API shape of a link."""
        return cls(
            client_id=link.client_id,
            name=link.client_name,
            how=link.how.value,
            linked_at=link.linked_at,
            unlinked_at=link.unlinked_at,
        )


class LinkCodeIn(BaseModel):
    """The link code a service gave me."""

    code: str = Field(min_length=1, max_length=64, examples=["7K3M-Q9XA-2P4D"])


@router.get("")
async def my_links(me: AsResident, regionid: RegionIdDep) -> list[LinkOut]:
    """The services linked with my region ID, oldest first."""
    links = await run_in_threadpool(regionid.links.of, me.subject)
    return [LinkOut.of(link) for link in links]


@router.post(
    "",
    status_code=201,
    responses={
        404: {"model": Problem, "description": "No such link code, or the region ID is off"},
        409: {"model": Problem, "description": "Code already used, or account linked elsewhere"},
        410: {"model": Problem, "description": "The code expired"},
    },
)
async def link_with_code(body: LinkCodeIn, me: AsResident, regionid: RegionIdDep) -> LinkOut:
    """Link a service's account with my region ID, with the one-time code it gave me."""
    return LinkOut.of(await run_in_threadpool(regionid.links.redeem, me.subject, body.code))


@router.delete(
    "/{client_id}",
    responses={404: {"model": Problem, "description": "No link of mine with that service"}},
)
async def unlink(
    client_id: Annotated[str, Path(max_length=128)], me: AsResident, regionid: RegionIdDep
) -> LinkOut:
    """End my link with a service: its events about me are no longer taken as mine."""
    return LinkOut.of(await run_in_threadpool(regionid.links.unlink, me.subject, client_id))
