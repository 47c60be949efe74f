"""The purpose and data-category catalogues the municipality maintains in ``schemas/catalogue``."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from broker.settings import REPO_SCHEMAS
from consent.errors import UnknownCategoryError, UnknownPurposeError
from consent.ids import CategoryCode, PurposeCode
from contract.domains import DOMAINS, Domain, DomainError

#: Whose consent a category needs: a resident's, a property owner's, or nobody's (not personal).
CategorySubject = Literal["resident", "owner", "none"]


@dataclass(frozen=True, slots=True)
class Purpose:
    """One purpose a partner may be approved for."""

    code: PurposeCode
    name_ja: str
    name_en: str
    description_ja: str
    description_en: str


@dataclass(frozen=True, slots=True)
class Category:
    """One data category: what a consent covers, and which event fields belong to it."""

    code: CategoryCode
    name_ja: str
    name_en: str
    description_ja: str
    description_en: str
    personal: bool
    subject: CategorySubject
    #: Per event type, the JSON pointers of the fields in this category.
    fields: Mapping[str, tuple[str, ...]]


class CatalogueError(DomainError):
    """Catalogue files that contradict each other or a domain's declaration."""


def _read_folder(folder: Path, *, required: bool) -> tuple[list[Purpose], list[Category]]:
    """The purposes and categories of one ``catalogue`` folder (either file may be absent
    from a domain's folder)."""

    def doc(name: str, key: str) -> list[dict[str, Any]]:
        path = folder / name
        if not required and not path.exists():
            return []
        items: list[dict[str, Any]] = json.loads(path.read_text(encoding="utf-8"))[key]
        return items

    purposes = [
        Purpose(
            PurposeCode(p["code"]),
            p["name_ja"],
            p["name_en"],
            p["description_ja"],
            p["description_en"],
        )
        for p in doc("purposes.json", "purposes")
    ]
    categories = [
        Category(
            CategoryCode(c["code"]),
            c["name_ja"],
            c["name_en"],
            c["description_ja"],
            c["description_en"],
            bool(c["personal"]),
            c["subject"],
            {t: tuple(ptrs) for t, ptrs in c.get("fields", {}).items()},
        )
        for c in doc("categories.json", "categories")
    ]
    return purposes, categories


def _claim(where: dict[str, str], what: str, owner: str) -> None:
    """Note that ``owner`` defines ``what``; refuses a second definition, naming both."""
    if what in where:
        raise CatalogueError(
            f"{what} is defined by {owner}, already by {where[what]}; define it once"
        )
    where[what] = owner


@dataclass(frozen=True, slots=True)
class Catalogue:
    """Both catalogues, by code."""

    purposes: Mapping[PurposeCode, Purpose]
    categories: Mapping[CategoryCode, Category]

    @classmethod
    def load(
        cls, schemas_dir: Path = REPO_SCHEMAS, domains: Iterable[Domain] = DOMAINS
    ) -> Catalogue:
        """Read ``purposes.json`` and ``categories.json`` from ``schemas_dir/catalogue``, and
        from the ``catalogue`` folder of each domain's own schemas tree (a plug-in's).

        A code defined twice is refused, naming both places; a domain's folder may define
        only the categories its declaration lists.
        """
        purposes: dict[PurposeCode, Purpose] = {}
        categories: dict[CategoryCode, Category] = {}
        where: dict[str, str] = {}
        folders: list[tuple[Path, Domain | None]] = [(schemas_dir / "catalogue", None)]
        folders += [(d.schemas / "catalogue", d) for d in domains if d.schemas is not None]
        for folder, domain in folders:
            found_purposes, found_categories = _read_folder(folder, required=domain is None)
            owner = str(domain) if domain is not None else str(folder)
            if domain is not None:
                undeclared = [c.code for c in found_categories if c.code not in domain.categories]
                if undeclared:
                    raise CatalogueError(
                        f"{folder / 'categories.json'} defines {', '.join(undeclared)}, which "
                        f"{domain} does not declare; add them to its categories"
                    )
            for item in found_purposes:
                _claim(where, f"purpose {item.code!r}", owner)
                purposes[item.code] = item
            for category in found_categories:
                _claim(where, f"category {category.code!r}", owner)
                categories[category.code] = category
        return cls(purposes, categories)

    def purpose(self, code: str) -> Purpose:
        """The purpose ``code``, or UnknownPurposeError."""
        try:
            return self.purposes[PurposeCode(code)]
        except KeyError:
            raise UnknownPurposeError(f"unknown purpose {code!r}") from None

    def category(self, code: str) -> Category:
        """The category ``code``, or UnknownCategoryError."""
        try:
            return self.categories[CategoryCode(code)]
        except KeyError:
            raise UnknownCategoryError(f"unknown data category {code!r}") from None

    def owner_categories(self) -> frozenset[CategoryCode]:
        """Categories that only a property owner can consent to (``property.details``)."""
        return frozenset(c.code for c in self.categories.values() if c.subject == "owner")

    def public_categories(self) -> frozenset[CategoryCode]:
        """Categories that are not personal data and need no consent (public listing, ...)."""
        return frozenset(c.code for c in self.categories.values() if not c.personal)
