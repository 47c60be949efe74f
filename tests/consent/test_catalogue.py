"""The purpose and category catalogue: the platform's own, plus what each domain's schemas
tree brings (a plug-in's ``catalogue/``), every code defined once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from consent.catalogue import Catalogue, CatalogueError
from contract.domains import BUILTIN, Domain

PLUGIN_SCHEMAS = Path(__file__).parents[1] / "plugins" / "bousai" / "tsunagu_bousai" / "schemas"


def _bousai(schemas: Path, categories: tuple[str, ...] = ("bousai.evacuations",)) -> Domain:
    return Domain(
        "bousai", categories, ("resident",), ("bousai.evacuation.checked_in",), schemas=schemas
    )


def test_a_domains_own_categories_and_purposes_join_the_catalogue() -> None:
    catalogue = Catalogue.load(domains=[*BUILTIN, _bousai(PLUGIN_SCHEMAS)])
    category = catalogue.category("bousai.evacuations")
    assert category.personal and category.subject == "resident"
    assert "/party_size" in category.fields["bousai.evacuation.checked_in"]
    assert catalogue.purpose("bousai.shelter_support").name_en == "Shelter support"
    assert catalogue.category("transport.trips")  # the platform's own stay
    assert "bousai.evacuations" not in Catalogue.load(domains=BUILTIN).categories


def _tree(tmp_path: Path, category: str, purpose: str | None = None) -> Path:
    folder = tmp_path / "schemas" / "catalogue"
    folder.mkdir(parents=True)
    shipped = json.loads((PLUGIN_SCHEMAS / "catalogue" / "categories.json").read_text())
    shipped["categories"][0]["code"] = category
    (folder / "categories.json").write_text(json.dumps(shipped))
    if purpose is not None:
        entry = {k: purpose for k in ("name_ja", "name_en", "description_ja", "description_en")}
        (folder / "purposes.json").write_text(
            json.dumps({"purposes": [{**entry, "code": purpose}]})
        )
    return folder.parent


def test_a_category_the_domain_does_not_declare_is_refused(tmp_path: Path) -> None:
    schemas = _tree(tmp_path, "bousai.shelters")
    with pytest.raises(CatalogueError, match=r"defines bousai\.shelters, which domain 'bousai'"):
        Catalogue.load(domains=[_bousai(schemas)])


def test_a_code_defined_twice_is_refused_naming_both(tmp_path: Path) -> None:
    schemas = _tree(tmp_path, "bousai.evacuations", purpose="transport.planning")
    with pytest.raises(CatalogueError) as refused:
        Catalogue.load(domains=[_bousai(schemas)])
    assert str(refused.value).startswith(
        "purpose 'transport.planning' is defined by domain 'bousai', already by "
    )
    assert str(refused.value).endswith("schemas/catalogue; define it once")
