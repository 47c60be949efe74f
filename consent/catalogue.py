"""The purpose and data-category catalogues the municipality maintains in ``schemas/catalogue``."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from broker.settings import REPO_SCHEMAS
from consent.errors import UnknownCategoryError, UnknownPurposeError
from consent.ids import CategoryCode, PurposeCode

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


@dataclass(frozen=True, slots=True)
class Catalogue:
    """Both catalogues, by code."""

    purposes: Mapping[PurposeCode, Purpose]
    categories: Mapping[CategoryCode, Category]

    @classmethod
    def load(cls, schemas_dir: Path = REPO_SCHEMAS) -> Catalogue:
        """Read ``purposes.json`` and ``categories.json`` from ``schemas_dir/catalogue``."""
        folder = schemas_dir / "catalogue"
        purposes_doc = json.loads((folder / "purposes.json").read_text(encoding="utf-8"))
        categories_doc = json.loads((folder / "categories.json").read_text(encoding="utf-8"))
        purposes = {
            PurposeCode(p["code"]): Purpose(
                PurposeCode(p["code"]),
                p["name_ja"],
                p["name_en"],
                p["description_ja"],
                p["description_en"],
            )
            for p in purposes_doc["purposes"]
        }
        categories = {
            CategoryCode(c["code"]): Category(
                CategoryCode(c["code"]),
                c["name_ja"],
                c["name_en"],
                c["description_ja"],
                c["description_en"],
                bool(c["personal"]),
                c["subject"],
                {t: tuple(ptrs) for t, ptrs in c.get("fields", {}).items()},
            )
            for c in categories_doc["categories"]
        }
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
