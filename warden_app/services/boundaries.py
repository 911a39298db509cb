"""Boundary sets and their areas: create them, and import areas from GeoJSON, GeoPackage or Shapefile.

A file is read and checked completely before anything is written, then written in one
transaction, so a bad file never leaves half a boundary set behind. Areas are keyed by
(boundary set, code): importing the same file again updates the same rows.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from django.contrib.gis.gdal import CoordTransform, DataSource, GDALException, SpatialReference
from django.contrib.gis.gdal.error import SRSException
from django.contrib.gis.geos import GEOSGeometry, MultiPolygon, Polygon
from django.db import transaction
from django.utils.text import slugify

from ..models import Area, BoundarySet

WGS84_SRID = 4326
AREA_TYPES = ("Polygon", "MultiPolygon")
# Field names tried in this order (case-insensitively) when none is given.
NAME_FIELDS = ("name", "area_name", "areaname", "label", "title")
CODE_FIELDS = ("code", "area_code", "areacode", "gss_code", "id", "ref")
# ONS boundary files name their fields <geography><year>NM / <geography><year>CD (LSOA21NM…).
ONS_NAME_FIELD = re.compile(r"^[a-z]{2,6}\d{2}nm$", re.IGNORECASE)
ONS_CODE_FIELD = re.compile(r"^[a-z]{2,6}\d{2}cd$", re.IGNORECASE)
MAX_REPORTED_PROBLEMS = 20
_NAME_MAX = Area._meta.get_field("name").max_length
_CODE_MAX = Area._meta.get_field("code").max_length


class BoundaryImportError(Exception):
    """A boundary file that cannot be imported; the message says what is wrong with it."""


@dataclass(frozen=True)
class AreaFeature:
    code: str
    name: str
    geom: MultiPolygon  # EPSG:4326
    made_valid: bool


@dataclass(frozen=True)
class BoundaryFile:
    """Everything read from one layer of a boundary file, checked and reprojected."""

    path: Path
    driver: str
    layer: str
    srs_name: str
    name_field: str
    code_field: str
    features: list[AreaFeature]

    @property
    def made_valid(self) -> int:
        return sum(feature.made_valid for feature in self.features)


@dataclass(frozen=True)
class BoundaryImport:
    boundary_set: BoundarySet
    set_created: bool
    created: int
    updated: int
    # Areas already in the set that the file does not name: left as they are, because
    # records and team grants point at them.
    not_in_file: int
    source: BoundaryFile


# --- boundary sets and areas --------------------------------------------------------------

@transaction.atomic
def boundary_set_get_or_create(*, name: str, operational: bool = False) -> tuple[BoundarySet, bool]:
    """The set called `name` (or whose slug is `name`'s slug), created if missing.

    `operational=True` makes an existing set operational; False never demotes one, since
    that would silently change how every new record gets its area.
    """
    name = name.strip()
    slug = slugify(name)[: BoundarySet._meta.get_field("slug").max_length]
    if not name or not slug:
        raise BoundaryImportError(f"{name!r} cannot name a boundary set: it needs letters or digits")
    boundary_set = (
        BoundarySet.objects.filter(name=name).first() or BoundarySet.objects.filter(slug=slug).first()
    )
    if boundary_set is None:
        return BoundarySet.objects.create(name=name, slug=slug, operational=operational), True
    if operational and not boundary_set.operational:
        boundary_set.operational = True
        boundary_set.save(update_fields=["operational"])
    return boundary_set, False


@transaction.atomic
def area_upsert(*, boundary_set: BoundarySet, code: str, name: str, geom: MultiPolygon) -> tuple[Area, bool]:
    """Create the area `code` of the set, or bring its name and outline up to date.

    Writes nothing when both already match, so re-running a seed leaves rows untouched.
    """
    area = Area.objects.filter(boundary_set=boundary_set, code=code).first()
    if area is None:
        return Area.objects.create(boundary_set=boundary_set, code=code, name=name, geom=geom), True
    if area.name != name or not area.geom.equals_exact(geom, 1e-10):
        area.name, area.geom = name, geom
        area.save(update_fields=["name", "geom"])
        area.refresh_from_db(fields=["geom_bng"])
    return area, False


# --- reading a file -------------------------------------------------------------------------

def boundary_file_read(
    *,
    path: str | Path,
    layer: str | None = None,
    name_field: str | None = None,
    code_field: str | None = None,
    make_valid: bool = False,
) -> BoundaryFile:
    """Read and check every feature of one layer, reprojected to EPSG:4326.

    Raises BoundaryImportError naming every problem found (up to a limit), so a file is
    fixed in one round rather than one error at a time. Writes nothing.
    """
    path = Path(path)
    data_source = _open(path)
    source_layer = _pick_layer(data_source, layer, path)
    layer_type = source_layer.geom_type.name.removesuffix("25D")
    if layer_type in ("Point", "MultiPoint", "LineString", "MultiLineString"):
        raise BoundaryImportError(
            f"layer {source_layer.name!r} of {path} holds {layer_type} geometries; "
            "areas must be Polygon or MultiPolygon"
        )
    features = list(source_layer)
    if not features:
        raise BoundaryImportError(f"layer {source_layer.name!r} of {path} has no features")
    fields = list(source_layer.fields)
    name_field = _pick_field(fields, name_field, NAME_FIELDS, ONS_NAME_FIELD, "name", "--name-field")
    code_field = _pick_field(fields, code_field, CODE_FIELDS, ONS_CODE_FIELD, "code", "--code-field")
    srs = source_layer.srs
    if srs is None:
        raise BoundaryImportError(
            f"{path} has no spatial reference system (a Shapefile needs its .prj beside it); "
            "add one, e.g. ogr2ogr -a_srs EPSG:27700 fixed.gpkg " + str(path)
        )
    try:
        to_wgs84 = CoordTransform(srs, SpatialReference(WGS84_SRID))
    except (GDALException, SRSException) as error:
        raise BoundaryImportError(f"cannot reproject from {srs.name} to WGS 84: {error}") from error

    problems: list[str] = []
    read: list[AreaFeature] = []
    first_position: dict[str, int] = {}
    for position, feature in enumerate(features, start=1):
        name = _text(feature.get(name_field))
        code = _text(feature.get(code_field))
        where = f"feature {position}" + (f" (code {code})" if code else "")
        feature_problems = []
        if name is None:
            feature_problems.append(f"no name in field {name_field!r}")
        elif len(name) > _NAME_MAX:
            feature_problems.append(f"name longer than {_NAME_MAX} characters")
        if code is None:
            feature_problems.append(f"no code in field {code_field!r}")
        elif len(code) > _CODE_MAX:
            feature_problems.append(f"code longer than {_CODE_MAX} characters")
        elif code in first_position:
            feature_problems.append(f"code already used by feature {first_position[code]}")
        else:
            first_position[code] = position
        try:
            geom, made_valid = _area_geometry(feature, to_wgs84, make_valid)
        except _GeometryProblem as problem:
            feature_problems.append(str(problem))
        if feature_problems:
            problems.append(f"{where}: {'; '.join(feature_problems)}")
        else:
            read.append(AreaFeature(code=code, name=name, geom=geom, made_valid=made_valid))

    if problems:
        shown = problems[:MAX_REPORTED_PROBLEMS]
        if len(problems) > len(shown):
            shown.append(f"… and {len(problems) - len(shown)} more")
        raise BoundaryImportError(
            f"{path} layer {source_layer.name!r}: {len(problems)} of {len(features)} features "
            "cannot be imported, so nothing was imported:\n  " + "\n  ".join(shown)
        )
    return BoundaryFile(
        path=path,
        driver=data_source.driver.name,
        layer=source_layer.name,
        srs_name=srs.name,
        name_field=name_field,
        code_field=code_field,
        features=read,
    )


class _GeometryProblem(Exception):
    pass


def _open(path: Path) -> DataSource:
    if not path.exists():
        raise BoundaryImportError(f"{path}: no such file")
    # A zipped Shapefile or GeoPackage, as boundary downloads usually come, is read in place.
    location = f"/vsizip/{path}" if path.suffix.lower() == ".zip" else str(path)
    try:
        return DataSource(location)
    except GDALException as error:
        raise BoundaryImportError(
            f"{path} cannot be read as vector data (GeoJSON, GeoPackage or Shapefile): {error}"
        ) from error


def _pick_layer(data_source: DataSource, wanted: str | None, path: Path):
    layers = list(data_source)
    names = [layer.name for layer in layers]
    if wanted is not None:
        for layer in layers:
            if layer.name == wanted:
                return layer
        raise BoundaryImportError(f"{path} has no layer {wanted!r}; its layers are {names}")
    # GeoPackages saved by QGIS also hold attribute-only tables (layer_styles…): ignore those.
    spatial = [layer for layer in layers if layer.geom_type.name != "None"]
    if not spatial:
        raise BoundaryImportError(f"{path} has no layer with geometries (layers: {names})")
    if len(spatial) > 1:
        raise BoundaryImportError(
            f"{path} has several layers {[layer.name for layer in spatial]}: choose one with --layer"
        )
    return spatial[0]


def _pick_field(
    fields: list[str],
    given: str | None,
    candidates: tuple[str, ...],
    pattern: re.Pattern,
    what: str,
    option: str,
) -> str:
    by_lower = {field.lower(): field for field in fields}
    if given is not None:
        if given in fields:
            return given
        if given.lower() in by_lower:
            return by_lower[given.lower()]
        raise BoundaryImportError(f"{what} field {given!r} is not in the file; its fields are {fields}")
    for candidate in candidates:
        if candidate in by_lower:
            return by_lower[candidate]
    matches = [field for field in fields if pattern.match(field)]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise BoundaryImportError(
            f"several fields could be the {what} ({matches}): choose one with {option}"
        )
    raise BoundaryImportError(
        f"no {what} field found among {fields}: name it with {option}"
    )


def _text(value) -> str | None:
    if value is None:
        return None
    # Codes stored as numbers (1.0 in a DBF) must read the same as the integer 1.
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value).strip()
    return text or None


def _area_geometry(feature, to_wgs84: CoordTransform, make_valid: bool) -> tuple[MultiPolygon, bool]:
    try:
        source = feature.geom
    except GDALException as error:
        raise _GeometryProblem("no geometry") from error
    # Heights and measures mean nothing for an area outline.
    if source.is_3d:
        source.set_3d(False)
    if source.is_measured:
        source.set_measured(False)
    if source.geom_type.name not in AREA_TYPES:
        raise _GeometryProblem(f"geometry is a {source.geom_type.name}, not a Polygon or MultiPolygon")
    if source.empty:
        raise _GeometryProblem("geometry is empty")
    try:
        source.transform(to_wgs84)
    except GDALException as error:
        raise _GeometryProblem(f"cannot be reprojected to WGS 84: {error}") from error
    min_x, min_y, max_x, max_y = source.extent
    if not (-180 <= min_x <= max_x <= 180 and -90 <= min_y <= max_y <= 90):
        raise _GeometryProblem(
            f"coordinates {source.extent} are not longitude/latitude after reprojection: the "
            "file's coordinate system is wrong (GeoJSON without a crs member is read as EPSG:4326)"
        )
    geom = GEOSGeometry(source.wkb, srid=WGS84_SRID)
    made_valid = False
    if not geom.valid:
        if not make_valid:
            raise _GeometryProblem(f"invalid geometry ({geom.valid_reason}); --make-valid repairs it")
        geom = geom.make_valid()
        made_valid = True
    polygons = _polygons(geom)
    if not polygons:
        raise _GeometryProblem("nothing of the geometry is left once made valid")
    return MultiPolygon(*polygons, srid=WGS84_SRID), made_valid


def _polygons(geom: GEOSGeometry) -> list[Polygon]:
    """The polygons of a geometry; MakeValid may return a collection with stray lines or points."""
    if isinstance(geom, Polygon):
        return [] if geom.empty else [geom]
    if geom.geom_type in ("MultiPolygon", "GeometryCollection"):
        return [polygon for part in geom for polygon in _polygons(part)]
    return []


# --- importing --------------------------------------------------------------------------------

def boundary_set_import(
    *,
    path: str | Path,
    set_name: str | None = None,
    operational: bool = False,
    layer: str | None = None,
    name_field: str | None = None,
    code_field: str | None = None,
    make_valid: bool = False,
) -> BoundaryImport:
    """Import every area of a file into a boundary set (by default named after the layer).

    The file is read and checked before the transaction opens; inside it, existing codes
    are updated in place (same ids, so records and grants still point at them) and new
    codes created. All or nothing.
    """
    source = boundary_file_read(
        path=path, layer=layer, name_field=name_field, code_field=code_field, make_valid=make_valid
    )
    return _write(source=source, set_name=set_name or source.layer, operational=operational)


@transaction.atomic
def _write(*, source: BoundaryFile, set_name: str, operational: bool) -> BoundaryImport:
    boundary_set, set_created = boundary_set_get_or_create(name=set_name, operational=operational)
    # Two imports into one set at once would race on the same codes: take turns.
    BoundarySet.objects.select_for_update().filter(pk=boundary_set.pk).get()
    existing = dict(Area.objects.filter(boundary_set=boundary_set).values_list("code", "id"))
    new, changed = [], []
    for feature in source.features:
        area = Area(
            id=existing.get(feature.code),
            boundary_set=boundary_set,
            code=feature.code,
            name=feature.name,
            geom=feature.geom,
        )
        (changed if area.id else new).append(area)
    Area.objects.bulk_create(new, batch_size=500)
    Area.objects.bulk_update(changed, ["name", "geom"], batch_size=500)
    if boundary_set.operational:
        # Records already stored may now lie in another area: place them again after commit.
        from ..tasks import records_replace_soon

        records_replace_soon()
    file_codes = {feature.code for feature in source.features}
    return BoundaryImport(
        boundary_set=boundary_set,
        set_created=set_created,
        created=len(new),
        updated=len(changed),
        not_in_file=len(set(existing) - file_codes),
        source=source,
    )
