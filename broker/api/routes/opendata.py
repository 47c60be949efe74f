"""The open data catalogue (`/opendata`): a DCAT catalogue (JSON-LD) and each dataset as CSV
and JSON, for anyone, without sign-in, rate-limited per client address.

What is published, and why it may be, is ``broker.views.opendata``; this module only describes
and encodes it. CKAN's action API over the same datasets is ``broker.api.routes.ckan``.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Request, Response

from broker.api.deps import ServicesDep
from broker.api.limits import charge_key
from broker.api.problems import Problem, ProblemError
from broker.api.services import Services
from broker.settings import Settings
from broker.views.opendata import (
    DATASETS,
    PDL_ID,
    PDL_TITLE,
    PDL_URL,
    Dataset,
    Moment,
    UnknownDatasetError,
    dataset,
)

router = APIRouter(
    prefix="/opendata",
    tags=["open data"],
    responses={
        404: {"model": Problem, "description": "No dataset of that name"},
        429: {"model": Problem, "description": "Over the client address's rate; see Retry-After"},
    },
)

JSON_LD = "application/ld+json"
CSV = "text/csv; charset=utf-8"

#: The media types of each distribution, as IANA registers them (DCAT's dcat:mediaType).
MEDIA_TYPES = {"csv": "text/csv", "json": "application/json"}
_IANA = "https://www.iana.org/assignments/media-types/"


def client_address(request: Request) -> str:
    """The key an anonymous client is rate-limited by: its address."""
    return request.client.host if request.client else "unknown"


def charge_open_data(request: Request, services: Services) -> None:
    """Take one open-data request from the client address's bucket (429 when it is empty)."""
    address = client_address(request)
    charge_key(services.opendata_buckets, address, f"client {address}", "open-data requests")


async def open_data_services(request: Request, services: ServicesDep) -> Services:
    """The services, once the client's open-data request is within its rate."""
    charge_open_data(request, services)
    return services


OpenDataDep = Annotated[Services, Depends(open_data_services)]


def base_url(request: Request) -> str:
    """The API's address as the client reached it, without a trailing slash."""
    return str(request.base_url).rstrip("/")


def dataset_url(base: str, name: str) -> str:
    """Where a dataset is described (its identifier in the catalogue)."""
    return f"{base}/opendata/datasets/{name}"


def download_url(base: str, name: str, fmt: str) -> str:
    """Where a dataset is downloaded in ``fmt`` (csv or json)."""
    return f"{base}/opendata/datasets/{name}.{fmt}"


def attribution(settings: Settings, ds: Dataset, base: str) -> str:
    """The citation PDL1.0 §1.1 asks of users, in its model form."""
    return (
        f"出典：{settings.opendata_publisher}「{ds.title_ja}」（{dataset_url(base, ds.name)}）、"
        f"公共データ利用規約（第1.0版）（{PDL_URL}）"
    )


def moment_of(services: Services) -> Moment:
    """What a dataset's rows are computed at, for this request."""
    settings = services.settings
    return Moment(
        engine=services.engine,
        k=settings.k_anonymity,
        settle_days=settings.statistics_settle_days,
        now=datetime.now(UTC),
    )


def _publisher(settings: Settings) -> dict[str, Any]:
    return {
        "@id": settings.opendata_publisher_url,
        "@type": "foaf:Organization",
        "foaf:name": [
            {"@value": settings.opendata_publisher, "@language": "ja"},
            {"@value": settings.opendata_publisher_en, "@language": "en"},
        ],
    }


def _dcat_dataset(settings: Settings, ds: Dataset, base: str) -> dict[str, Any]:
    publisher = _publisher(settings)
    doc: dict[str, Any] = {
        "@id": dataset_url(base, ds.name),
        "@type": "dcat:Dataset",
        "dct:identifier": ds.name,
        "dct:title": [
            {"@value": ds.title_ja, "@language": "ja"},
            {"@value": ds.title_en, "@language": "en"},
        ],
        "dct:description": ds.description,
        "dcat:keyword": list(ds.keywords),
        "dct:license": {"@id": PDL_URL},
        "dct:publisher": publisher,
        "dct:rightsHolder": publisher,
        "dct:rights": {
            "@type": "dct:RightsStatement",
            "rdfs:label": attribution(settings, ds, base),
        },
        "dcat:distribution": [
            {
                "@id": download_url(base, ds.name, fmt),
                "@type": "dcat:Distribution",
                "dct:title": f"{ds.title_ja} ({fmt.upper()})",
                "dct:format": fmt.upper(),
                "dcat:mediaType": {"@id": _IANA + media},
                "dcat:downloadURL": {"@id": download_url(base, ds.name, fmt)},
                "dcat:accessURL": {"@id": download_url(base, ds.name, fmt)},
                "dct:license": {"@id": PDL_URL},
            }
            for fmt, media in MEDIA_TYPES.items()
        ],
    }
    if ds.conforms_to:
        doc["dct:conformsTo"] = {"@id": ds.conforms_to}
    return doc


def catalogue(settings: Settings, base: str) -> dict[str, Any]:
    """The DCAT catalogue of every dataset, as JSON-LD."""
    return {
        "@context": {
            "dcat": "http://www.w3.org/ns/dcat#",
            "dct": "http://purl.org/dc/terms/",
            "foaf": "http://xmlns.com/foaf/0.1/",
            "rdfs": "http://www.w3.org/2000/01/rdf-schema#",
        },
        "@id": f"{base}/opendata/catalog.jsonld",
        "@type": "dcat:Catalog",
        "dct:title": [
            {"@value": f"{settings.opendata_publisher}オープンデータ（つなぐ）", "@language": "ja"},
            {"@value": f"{settings.opendata_publisher_en} open data", "@language": "en"},
        ],
        "dct:publisher": _publisher(settings),
        "dct:license": {"@id": PDL_URL},
        "dct:rights": {"@type": "dct:RightsStatement", "rdfs:label": f"{PDL_TITLE} ({PDL_ID})"},
        "dcat:dataset": [_dcat_dataset(settings, ds, base) for ds in DATASETS],
    }


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def as_csv(ds: Dataset, rows: list[dict[str, Any]]) -> bytes:
    """The rows as CSV in UTF-8 with a byte order mark (what Japanese spreadsheets expect)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(ds.columns)
    writer.writerows([_cell(row[c]) for c in ds.columns] for row in rows)
    return b"\xef\xbb\xbf" + out.getvalue().encode("utf-8")


def _found(name: str) -> Dataset:
    try:
        return dataset(name)
    except UnknownDatasetError as exc:
        raise ProblemError(404, "unknown-dataset", str(exc)) from exc


@router.get("/catalog.jsonld", response_class=Response)
def get_catalogue(request: Request, services: OpenDataDep) -> Response:
    """The DCAT catalogue of the open datasets (JSON-LD), each under PDL1.0 with attribution."""
    body = catalogue(services.settings, base_url(request))
    return Response(orjson.dumps(body), media_type=JSON_LD)


@router.get("/datasets/{name}.csv", response_class=Response)
def get_dataset_csv(name: str, services: OpenDataDep) -> Response:
    """A dataset as CSV (UTF-8 with BOM; the standard's column names where one exists)."""
    ds = _found(name)
    return Response(
        as_csv(ds, ds.rows(moment_of(services))),
        media_type=CSV,
        headers={"Content-Disposition": f'attachment; filename="{ds.name}.csv"'},
    )


@router.get("/datasets/{name}.json", response_class=Response)
def get_dataset_json(name: str, request: Request, services: OpenDataDep) -> Response:
    """A dataset as JSON: its licence, attribution, columns and records."""
    ds = _found(name)
    base = base_url(request)
    body = {
        "name": ds.name,
        "title": {"ja": ds.title_ja, "en": ds.title_en},
        "license": {"id": PDL_ID, "title": PDL_TITLE, "url": PDL_URL},
        "attribution": attribution(services.settings, ds, base),
        "columns": list(ds.columns),
        "records": ds.rows(moment_of(services)),
    }
    return Response(orjson.dumps(body), media_type="application/json")
