"""manage.py import_areas: GeoJSON, GeoPackage and Shapefile through GDAL, all or nothing.

Files are written by the test (GeoJSON by hand, the others converted from it with GDAL's
own ogr2ogr), then imported into the real PostGIS test database.
"""
import json
import math
import subprocess
import uuid
import zipfile
from io import StringIO
from pathlib import Path

import pytest
from django.contrib.gis.geos import Point
from django.core.management import CommandError, call_command
from django.utils import timezone

from warden_app.models import Area, BoundarySet, FormDefinition, Observation, Organisation, User

pytestmark = pytest.mark.django_db

OGR2OGR = "/usr/bin/ogr2ogr"

# Ordnance Survey, "A guide to coordinate systems in Great Britain", worked example (Caister
# water tower): grid E 651409.903 N 313177.270 is ETRS89 52d 39m 28.8282s N,
# 1d 42m 57.8663s E.
# ETRS89 and WGS84 differ by under a metre here; without the OSTN15 grid PROJ uses the
# 7-parameter Helmert transformation, good to a few metres.
CAISTER_E, CAISTER_N = 651409.903, 313177.270
CAISTER_LAT = 52 + 39 / 60 + 28.8282 / 3600
CAISTER_LON = 1 + 42 / 60 + 57.8663 / 3600
TOLERANCE_M = 5


def square(x: float, y: float, half: float) -> list:
    return [[[x - half, y - half], [x + half, y - half], [x + half, y + half], [x - half, y + half],
             [x - half, y - half]]]  # fmt: skip


def polygon(x: float, y: float, half: float = 0.004) -> dict:
    return {"type": "Polygon", "coordinates": square(x, y, half)}


def feature(geometry: dict | None, **properties) -> dict:
    return {"type": "Feature", "properties": properties, "geometry": geometry}


def write_geojson(path: Path, features: list[dict], srid: int | None = None) -> Path:
    collection = {"type": "FeatureCollection", "features": features}
    if srid is not None:
        # The pre-RFC 7946 crs member: how GDAL and QGIS still write GeoJSON in BNG.
        collection["crs"] = {"type": "name", "properties": {"name": f"urn:ogc:def:crs:EPSG::{srid}"}}
    path.write_text(json.dumps(collection))
    return path


def ogr2ogr(destination: Path, source: Path, driver: str, *options: str) -> Path:
    subprocess.run(
        [OGR2OGR, "-f", driver, *options, str(destination), str(source)],
        check=True,
        capture_output=True,
    )
    return destination


def import_areas(*args: str) -> str:
    out = StringIO()
    call_command("import_areas", *map(str, args), stdout=out)
    return out.getvalue()


def metres_between(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """Haversine on a 6371 km sphere: plenty for a few metres."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6_371_000 * math.asin(math.sqrt(h))


@pytest.fixture
def three_wards(tmp_path) -> Path:
    """Three areas in WGS84 around Leigh, one of them a two-part MultiPolygon."""
    two_parts = {
        "type": "MultiPolygon",
        "coordinates": [square(-2.49, 53.50, 0.002), square(-2.48, 53.50, 0.002)],
    }
    return write_geojson(
        tmp_path / "wards.geojson",
        [
            feature(polygon(-2.52, 53.50), name="Leigh Central", code="W1"),
            feature(polygon(-2.51, 53.49), name="Leigh South", code="W2"),
            feature(two_parts, name="Leigh East", code="W3"),
        ],
    )


@pytest.fixture
def caister_bng(tmp_path) -> Path:
    """One 200 m square around the OS worked example, in British National Grid metres,
    with ONS-style field names."""
    return write_geojson(
        tmp_path / "caister_bng.geojson",
        [feature(polygon(CAISTER_E, CAISTER_N, 100), LSOA21CD="E01026600", LSOA21NM="Caister 001A")],
        srid=27700,
    )


def assert_lands_on_caister(area: Area) -> None:
    centre = area.geom.centroid
    assert area.geom.srid == 4326
    assert metres_between(centre.x, centre.y, CAISTER_LON, CAISTER_LAT) < TOLERANCE_M
    # And PostGIS's metric copy comes back to the grid coordinates written in the file.
    assert area.geom_bng.centroid.distance(Point(CAISTER_E, CAISTER_N, srid=27700)) < 0.01


def assert_nothing_imported() -> None:
    assert Area.objects.count() == 0
    assert BoundarySet.objects.count() == 0


# --- good files -------------------------------------------------------------------------------

def test_geojson_is_imported_with_polygons_promoted_to_multipolygons(three_wards):
    out = import_areas(three_wards, "--set", "Wards 2024")
    boundary_set = BoundarySet.objects.get()
    assert (boundary_set.name, boundary_set.slug, boundary_set.operational) == (
        "Wards 2024",
        "wards-2024",
        False,
    )
    areas = {area.code: area for area in Area.objects.all()}
    assert {code: area.name for code, area in areas.items()} == {
        "W1": "Leigh Central",
        "W2": "Leigh South",
        "W3": "Leigh East",
    }
    assert all(area.geom.geom_type == "MultiPolygon" for area in areas.values())
    assert [len(area.geom) for area in areas.values()] == [1, 1, 2]
    # GeoJSON is WGS84: stored as written.
    assert areas["W1"].geom.extent == pytest.approx((-2.524, 53.496, -2.516, 53.504))
    assert "3 areas created, 0 updated" in out
    assert "name field 'name', code field 'code'" in out


def test_reimporting_the_same_codes_updates_them_in_place(three_wards, tmp_path):
    import_areas(three_wards, "--set", "Wards 2024")
    ids = dict(Area.objects.values_list("code", "id"))
    renamed = write_geojson(
        tmp_path / "renamed.geojson",
        [
            feature(polygon(-2.52, 53.50, 0.005), name="Leigh Centre", code="W1"),
            feature(polygon(-2.51, 53.49), name="Leigh South", code="W2"),
            feature(polygon(-2.50, 53.51), name="Leigh North", code="W4"),
        ],
    )
    out = import_areas(renamed, "--set", "Wards 2024")
    assert "1 areas created, 2 updated" in out
    assert "1 areas already in the set are not in this file" in out
    assert BoundarySet.objects.count() == 1
    after = {area.code: area for area in Area.objects.all()}
    assert {code: after[code].id for code in ("W1", "W2", "W3")} == ids  # same rows
    assert after["W1"].name == "Leigh Centre"
    assert after["W1"].geom.extent == pytest.approx((-2.525, 53.495, -2.515, 53.505))
    assert after["W3"].name == "Leigh East"  # not in the file: left alone


def test_importing_twice_is_idempotent(three_wards):
    import_areas(three_wards, "--set", "Wards 2024")
    before = list(Area.objects.order_by("id").values_list("id", "code", "name"))
    import_areas(three_wards, "--set", "Wards 2024")
    assert list(Area.objects.order_by("id").values_list("id", "code", "name")) == before


def test_operational_set_decides_the_area_of_new_records(three_wards):
    import_areas(three_wards, "--set", "Patrol areas", "--operational")
    assert BoundarySet.objects.get().operational
    author = User.objects.create(username="someone")
    now = timezone.now()
    record = Observation.objects.create(
        id=uuid.uuid4(),
        author=author,
        organisation=Organisation.objects.create(name="Council", slug="council", kind="council"),
        form=FormDefinition.objects.create(record_type="observation", version=1, title="t"),
        created_at=now,
        updated_at=now,
        observed_at=now,
        location=Point(-2.51, 53.49, srid=4326),
        qualifier="nuisance",
        incident_type="noise",
    )
    record.refresh_from_db()
    assert record.area == Area.objects.get(code="W2")


def test_an_import_without_operational_never_demotes_a_set(three_wards):
    import_areas(three_wards, "--set", "Patrol areas", "--operational")
    import_areas(three_wards, "--set", "Patrol areas")
    assert BoundarySet.objects.get().operational


def test_set_defaults_to_the_layer_name(three_wards):
    import_areas(three_wards)
    assert BoundarySet.objects.get().name == "wards"


def test_geojson_in_british_national_grid_is_reprojected(caister_bng):
    out = import_areas(caister_bng, "--set", "LSOA 2021")
    area = Area.objects.get()
    assert (area.code, area.name) == ("E01026600", "Caister 001A")
    assert "British National Grid" in out
    assert_lands_on_caister(area)


def test_geopackage_in_british_national_grid(caister_bng, tmp_path):
    gpkg = ogr2ogr(tmp_path / "lsoa.gpkg", caister_bng, "GPKG", "-nln", "lsoa21")
    out = import_areas(gpkg)
    assert BoundarySet.objects.get().name == "lsoa21"
    assert "(GPKG," in out
    assert_lands_on_caister(Area.objects.get(code="E01026600"))


def test_shapefile_in_british_national_grid(caister_bng, tmp_path):
    shp = ogr2ogr(tmp_path / "lsoa.shp", caister_bng, "ESRI Shapefile")
    assert shp.with_suffix(".prj").exists()
    import_areas(shp, "--set", "LSOA 2021")
    area = Area.objects.get()
    assert (area.code, area.name) == ("E01026600", "Caister 001A")
    assert_lands_on_caister(area)


def test_zipped_shapefile(caister_bng, tmp_path):
    shp = ogr2ogr(tmp_path / "lsoa.shp", caister_bng, "ESRI Shapefile")
    archive = tmp_path / "lsoa.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for part in tmp_path.glob("lsoa.*"):
            if part != archive:
                zipped.write(part, part.name)
    import_areas(archive, "--set", "LSOA 2021")
    assert_lands_on_caister(Area.objects.get(code="E01026600"))
    assert shp.exists()


def test_fields_can_be_named(tmp_path):
    path = write_geojson(
        tmp_path / "beats.geojson",
        [feature(polygon(-2.52, 53.50), beat_label="Leigh 1", beat_ref=101)],
    )
    import_areas(path, "--set", "Beats", "--name-field", "beat_label", "--code-field", "beat_ref")
    area = Area.objects.get()
    assert (area.name, area.code) == ("Leigh 1", "101")


def test_a_layer_is_chosen_by_name(three_wards, caister_bng, tmp_path):
    gpkg = ogr2ogr(tmp_path / "two.gpkg", three_wards, "GPKG", "-nln", "wards")
    ogr2ogr(gpkg, caister_bng, "GPKG", "-update", "-nln", "lsoa")
    with pytest.raises(CommandError, match=r"several layers .*--layer"):
        import_areas(gpkg)
    assert_nothing_imported()
    import_areas(gpkg, "--layer", "wards")
    assert BoundarySet.objects.get().name == "wards"
    assert Area.objects.count() == 3


def test_invalid_outlines_are_repaired_only_when_asked(tmp_path):
    bowtie = {"type": "Polygon", "coordinates": [[[-2.52, 53.49], [-2.50, 53.51], [-2.50, 53.49],
                                                  [-2.52, 53.51], [-2.52, 53.49]]]}  # fmt: skip
    path = write_geojson(tmp_path / "bowtie.geojson", [feature(bowtie, name="Bow", code="B1")])
    with pytest.raises(CommandError, match="Self-intersection"):
        import_areas(path, "--set", "Bows")
    assert_nothing_imported()
    out = import_areas(path, "--set", "Bows", "--make-valid")
    assert "1 invalid outlines were repaired" in out
    area = Area.objects.get()
    assert area.geom.valid and area.geom.geom_type == "MultiPolygon"
    assert len(area.geom) == 2  # the two triangles of the bow tie


# --- bad files: a clear error, and nothing written ----------------------------------------------

def _good(code: str, x: float) -> dict:
    return feature(polygon(x, 53.50), name=f"Area {code}", code=code)


BAD_FILES = {
    "not a geo file": (
        "notes.txt",
        "Minutes of the partnership meeting, not a map.",
        "cannot be read as vector data",
    ),
    "not even GeoJSON": (
        "broken.geojson",
        '{"type": "FeatureCollection", "features": [',
        "cannot be read as vector data",
    ),
    "no features": ("empty.geojson", {"type": "FeatureCollection", "features": []}, "no features"),
    "points, not polygons": (
        "points.geojson",
        [feature({"type": "Point", "coordinates": [-2.52, 53.5]}, name="P", code="P1")],
        "holds Point geometries; areas must be Polygon or MultiPolygon",
    ),
    "no name field": (
        "nameless.geojson",
        [feature(polygon(-2.52, 53.5), colour="red", code="C1")],
        r"no name field found among \['colour', 'code'\]: name it with --name-field",
    ),
    "third feature has no geometry": (
        "third_null.geojson",
        [_good("A1", -2.52), _good("A2", -2.51), feature(None, name="Area A3", code="A3"),
         _good("A4", -2.49)],
        r"(?s)1 of 4 features cannot be imported.*feature 3 \(code A3\): no geometry",
    ),
    "third feature self-intersects": (
        "third_bowtie.geojson",
        [_good("A1", -2.52), _good("A2", -2.51),
         feature({"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]},
                 name="Area A3", code="A3"),
         _good("A4", -2.49)],
        r"feature 3 \(code A3\): invalid geometry \(Self-intersection",
    ),
    "third feature has no name": (
        "third_unnamed.geojson",
        [_good("A1", -2.52), _good("A2", -2.51), feature(polygon(-2.50, 53.5), name="", code="A3")],
        r"feature 3 \(code A3\): no name in field 'name'",
    ),
    "a code used twice": (
        "twice.geojson",
        [_good("A1", -2.52), _good("A2", -2.51), _good("A1", -2.50)],
        r"feature 3 \(code A1\): code already used by feature 1",
    ),
    "metres in a GeoJSON that declares no crs": (
        "bng_without_crs.geojson",
        [feature(polygon(366000, 399000, 500), name="Leigh", code="L1")],
        "not longitude/latitude after reprojection",
    ),
    "a name field that is not there": (
        "wards.geojson",
        [_good("A1", -2.52)],
        r"name field 'WD24NM' is not in the file",
    ),
}
EXTRA_ARGS = {"a name field that is not there": ["--name-field", "WD24NM"]}


@pytest.mark.parametrize("case", BAD_FILES)
def test_bad_files_are_refused_whole(case, tmp_path):
    filename, content, message = BAD_FILES[case]
    path = tmp_path / filename
    if isinstance(content, str):
        path.write_text(content)
    elif isinstance(content, dict):
        path.write_text(json.dumps(content))
    else:
        write_geojson(path, content)
    with pytest.raises(CommandError, match=message):
        import_areas(path, "--set", "Anything", *EXTRA_ARGS.get(case, []))
    assert_nothing_imported()


def test_a_broken_file_changes_nothing_already_imported(three_wards, tmp_path):
    import_areas(three_wards, "--set", "Wards 2024")
    before = list(Area.objects.order_by("id").values_list("id", "code", "name", "geom"))
    broken = write_geojson(
        tmp_path / "wards_v2.geojson",
        [
            feature(polygon(-2.60, 53.60), name="Renamed", code="W1"),
            feature(polygon(-2.51, 53.49), name="Leigh South", code="W2"),
            feature({"type": "LineString", "coordinates": [[-2.5, 53.5], [-2.4, 53.4]]},
                    name="A road", code="W9"),
        ],
    )
    with pytest.raises(CommandError, match="geometry is a LineString"):
        import_areas(broken, "--set", "Wards 2024")
    after = list(Area.objects.order_by("id").values_list("id", "code", "name", "geom"))
    assert after == before


def test_shapefile_without_prj_is_refused(caister_bng, tmp_path):
    shp = ogr2ogr(tmp_path / "lsoa.shp", caister_bng, "ESRI Shapefile")
    shp.with_suffix(".prj").unlink()
    with pytest.raises(CommandError, match=r"no spatial reference system \(a Shapefile needs its .prj"):
        import_areas(shp, "--set", "LSOA 2021")
    assert_nothing_imported()


def test_missing_file(tmp_path):
    with pytest.raises(CommandError, match="no such file"):
        import_areas(tmp_path / "nowhere.gpkg")


def test_several_candidate_name_fields_must_be_chosen(tmp_path):
    path = write_geojson(
        tmp_path / "lookup.geojson",
        [feature(polygon(-2.52, 53.5), LSOA21CD="E1", LSOA21NM="L", LAD21NM="Wigan")],
    )
    with pytest.raises(CommandError, match=r"several fields could be the name .*--name-field"):
        import_areas(path)
    import_areas(path, "--name-field", "lsoa21nm")  # case does not matter
    assert Area.objects.get().name == "L"
