"""The domain registry: each service domain declared once, and the declarations true to the
shipped schemas and catalogue; the bus and ingest know no domain names of their own."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from contract.catalogue import SchemaCatalogue
from contract.domains import BUILTIN, DOMAINS, Domain, DomainError, DomainRegistry

REPO = Path(__file__).parents[2]
SCHEMAS = REPO / "schemas"
SUBJECT_KINDS = {"resident", "property", "vehicle", "merchant"}


def test_every_shipped_event_type_belongs_to_exactly_one_declared_domain() -> None:
    shipped = set(SchemaCatalogue.from_directory(SCHEMAS).types())
    declared = [t for d in DOMAINS for t in d.event_types]
    assert sorted(declared) == sorted(shipped)
    assert len(declared) == len(set(declared))
    for event_type in shipped:
        domain = DOMAINS.of_type(event_type)
        assert domain is not None and event_type in domain.event_types


def test_each_domain_declares_the_categories_its_event_types_fill() -> None:
    categories = json.loads((SCHEMAS / "catalogue" / "categories.json").read_text())["categories"]
    for domain in DOMAINS:
        filled = {
            c["code"] for c in categories if set(c.get("fields", {})) & set(domain.event_types)
        }
        assert set(domain.categories) == filled, domain.name
        assert set(domain.subject_kinds) <= SUBJECT_KINDS


def test_the_builtin_domains_are_found_through_their_entry_points_in_name_order() -> None:
    assert DOMAINS.topics() == tuple(sorted(d.name for d in BUILTIN))
    assert set(DOMAINS) == set(BUILTIN)
    for domain in DOMAINS:
        assert domain.origin.startswith(f"entry point tsunagu.domains:{domain.name} = ")
    assert "transport" in DOMAINS and "disaster" not in DOMAINS
    assert DOMAINS.of_type("disaster.alert.issued") is None


def test_a_declaration_with_another_domains_event_type_is_refused() -> None:
    with pytest.raises(DomainError, match=r"name them childcare\.<entity>\.<action>"):
        Domain("childcare", ("childcare.visits",), ("resident",), ("transport.trip.completed",))


def test_a_second_declaration_of_a_domain_is_refused_and_a_new_one_joins() -> None:
    other = Domain(
        "transport", ("transport.buses",), ("resident",), ("transport.x.y",), origin="plug-in X"
    )
    with pytest.raises(DomainError) as refused:
        DomainRegistry.of(BUILTIN, [other])
    assert str(refused.value) == (
        "domain 'transport' (plug-in X) declares topic 'transport', already taken by domain "
        "'transport'; give one of them another name (the name is the topic)"
    )
    childcare = Domain(
        "childcare", ("childcare.visits",), ("resident",), ("childcare.visit.completed",)
    )
    registry = DomainRegistry.of(BUILTIN, [childcare])
    assert registry.topics()[-1] == "childcare"
    assert registry.of_type("childcare.visit.completed") == childcare


def test_a_category_of_another_domain_is_refused_naming_both() -> None:
    bousai = Domain(
        "bousai", ("bousai.alerts", "health.points"), ("resident",), (), origin="plug-in B"
    )
    with pytest.raises(DomainError) as refused:
        DomainRegistry.of(BUILTIN, [bousai])
    assert str(refused.value).startswith(
        "domain 'bousai' (plug-in B) declares category 'health.points', already taken by "
        "domain 'health'"
    )


def test_a_refused_installation_stays_refused_at_every_use() -> None:
    calls = []

    def clashing() -> list[Domain]:
        calls.append(1)
        return [*BUILTIN, Domain("health", ("health.steps",), ("resident",), ())]

    registry = DomainRegistry()
    registry._source = clashing
    for _ in range(2):
        with pytest.raises(DomainError, match="already taken"):
            registry.topics()
    assert len(calls) == 2


def test_an_unknown_domain_is_named_with_the_known_ones() -> None:
    with pytest.raises(KeyError, match="known: currency, health, transport, vacant_house"):
        DOMAINS.get("disaster")


@pytest.mark.parametrize("package", ["broker/bus", "broker/ingest", "contract/bus.py"])
def test_the_bus_and_ingest_name_no_domain(package: str) -> None:
    names = re.compile(r"[\"'](" + "|".join(DOMAINS.names()) + r")[\"'.]")
    root = REPO / package
    files = [root] if root.is_file() else sorted(root.rglob("*.py"))
    for path in files:
        assert not names.search(path.read_text()), f"{path} names a domain"
