"""Small tile archives written from scratch for the tests: MBTiles and PMTiles v3, with PNG
tiles drawn by Pillow (a solid colour a tile, so a browser test can check the pixels) and a
hand-encoded vector tile (one square in layer "water")."""
from __future__ import annotations

import gzip
import io
import json
import math
import sqlite3
from pathlib import Path

from PIL import Image

from warden_app.basemaps.archives import HEADER, zxy_to_tileid

# Leigh, where the tests' areas are.
LEIGH_BOUNDS = (-2.62, 53.48, -2.48, 53.53)
TILE_COLOUR = (200, 60, 40)


def lonlat_to_tile(lon: float, lat: float, z: int) -> tuple[int, int]:
    n = 1 << z
    x = int((lon + 180) / 360 * n)
    y = int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n)
    return min(max(x, 0), n - 1), min(max(y, 0), n - 1)


def tiles_covering(bounds, zooms) -> list[tuple[int, int, int]]:
    west, south, east, north = bounds
    out = []
    for z in zooms:
        x0, y0 = lonlat_to_tile(west, north, z)
        x1, y1 = lonlat_to_tile(east, south, z)
        out += [(z, x, y) for x in range(x0, x1 + 1) for y in range(y0, y1 + 1)]
    return out


def png_tile(colour=TILE_COLOUR) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (256, 256), colour).save(out, "PNG")
    return out.getvalue()


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _zigzag(n: int) -> int:
    return (n << 1) ^ (n >> 31)


def mvt_tile(layer: str = "water") -> bytes:
    """A vector tile whose layer holds one square polygon, encoded by hand (MVT 2.1)."""
    geometry = [9, _zigzag(512), _zigzag(512), 26, _zigzag(3072), _zigzag(0), _zigzag(0), _zigzag(3072),
                _zigzag(-3072), _zigzag(0), 15]
    feature = _varint(3 << 3) + _varint(3) + _field(4, b"".join(_varint(v) for v in geometry))
    version, extent = _varint(15 << 3) + _varint(2), _varint(5 << 3) + _varint(4096)
    body = version + _field(1, layer.encode()) + _field(2, feature) + extent
    return _field(3, body)


def write_mbtiles(path: Path, tiles: dict[tuple[int, int, int], bytes], *, fmt: str = "png",
                  bounds=LEIGH_BOUNDS, extra_metadata: dict | None = None) -> Path:
    """tiles keyed by XYZ (z, x, y); written with TMS rows as the spec says."""
    path.unlink(missing_ok=True)
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE metadata (name text, value text)")
    db.execute("CREATE TABLE tiles (zoom_level integer, tile_column integer, tile_row integer, tile_data blob)")
    zooms = [z for z, _, _ in tiles] or [0]
    meta = {"name": "Test map", "format": fmt, "minzoom": str(min(zooms)), "maxzoom": str(max(zooms)),
            "bounds": ",".join(str(v) for v in bounds), "attribution": "Test tiles"}
    if fmt == "pbf":
        meta["json"] = json.dumps({"vector_layers": [{"id": "water", "fields": {}}]})
    meta.update(extra_metadata or {})
    db.executemany("INSERT INTO metadata VALUES (?, ?)", meta.items())
    db.executemany("INSERT INTO tiles VALUES (?, ?, ?, ?)",
                   [(z, x, (1 << z) - 1 - y, data) for (z, x, y), data in tiles.items()])
    db.commit()
    db.close()
    return path


def _directory(entries) -> bytes:
    """entries: [(tile_id, offset, length, run_length)], sorted."""
    out = [_varint(len(entries))]
    last = 0
    for tile_id, *_ in entries:
        out.append(_varint(tile_id - last))
        last = tile_id
    out += [_varint(run) for *_, run in entries]
    out += [_varint(length) for _, _, length, _ in entries]
    previous_end = None
    for _, offset, length, _ in entries:
        out.append(_varint(0 if offset == previous_end else offset + 1))
        previous_end = offset + length
    return b"".join(out)


def write_pmtiles(path: Path, tiles: dict[tuple[int, int, int], bytes], *, tile_type: int = 2,
                  tile_compression: int = 1, bounds=LEIGH_BOUNDS, leaf_size: int = 0,
                  metadata: dict | None = None, header_overrides: dict | None = None, runs: bool = False) -> Path:
    """A PMTiles v3 file, directories gzip'd; leaf_size > 0 puts entries in leaf directories
    of that many entries each (so the reader's leaf path is exercised); runs stores
    consecutive identical tiles once, as one entry with a run length."""
    data = b""
    entries = []
    previous = None
    for (z, x, y), tile in sorted(tiles.items(), key=lambda item: zxy_to_tileid(*item[0])):
        tile_id = zxy_to_tileid(z, x, y)
        if runs and entries and tile == previous and entries[-1][0] + entries[-1][3] == tile_id:
            entries[-1] = (*entries[-1][:3], entries[-1][3] + 1)  # the same bytes again: a longer run
            continue
        previous = tile
        if tile_compression == 2:
            tile = gzip.compress(tile)
        entries.append((tile_id, len(data), len(tile), 1))
        data += tile
    leaves = b""
    if leaf_size:
        root_entries = []
        for start in range(0, len(entries), leaf_size):
            chunk = gzip.compress(_directory(entries[start:start + leaf_size]))
            root_entries.append((entries[start][0], len(leaves), len(chunk), 0))
            leaves += chunk
        root = gzip.compress(_directory(root_entries))
    else:
        root = gzip.compress(_directory(entries))
    meta = gzip.compress(json.dumps(metadata if metadata is not None else {
        "name": "Test PMTiles", "attribution": "Test tiles",
        "vector_layers": [{"id": "water"}] if tile_type == 1 else []}).encode())
    zooms = [z for z, _, _ in tiles] or [0]
    root_off = HEADER.size
    meta_off = root_off + len(root)
    leaf_off = meta_off + len(meta)
    data_off = leaf_off + len(leaves)
    west, south, east, north = bounds
    fields = dict(
        magic=b"PMTiles", version=3, root_off=root_off, root_len=len(root), meta_off=meta_off,
        meta_len=len(meta), leaf_off=leaf_off, leaf_len=len(leaves), data_off=data_off, data_len=len(data),
        addressed=len(entries), entries=len(entries), contents=len(entries), clustered=1, internal=2,
        tile_compression=tile_compression, tile_type=tile_type, min_zoom=min(zooms), max_zoom=max(zooms),
        min_lon=round(west * 1e7), min_lat=round(south * 1e7), max_lon=round(east * 1e7),
        max_lat=round(north * 1e7), center_zoom=min(zooms), center_lon=round((west + east) / 2 * 1e7),
        center_lat=round((south + north) / 2 * 1e7))
    fields.update(header_overrides or {})
    header = HEADER.pack(*fields.values())
    path.write_bytes(header + root + meta + leaves + data)
    return path


def leigh_png_tiles(zooms=range(12, 15)) -> dict[tuple[int, int, int], bytes]:
    tile = png_tile()
    return {coords: tile for coords in tiles_covering(LEIGH_BOUNDS, zooms)}
