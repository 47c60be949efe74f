"""The consent-and-partner side of `make run` (`tsunagu up --demo`): demo partners approved for
their purposes, a share of the synthetic region's residents and owners consenting to them,
partner systems reading the API over HTTP, and now and then someone changing their mind.

``cast`` says who takes part, ``seed`` puts it in the store, ``reads`` is a partner's client,
``minds`` the changes of mind, ``life`` runs it all beside the streaming region.
"""

from broker.demo.cast import PARTNERS, DemoPartner, PlannedGrant, demo_resident, planned_grants
from broker.demo.life import DEMO_AUDITOR, PAGE_TOKEN_TTL_S, DemoLife, IssueToken

__all__ = [
    "DEMO_AUDITOR",
    "PAGE_TOKEN_TTL_S",
    "PARTNERS",
    "DemoLife",
    "DemoPartner",
    "IssueToken",
    "PlannedGrant",
    "demo_resident",
    "planned_grants",
]
