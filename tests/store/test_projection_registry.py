"""Each domain's projection is the one its declaration names: built-in and plug-in alike."""

from __future__ import annotations

import pytest

from broker.store.projections import projection_of, subject_tables
from broker.store.projections.health import PROJECTION as HEALTH_PROJECTION
from contract.domains import DOMAINS, HEALTH, Domain, DomainError


def test_every_installed_domain_names_a_projection_with_its_tables() -> None:
    assert projection_of(HEALTH) is HEALTH_PROJECTION
    for domain in DOMAINS:
        projection = projection_of(domain)
        assert projection.tables and all(t.name.startswith(domain.name) for t in projection.tables)
    assert {t.name for t in subject_tables()} == {
        "transport_trips",
        "transport_ride_requests",
        "health_points",
        "currency_transactions",
        "vacant_house_inquiries",
    }


@pytest.mark.parametrize(
    ("reference", "refusal"),
    [
        ("", "names no projection; set projection='module:PROJECTION'"),
        ("contract.domains:NOWHERE", "its projection 'contract.domains:NOWHERE' cannot be"),
        ("contract.domains:HEALTH", "is a Domain, not a broker.store.projections.Projection"),
    ],
)
def test_a_projection_that_cannot_be_found_is_refused_naming_the_domain(
    reference: str, refusal: str
) -> None:
    domain = Domain("bousai", (), ("resident",), (), projection=reference, origin="plug-in B")
    with pytest.raises(DomainError, match="domain 'bousai' \\(plug-in B\\)") as refused:
        projection_of(domain)
    assert refusal in str(refused.value)
