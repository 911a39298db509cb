"""Base maps: `import_basemap` checks MBTiles and PMTiles files (and refuses hostile ones with a
sentence), fieldsync serves their tiles with immutable caching, strict coordinates, and the
map config and page policy follow the base map in use (docs/maps.md)."""
from __future__ import annotations

import gzip
import sqlite3

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from tests.basemap_files import (
    LEIGH_BOUNDS,
    leigh_png_tiles,
    lonlat_to_tile,
    mvt_tile,
    png_tile,
    write_mbtiles,
    write_pmtiles,
)
from warden_app.basemaps import store
from warden_app.basemaps.archives import ArchiveError, zxy_to_tileid
from warden_app.basemaps.config import map_config
from warden_app.models import Basemap

pytestmark = pytest.mark.django_db

# Leigh at zoom 14: one tile painted in another colour, to prove XYZ rows are not flipped.
Z, X, Y = 14, *lonlat_to_tile(-2.52, 53.50, 14)
BLUE = png_tile((20, 40, 220))


@pytest.fixture(autouse=True)
def basemap_dir(settings, tmp_path):
    settings.BASEMAP_DIR = tmp_path / "basemaps"
    settings.TILE_URL = ""
    store.forget_cached()
    yield settings.BASEMAP_DIR
    store.forget_cached()


def mbtiles(tmp_path, name="leigh.mbtiles", **kwargs):
    tiles = leigh_png_tiles()
    tiles[(Z, X, Y)] = BLUE
    return write_mbtiles(tmp_path / name, tiles, **kwargs)


def imported(path, **options) -> Basemap:
    call_command("import_basemap", str(path), **options)
    return Basemap.objects.get(active=True)


def refused(path) -> str:
    with pytest.raises(CommandError) as caught:
        call_command("import_basemap", str(path))
    return str(caught.value)


def test_pmtiles_tile_ids_follow_the_spec():
    """Values from the PMTiles v3 spec's reference tests (Hilbert order within each zoom)."""
    assert [zxy_to_tileid(0, 0, 0), zxy_to_tileid(1, 0, 0), zxy_to_tileid(1, 0, 1), zxy_to_tileid(1, 1, 1),
            zxy_to_tileid(1, 1, 0), zxy_to_tileid(2, 0, 0)] == [0, 1, 2, 3, 4, 5]
    assert zxy_to_tileid(12, 3423, 1763) == 19078479


def test_an_mbtiles_file_is_imported_checked_and_kept_under_its_hash(tmp_path, basemap_dir):
    basemap = imported(mbtiles(tmp_path), name="Leigh test", attribution="© Test")
    assert (basemap.format, basemap.tile_type, basemap.kind) == ("mbtiles", "png", "raster")
    assert (basemap.min_zoom, basemap.max_zoom) == (12, 14)
    assert basemap.bounds == pytest.approx(list(LEIGH_BOUNDS))
    assert (basemap.name, basemap.attribution) == ("Leigh test", "© Test")
    assert sorted(p.name for p in basemap_dir.iterdir()) == [f"{basemap.sha256}.mbtiles"]
    tiles = map_config()["tiles"]
    assert tiles["url"] == f"/tiles/{basemap.version}/{{z}}/{{x}}/{{y}}.png"
    assert (tiles["kind"], tiles["local"], tiles["min_zoom"], tiles["max_zoom"]) == ("raster", True, 12, 14)


def test_tiles_are_served_in_xyz_order_with_immutable_caching(tmp_path):
    basemap = imported(mbtiles(tmp_path))
    client = Client()
    url = f"/tiles/{basemap.version}/{Z}/{X}/{Y}.png"
    response = client.get(url)
    assert response.status_code == 200 and response.content == BLUE
    assert response["Content-Type"] == "image/png"
    assert "immutable" in response["Cache-Control"] and "max-age=31536000" in response["Cache-Control"]
    assert "Content-Encoding" not in response and response["X-Content-Type-Options"] == "nosniff"
    # The neighbour below is a plain red tile: the row was not read upside down.
    assert client.get(f"/tiles/{basemap.version}/{Z}/{X}/{Y + 1}.png").content == png_tile()
    again = client.get(url, HTTP_IF_NONE_MATCH=response["ETag"])
    assert again.status_code == 304 and again["ETag"] == response["ETag"]
    assert client.head(url).status_code == 200
    assert client.post(url).status_code == 405


def test_tiles_outside_the_set_are_empty_and_bad_coordinates_are_400(tmp_path):
    basemap = imported(mbtiles(tmp_path))
    client = Client()
    v = basemap.version
    # Inside the grid but not in the archive (elsewhere, or past its zooms): 204, cacheable.
    for path in (f"{Z}/0/0.png", f"18/{X * 16}/{Y * 16}.png", "3/1/1.png"):
        response = client.get(f"/tiles/{v}/{path}")
        assert response.status_code == 204 and response.content == b"", path
    for path in (f"{Z}/-1/{Y}.png", f"{Z}/0{X}/{Y}.png", f"{Z}/{X}/{Y}.5.png", f"{Z}/{X}/{Y}", f"{Z}/{X}/+{Y}.png",
                 f"{Z}/{X}/\u0663.png", f"{Z}/{1 << Z}/{Y}.png", f"99999999999/{X}/{Y}.png", "31/0/0.png",
                 f"{Z}/{X}/{Y}.png%00", f"{Z}/x/{Y}.png"):
        response = client.get(f"/tiles/{v}/{path}")
        assert response.status_code == 400, path
        assert response["Content-Type"].startswith("text/plain")
    assert client.get(f"/tiles/{v}/{Z}/{X}/{Y}.pbf").status_code == 404  # not this map's type
    assert client.get(f"/tiles/{'0' * 16}/{Z}/{X}/{Y}.png").status_code == 404  # no such base map
    assert client.get(f"/tiles/../../etc/{Z}/{X}/{Y}.png").status_code == 404
    assert client.get(f"/tiles/{v[:8]}/{Z}/{X}/{Y}.png").status_code == 404


def test_pmtiles_raster_with_leaf_directories(tmp_path):
    tiles = leigh_png_tiles()
    tiles[(Z, X, Y)] = BLUE
    path = write_pmtiles(tmp_path / "leigh.pmtiles", tiles, leaf_size=3)
    basemap = imported(path)
    assert (basemap.format, basemap.tile_type, basemap.min_zoom, basemap.max_zoom) == ("pmtiles", "png", 12, 14)
    client = Client()
    assert client.get(f"/tiles/{basemap.version}/{Z}/{X}/{Y}.png").content == BLUE
    for z, x, y in list(tiles)[::7]:
        response = client.get(f"/tiles/{basemap.version}/{z}/{x}/{y}.png")
        assert response.status_code == 200 and response.content == tiles[(z, x, y)], (z, x, y)
    assert client.get(f"/tiles/{basemap.version}/{Z}/0/0.png").status_code == 204


def test_pmtiles_run_lengths_serve_one_tile_for_many(tmp_path):
    from warden_app.basemaps.archives import PMTiles

    tiles = leigh_png_tiles()
    tiles[(Z, X, Y)] = BLUE
    path = write_pmtiles(tmp_path / "runs.pmtiles", tiles, runs=True, leaf_size=2)
    archive = PMTiles(path)
    assert any(run > 1 for _, _, _, run in
               (e for entry in archive._root for e in archive._leaf(entry[1], entry[2])))
    for coords, data in tiles.items():
        assert archive.tile(*coords) == data, coords
    assert archive.tile(Z, 0, 0) is None


def test_gzipped_vector_tiles_keep_their_encoding(tmp_path):
    tiles = {(z, x, y): mvt_tile() for z, x, y in leigh_png_tiles(range(12, 14))}
    basemap = imported(write_pmtiles(tmp_path / "vector.pmtiles", tiles, tile_type=1, tile_compression=2))
    assert (basemap.tile_type, basemap.kind, basemap.vector_layers) == ("pbf", "vector", ["water"])
    z, x, y = next(iter(tiles))
    response = Client().get(f"/tiles/{basemap.version}/{z}/{x}/{y}.pbf")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/x-protobuf" and response["Content-Encoding"] == "gzip"
    assert gzip.decompress(response.content) == mvt_tile()
    config = map_config()["tiles"]
    assert config["kind"] == "vector" and config["layers"] == ["water"]
    assert config["renderer"].endswith("Leaflet.VectorGrid.bundled.min.js")
    # The same from MBTiles, where each gzip'd tile says so itself.
    mb = imported(write_mbtiles(tmp_path / "vector.mbtiles", {k: gzip.compress(v) for k, v in tiles.items()},
                                fmt="pbf"))
    response = Client().get(f"/tiles/{mb.version}/{z}/{x}/{y}.pbf")
    assert response["Content-Encoding"] == "gzip" and gzip.decompress(response.content) == mvt_tile()


def test_the_imported_map_wins_over_tile_url_until_none_is_chosen(tmp_path, settings):
    settings.TILE_URL = "https://{s}.tiles.example.org/{z}/{x}/{y}.png"
    assert map_config()["tiles"]["url"] == settings.TILE_URL
    basemap = imported(mbtiles(tmp_path))
    assert map_config()["tiles"]["url"].startswith(f"/tiles/{basemap.version}/")
    call_command("import_basemap", use="none")
    store.forget_cached()
    assert map_config()["tiles"]["url"] == settings.TILE_URL
    call_command("import_basemap", use=basemap.version)
    assert Basemap.objects.get(active=True) == basemap
    # Importing the same file again keeps one row and one file.
    assert imported(mbtiles(tmp_path)).pk == basemap.pk and Basemap.objects.count() == 1


def test_page_policy_allows_the_tile_server_only_while_it_is_used(tmp_path, settings):
    from fieldsync.security_headers import page_policy

    settings.TILE_URL = "https://{s}.tiles.example.org/{z}/{x}/{y}.png"
    assert "https://*.tiles.example.org" in page_policy()
    imported(mbtiles(tmp_path))
    assert "tiles.example.org" not in page_policy()
    assert "tiles.example.org" in page_policy(nonce="n")  # the admin's widget still draws TILE_URL
    from warden_app.handheld.views import content_security_policy

    assert "tiles.example.org" not in content_security_policy()
    call_command("import_basemap", use="none")
    assert "https://*.tiles.example.org" in content_security_policy()


# --- files that are not base maps -------------------------------------------------------------


def assert_nothing_kept(basemap_dir):
    assert not Basemap.objects.exists()
    assert not basemap_dir.exists() or list(basemap_dir.iterdir()) == []


def test_files_that_are_not_archives_are_refused_with_a_reason(tmp_path, basemap_dir):
    text = tmp_path / "notes.mbtiles"
    text.write_text("hello")
    assert "neither MBTiles" in refused(text)
    empty = tmp_path / "empty.pmtiles"
    empty.write_bytes(b"")
    assert "empty" in refused(empty)
    assert "not a regular file" in refused(tmp_path)
    assert "not a regular file" in refused("/dev/zero")
    assert "No such file" in refused(tmp_path / "missing.mbtiles") or "not a regular" in refused(
        tmp_path / "missing.mbtiles")
    assert_nothing_kept(basemap_dir)


def test_odd_sqlite_files_are_refused(tmp_path, basemap_dir):
    other = tmp_path / "other.mbtiles"
    db = sqlite3.connect(other)
    db.execute("CREATE TABLE things (a)")
    db.commit()
    db.close()
    assert "without a `tiles` table" in refused(other)

    no_meta = tmp_path / "nometa.mbtiles"
    db = sqlite3.connect(no_meta)
    db.execute("CREATE TABLE tiles (zoom_level, tile_column, tile_row, tile_data)")
    db.commit()
    db.close()
    assert "metadata" in refused(no_meta)

    # `tiles` as a view that never ends (a recursive CTE): stopped by the step budget.
    spin = tmp_path / "spin.mbtiles"
    db = sqlite3.connect(spin)
    db.execute("CREATE TABLE metadata (name, value)")
    db.execute("CREATE VIEW tiles AS WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) "
               "SELECT 0 AS zoom_level, 0 AS tile_column, 0 AS tile_row, x'00' AS tile_data FROM n "
               "WHERE i < 0 LIMIT 1")
    db.commit()
    db.close()
    assert "took too long" in refused(spin)

    liar = mbtiles(tmp_path, "liar.mbtiles", extra_metadata={"format": "jpg"})
    assert "says jpg but the tiles are png" in refused(liar)
    bad_zoom = mbtiles(tmp_path, "zoom.mbtiles", extra_metadata={"maxzoom": "99"})
    assert "zoom range" in refused(bad_zoom)
    bad_bounds = mbtiles(tmp_path, "bounds.mbtiles", extra_metadata={"bounds": "1,2,3"})
    assert "not 4 numbers" in refused(bad_bounds)
    truncated = tmp_path / "cut.mbtiles"
    truncated.write_bytes(mbtiles(tmp_path, "whole.mbtiles").read_bytes()[:2000])
    assert "Not imported" in refused(truncated)
    assert_nothing_kept(basemap_dir)


def test_huge_tiles_in_an_mbtiles_are_never_loaded(tmp_path):
    tiles = {(Z, X, Y): png_tile(), (Z, X + 1, Y): png_tile() + b"\0" * (5 * 1024 * 1024)}
    basemap = imported(write_mbtiles(tmp_path / "big.mbtiles", tiles))
    response = Client().get(f"/tiles/{basemap.version}/{Z}/{X + 1}/{Y}.png")
    assert response.status_code == 404 and b"cannot be read" in response.content


def test_truncated_and_lying_pmtiles_are_refused(tmp_path, basemap_dir):
    good = write_pmtiles(tmp_path / "good.pmtiles", leigh_png_tiles())
    whole = good.read_bytes()
    cut = tmp_path / "cut.pmtiles"
    cut.write_bytes(whole[:100])
    assert "truncated" in refused(cut)
    cut.write_bytes(whole[:-10])
    assert "truncated" in refused(cut)
    huge = write_pmtiles(tmp_path / "huge.pmtiles", leigh_png_tiles(), header_overrides={"root_len": 1 << 40})
    assert "past the end of the file" in refused(huge)
    v2 = write_pmtiles(tmp_path / "v2.pmtiles", leigh_png_tiles(), header_overrides={"version": 2})
    assert "only version 3" in refused(v2)
    brotli = write_pmtiles(tmp_path / "br.pmtiles", leigh_png_tiles(), header_overrides={"internal": 3})
    assert "convert" in refused(brotli)
    avif = write_pmtiles(tmp_path / "avif.pmtiles", leigh_png_tiles(), header_overrides={"tile_type": 5})
    assert "tile type 5" in refused(avif)
    assert_nothing_kept(basemap_dir)


def test_a_directory_that_inflates_without_end_is_refused(tmp_path):
    """A gzip bomb as the root directory: inflation stops at the bound."""
    from warden_app.basemaps.archives import HEADER, MAX_DIRECTORY_BYTES, PMTiles

    path = write_pmtiles(tmp_path / "bomb.pmtiles", leigh_png_tiles(range(12, 13)))
    data = bytearray(path.read_bytes())
    bomb = gzip.compress(b"\x80" * (MAX_DIRECTORY_BYTES + 1024), compresslevel=9)
    header = HEADER
    fields = list(header.unpack(bytes(data[:header.size])))
    old_root_len = fields[3]
    rest = bytes(data[header.size + old_root_len:])
    shift = len(bomb) - old_root_len
    fields[3] = len(bomb)
    for i in (4, 6, 8):  # metadata, leaves and data move along with it
        fields[i] += shift
    path.write_bytes(header.pack(*fields) + bomb + rest)
    with pytest.raises(ArchiveError, match="inflates past"):
        PMTiles(path)


def test_an_entry_pointing_outside_the_data_is_not_followed(tmp_path):
    """A directory entry whose tile lies past the data section: refused at serving time."""
    from tests.basemap_files import _directory
    from warden_app.basemaps.archives import PMTiles

    path = write_pmtiles(tmp_path / "ok.pmtiles", {(Z, X, Y): BLUE})
    archive = PMTiles(path)
    archive._root = [(zxy_to_tileid(Z, X, Y), 10_000_000, 100, 1)]
    with pytest.raises(ArchiveError, match="outside"):
        archive.tile(Z, X, Y)
    assert _directory  # the writer's encoder is what wrote the file above
