"""Catalog entries: named, ready-made STAC sources that :func:`build` turns into collections.

An entry says where the items are (a STAC API and collection), which assets are
which bands, and how to reach the pixels: href rewrites (``https://`` mirrors to
the ``s3://`` buckets behind them), requester-pays buckets, public buckets that
need no credentials. The built-in entries are Earth Search v1 collections;
:func:`register` adds your own (or replaces one), for this process.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Unpack

import pyarrow as pa

from .collection import Collection
from .errors import ConfigError
from .ingest import build_from_stac
from .settings import Settings
from .table.stac import SearchKeywords

__all__ = ["CatalogEntry", "build", "catalog", "get_entry", "register"]

log = logging.getLogger(__name__)

EARTH_SEARCH = "https://earth-search.aws.element84.com/v1"


@dataclass(frozen=True, slots=True, kw_only=True)
class CatalogEntry:
    """A named STAC source.

    Attributes:
        id: ``provider/collection``, e.g. ``earthsearch/sentinel-2-l2a``.
        title: One line for people.
        stac_api: API root URL.
        collection: STAC collection id there.
        bands: Band name -> asset key, in the order bands are listed.
        href_rewrites: Href prefix -> replacement, applied to every asset href.
        requester_pays: The bucket bills the reader: S3 reads send ``RequestPayer``.
        anonymous: The bucket is public: without AWS credentials, reads are unsigned.
        region: The bucket's region, used when no ``AWS_REGION``/endpoint is set.
        description: Notes (licence, caveats).
    """

    id: str
    title: str
    stac_api: str
    collection: str
    bands: Mapping[str, str]
    href_rewrites: Mapping[str, str] = field(default_factory=dict)
    requester_pays: bool = False
    anonymous: bool = False
    region: str | None = None
    description: str = ""

    def __post_init__(self) -> None:
        if "/" not in self.id:
            raise ConfigError(f"catalog id {self.id!r} must be 'provider/name'")
        if not self.bands:
            raise ConfigError(f"catalog entry {self.id} names no bands")

    def settings_for(self, settings: Settings) -> Settings:
        """``settings`` adjusted to reach this entry's pixels (requester pays, unsigned, region)."""
        changes: dict[str, Any] = {}
        if self.requester_pays and not settings.requester_pays:
            changes["requester_pays"] = True
        if self.anonymous and not (settings.aws_access_key_id or settings.aws_profile):
            changes["aws_no_sign_request"] = True
        if self.region and not settings.aws_region and not settings.aws_endpoint_url:
            changes["aws_region"] = self.region
        return dataclasses.replace(settings, **changes) if changes else settings


_S2_BANDS = {
    "B01": "coastal", "B02": "blue", "B03": "green", "B04": "red", "B05": "rededge1", "B06": "rededge2",
    "B07": "rededge3", "B08": "nir", "B8A": "nir08", "B09": "nir09", "B11": "swir16", "B12": "swir22", "SCL": "scl",
}
_LANDSAT_BANDS = {
    "B1": "coastal", "B2": "blue", "B3": "green", "B4": "red", "B5": "nir08", "B6": "swir16", "B7": "swir22",
    "B10": "lwir11", "QA_PIXEL": "qa_pixel", "QA_RADSAT": "qa_radsat", "QA_AEROSOL": "qa_aerosol",
}


def _earth_search(collection: str, title: str, bands: Mapping[str, str], description: str, *,
                  rewrite: tuple[str, str] | None = None, requester_pays: bool = False,
                  region: str = "us-west-2") -> CatalogEntry:
    """An entry of Element 84's Earth Search v1 (``earthsearch/<collection>``); public unless ``requester_pays``."""
    return CatalogEntry(id=f"earthsearch/{collection}", title=title, stac_api=EARTH_SEARCH, collection=collection,
                        bands=bands, href_rewrites=dict([rewrite]) if rewrite else {},
                        requester_pays=requester_pays, anonymous=not requester_pays, region=region,
                        description=description)


_BUILTIN = (
    _earth_search("sentinel-2-l2a", "Sentinel-2 L2A surface reflectance (Earth Search v1, COGs on AWS)", _S2_BANDS,
                  "Public bucket; band names are the ESA band numbers (B04 = red).",
                  rewrite=("https://sentinel-cogs.s3.us-west-2.amazonaws.com/", "s3://sentinel-cogs/")),
    _earth_search("landsat-c2-l2", "Landsat Collection 2 Level-2 (Earth Search v1; USGS requester-pays bucket)",
                  _LANDSAT_BANDS,
                  "Hrefs point at landsatlook (login needed); rewritten to s3://usgs-landsat, which bills the "
                  "reader (AWS credentials needed). Band names are the OLI band numbers (B4 = red).",
                  rewrite=("https://landsatlook.usgs.gov/data/", "s3://usgs-landsat/"), requester_pays=True),
    _earth_search("naip", "NAIP aerial imagery, 4-band RGBIR (Earth Search v1; requester-pays bucket)",
                  {"red": "image:1", "green": "image:2", "blue": "image:3", "nir": "image:4"},
                  "One 4-band asset per item (red, green, blue, NIR samples); AWS credentials needed.",
                  requester_pays=True),
    _earth_search("cop-dem-glo-30", "Copernicus DEM GLO-30 (Earth Search v1, public bucket)", {"elevation": "data"},
                  "Elevation in metres, EPSG:4326 tiles of 1 x 1 degree.",
                  rewrite=("https://copernicus-dem-30m.s3.amazonaws.com/", "s3://copernicus-dem-30m/"),
                  region="eu-central-1"),
)

_REGISTRY: dict[str, CatalogEntry] = {entry.id: entry for entry in _BUILTIN}


def register(entry: CatalogEntry, *, replace: bool = False) -> None:
    """Add an entry to the catalog of this process (``replace`` an existing id deliberately).

    Raises:
        ConfigError: the id is taken and ``replace`` is false.
    """
    if entry.id in _REGISTRY and not replace:
        raise ConfigError(f"catalog entry {entry.id} exists; pass replace=True to replace it")
    _REGISTRY[entry.id] = entry


def get_entry(entry_id: str) -> CatalogEntry:
    """The entry named ``entry_id``.

    Raises:
        ConfigError: no such entry (the message lists those there are).
    """
    try:
        return _REGISTRY[entry_id]
    except KeyError:
        raise ConfigError(f"no catalog entry {entry_id!r}; rasteret_core.catalog() lists {sorted(_REGISTRY)}") from None


def catalog() -> pa.Table:
    """The catalog entries as a table: id, title, stac_api, collection, bands, access, rewrites, description."""
    entries = sorted(_REGISTRY.values(), key=lambda e: e.id)
    return pa.table({
        "id": [e.id for e in entries],
        "title": [e.title for e in entries],
        "stac_api": [e.stac_api for e in entries],
        "collection": [e.collection for e in entries],
        "bands": pa.array([list(e.bands) for e in entries], pa.list_(pa.string())),
        "band_map": [json.dumps(dict(e.bands)) for e in entries],
        "requester_pays": [e.requester_pays for e in entries],
        "anonymous": [e.anonymous for e in entries],
        "href_rewrites": [json.dumps(dict(e.href_rewrites)) for e in entries],
        "description": [e.description for e in entries],
    })


def build(entry_id: str, *, uri: str | None, bands: Sequence[str] | None = None, stac_api: str | None = None,
          enrich: bool = True, partial: bool = False, settings: Settings | None = None,
          **filters: Unpack[SearchKeywords]) -> Collection:
    """Build (or update) a collection from a catalog entry; see :func:`build_from_stac`.

    Args:
        entry_id: A :func:`catalog` id, e.g. ``"earthsearch/sentinel-2-l2a"``.
        uri: Delta table to commit to; None keeps the collection in memory.
        bands: Band names of the entry to keep (default: all of them).
        stac_api: Another endpoint serving the same collection (a mirror, a test server).
        enrich: Parse the COG headers now.
        partial: Leave out records whose headers cannot be parsed instead of failing.
        settings: Defaults to :meth:`Settings.from_env`; the entry adds requester-pays,
            unsigned reads or a region as it needs.
        **filters: The search's ``bbox``, ``datetime``, ``intersects``, ``query``, ``max_items``
            (:class:`~rasteret_core.table.stac.SearchKeywords`).

    The collection keeps the adjusted settings; a later ``load`` of ``uri`` needs
    the same (``RASTERET_REQUESTER_PAYS=1`` for requester-pays entries).
    """
    entry = get_entry(entry_id)
    unknown = sorted(set(bands or ()) - set(entry.bands))
    if unknown:
        raise ConfigError(f"{entry_id} has no band(s) {unknown}; it has {list(entry.bands)}")
    band_map = {name: entry.bands[name] for name in (bands or entry.bands)}
    adjusted = entry.settings_for(settings or Settings.from_env())
    return build_from_stac(
        stac_api=stac_api or entry.stac_api, collection=entry.collection, uri=uri, bands=band_map,
        href_rewrites=entry.href_rewrites, enrich=enrich, partial=partial, settings=adjusted, operation="build",
        metadata={"catalog": entry_id}, **filters,
    )
