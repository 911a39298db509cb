"""Reading tile archives: MBTiles (SQLite) and PMTiles v3, raster or vector, never trusting them.

A base map file comes from outside (a partner, a download), so everything it declares is
checked before it is believed: sizes and offsets must lie inside the file, compressed
directories and metadata may not inflate past a bound, SQLite runs read-only with the file
declared immutable (no journal or WAL sibling is ever opened), untrusted schema off, and every
statement under a step budget, so a hostile view cannot spin. Anything wrong is an
`ArchiveError` with a sentence for the operator, never a traceback.
"""
from __future__ import annotations

import json
import sqlite3
import struct
import zlib
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from threading import Lock
from urllib.parse import quote

MAX_ZOOM = 24
# A single tile larger than this is not a map tile but an attack on the server's memory.
MAX_TILE_BYTES = 4 * 1024 * 1024
# Metadata and PMTiles directories are small; bounded so a gzip bomb cannot inflate.
MAX_METADATA_BYTES = 1024 * 1024
MAX_DIRECTORY_BYTES = 16 * 1024 * 1024
MAX_DIRECTORY_ENTRIES = 2_000_000
# The spec allows a root and at most two levels of leaves; one more and it is a loop.
MAX_DIRECTORY_DEPTH = 4
# SQLite virtual-machine steps a statement may take (progress handler every 1000 steps).
SQLITE_STEP_BUDGET = 2_000
SQLITE_MAGIC = b"SQLite format 3\x00"
PMTILES_MAGIC = b"PMTiles"

TILE_TYPES = {"png": "image/png", "jpg": "image/jpeg", "webp": "image/webp", "pbf": "application/x-protobuf"}
RASTER = {"png", "jpg", "webp"}


class ArchiveError(ValueError):
    """The file is not a tile archive fieldsync can serve; the message says why."""


@dataclass
class ArchiveInfo:
    """What an archive says about itself, checked."""

    format: str  # "mbtiles" | "pmtiles"
    tile_type: str  # one of TILE_TYPES
    min_zoom: int
    max_zoom: int
    bounds: tuple[float, float, float, float]  # west, south, east, north (degrees)
    center: tuple[float, float, int]  # lon, lat, zoom
    name: str = ""
    attribution: str = ""
    vector_layers: list[str] = field(default_factory=list)

    @property
    def kind(self) -> str:
        return "raster" if self.tile_type in RASTER else "vector"


def sniff_tile_type(data: bytes) -> str | None:
    """The tile format from its first bytes: images by magic number, MVT gzip'd or raw."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data.startswith(b"\x1f\x8b"):
        return "pbf"
    # An uncompressed MVT starts with field 3 (layers), wire type 2: byte 0x1a.
    if data[:1] == b"\x1a":
        return "pbf"
    return None


def _bounded_gunzip(data: bytes, limit: int) -> bytes:
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(data, limit)
    except zlib.error as exc:
        raise ArchiveError(f"a compressed section is corrupt ({exc})") from None
    if inflater.unconsumed_tail:
        raise ArchiveError(f"a compressed section inflates past {limit} bytes")
    return out


def _check_bounds(west, south, east, north) -> tuple[float, float, float, float]:
    values = (west, south, east, north)
    if not all(isinstance(v, (int, float)) and v == v for v in values):
        raise ArchiveError("the bounds are not numbers")
    if not (-180 <= west < east <= 180 and -85.06 <= south < north <= 85.06):
        raise ArchiveError(f"the bounds {values} are not a box in degrees (west < east, south < north)")
    return (float(west), float(south), float(east), float(north))


def _check_zooms(min_zoom, max_zoom) -> tuple[int, int]:
    if not (isinstance(min_zoom, int) and isinstance(max_zoom, int) and 0 <= min_zoom <= max_zoom <= MAX_ZOOM):
        raise ArchiveError(f"the zoom range {min_zoom!r}-{max_zoom!r} is not within 0-{MAX_ZOOM}")
    return min_zoom, max_zoom


def _center(center, bounds, min_zoom, max_zoom) -> tuple[float, float, int]:
    west, south, east, north = bounds
    lon, lat, zoom = (west + east) / 2, (south + north) / 2, min(max(min_zoom, 12), max_zoom)
    if center:
        c_lon, c_lat, c_zoom = center
        if west <= c_lon <= east and south <= c_lat <= north:
            lon, lat = c_lon, c_lat
        if min_zoom <= c_zoom <= max_zoom:
            zoom = c_zoom
    return (lon, lat, int(zoom))


def _layer_ids(metadata_json) -> list[str]:
    if not isinstance(metadata_json, dict) or not isinstance(metadata_json.get("vector_layers"), list):
        return []
    return [str(layer["id"])[:100] for layer in metadata_json["vector_layers"][:200]
            if isinstance(layer, dict) and isinstance(layer.get("id"), (str, int))]


class Archive:
    """An open archive: `info` (checked at open) and `tile(z, x, y)` in XYZ (slippy) order."""

    info: ArchiveInfo

    def tile(self, z: int, x: int, y: int) -> bytes | None:
        raise NotImplementedError

    def close(self) -> None:
        """Nothing by default."""


def in_range(z: int, x: int, y: int) -> bool:
    return 0 <= z <= MAX_ZOOM and 0 <= x < (1 << z) and 0 <= y < (1 << z)


# --- MBTiles ------------------------------------------------------------------------------------


class MBTiles(Archive):
    """MBTiles 1.3: `tiles(zoom_level, tile_column, tile_row, tile_data)` with TMS rows (0 at the
    south), `metadata(name, value)`. Tables or views, as the spec allows, but every statement
    has a step budget so an expensive view is refused, not served."""

    def __init__(self, path: Path):
        with open(path, "rb") as handle:
            if handle.read(16) != SQLITE_MAGIC:
                raise ArchiveError("not an SQLite file, so not MBTiles")
        self._lock = Lock()
        uri = f"file:{quote(str(Path(path).resolve()))}?mode=ro&immutable=1"
        try:
            self._db = sqlite3.connect(uri, uri=True, check_same_thread=False)
        except sqlite3.Error as exc:
            raise ArchiveError(f"SQLite cannot open it ({exc})") from None
        try:
            self._db.execute("PRAGMA trusted_schema = OFF")
            self._db.execute("PRAGMA query_only = ON")
            self._steps = 0
            self._db.set_progress_handler(self._tick, 1000)
            self.info = self._read_info()
        except sqlite3.Error as exc:
            self._db.close()
            raise ArchiveError(f"not a readable MBTiles file ({exc})") from None
        except ArchiveError:
            self._db.close()
            raise

    def _tick(self) -> int:
        self._steps += 1
        return 1 if self._steps > SQLITE_STEP_BUDGET else 0  # non-zero aborts the statement

    def _query(self, sql: str, params=()):
        with self._lock:
            self._steps = 0
            try:
                return self._db.execute(sql, params).fetchall()
            except sqlite3.OperationalError as exc:
                if "interrupt" in str(exc):
                    raise ArchiveError("a query on the file took too long (is `tiles` an expensive view?)") from None
                raise

    def _read_info(self) -> ArchiveInfo:
        kinds = dict(self._query(
            "SELECT name, type FROM sqlite_master WHERE name IN ('tiles', 'metadata') AND type IN ('table', 'view')"))
        if "tiles" not in kinds:
            raise ArchiveError("an SQLite file without a `tiles` table is not MBTiles")
        if "metadata" not in kinds:
            raise ArchiveError("an MBTiles file needs its `metadata` table")
        meta: dict[str, str] = {}
        for name, value in self._query(
                "SELECT CAST(name AS TEXT), CAST(substr(value, 1, ?) AS TEXT) FROM metadata LIMIT 1000",
                (MAX_METADATA_BYTES,)):
            if isinstance(name, str) and isinstance(value, str):
                meta[name] = value
        sample = self._query(
            "SELECT zoom_level, tile_column, tile_row, length(tile_data) FROM tiles LIMIT 1")
        if not sample:
            raise ArchiveError("the MBTiles file has no tiles")
        declared = meta.get("format", "").lower().strip()
        declared = {"jpeg": "jpg", "mvt": "pbf"}.get(declared, declared)
        z, x, y, _ = sample[0]
        if not all(isinstance(v, int) for v in (z, x, y)):
            raise ArchiveError("tile coordinates in `tiles` are not integers")
        first = self._raw(z, x, y)
        sniffed = sniff_tile_type(first or b"")
        if declared and declared not in TILE_TYPES:
            raise ArchiveError(f"tile format {declared!r} is not one of {', '.join(TILE_TYPES)}")
        tile_type = declared or sniffed
        if not tile_type:
            raise ArchiveError("the tiles are neither PNG, JPEG, WebP nor vector tiles")
        if sniffed != tile_type:
            raise ArchiveError(f"the metadata says {tile_type} but the tiles are {sniffed or 'something else'}")
        try:
            min_zoom = int(meta["minzoom"]) if "minzoom" in meta else None
            max_zoom = int(meta["maxzoom"]) if "maxzoom" in meta else None
        except ValueError:
            raise ArchiveError("minzoom/maxzoom in the metadata are not whole numbers") from None
        if min_zoom is None or max_zoom is None:
            row = self._query("SELECT min(zoom_level), max(zoom_level) FROM tiles")[0]
            min_zoom = row[0] if min_zoom is None else min_zoom
            max_zoom = row[1] if max_zoom is None else max_zoom
        min_zoom, max_zoom = _check_zooms(min_zoom, max_zoom)
        bounds = self._numbers(meta.get("bounds"), 4) or [-180.0, -85.05112878, 180.0, 85.05112878]
        bounds = _check_bounds(*bounds)
        center = self._numbers(meta.get("center"), 3)
        try:
            meta_json = json.loads(meta["json"]) if "json" in meta else None
        except ValueError:
            raise ArchiveError("the metadata's `json` entry is not JSON") from None
        return ArchiveInfo(
            format="mbtiles", tile_type=tile_type, min_zoom=min_zoom, max_zoom=max_zoom, bounds=bounds,
            center=_center(center, bounds, min_zoom, max_zoom), name=meta.get("name", "")[:200],
            attribution=meta.get("attribution", "")[:500], vector_layers=_layer_ids(meta_json))

    @staticmethod
    def _numbers(text: str | None, count: int) -> list[float] | None:
        if not text:
            return None
        try:
            values = [float(part) for part in text.split(",")]
        except ValueError:
            raise ArchiveError(f"{text[:60]!r} in the metadata is not {count} numbers") from None
        if len(values) != count:
            raise ArchiveError(f"{text[:60]!r} in the metadata is not {count} numbers")
        return values

    def _raw(self, z: int, x: int, tms_y: int) -> bytes | None:
        rows = self._query(
            "SELECT length(tile_data), CASE WHEN length(tile_data) <= ? THEN tile_data END FROM tiles "
            "WHERE zoom_level = ? AND tile_column = ? AND tile_row = ? LIMIT 1",
            (MAX_TILE_BYTES, z, x, tms_y))
        if not rows or rows[0][0] is None:
            return None
        if rows[0][1] is None:
            raise ArchiveError(f"tile {z}/{x}/{tms_y} is larger than {MAX_TILE_BYTES} bytes")
        data = rows[0][1]
        return bytes(data) if isinstance(data, (bytes, memoryview)) else None

    def tile(self, z: int, x: int, y: int) -> bytes | None:
        if not in_range(z, x, y):
            return None
        return self._raw(z, x, (1 << z) - 1 - y)  # XYZ row to TMS row

    def close(self) -> None:
        self._db.close()


# --- PMTiles v3 ---------------------------------------------------------------------------------

HEADER = struct.Struct("<7sB QQ QQ QQ QQ QQQ BBBB BB iiii B ii")
COMPRESSION = {0: "unknown", 1: "none", 2: "gzip", 3: "brotli", 4: "zstd"}
PM_TILE_TYPES = {1: "pbf", 2: "png", 3: "jpg", 4: "webp"}


def zxy_to_tileid(z: int, x: int, y: int) -> int:
    """PMTiles tile id: the tiles of lower zooms first, then the Hilbert index within zoom z."""
    tile_id = ((1 << (2 * z)) - 1) // 3
    n = 1 << z
    s = n >> 1
    while s > 0:
        rx = 1 if x & s else 0
        ry = 1 if y & s else 0
        tile_id += s * s * ((3 * rx) ^ ry)
        if ry == 0:  # rotate the quadrant so the curve stays continuous
            if rx == 1:
                x, y = n - 1 - x, n - 1 - y
            x, y = y, x
        s >>= 1
    return tile_id


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise ArchiveError("a directory ends in the middle of a number")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ArchiveError("a directory holds a number longer than 64 bits")


def parse_directory(data: bytes) -> list[tuple[int, int, int, int]]:
    """[(tile_id, offset, length, run_length)] from a decompressed directory."""
    count, pos = _varint(data, 0)
    if count > MAX_DIRECTORY_ENTRIES or count > len(data):
        raise ArchiveError(f"a directory declares {count} entries")
    ids, runs, lengths, offsets = [], [], [], []
    last = 0
    for _ in range(count):
        delta, pos = _varint(data, pos)
        last += delta
        ids.append(last)
    for column in (runs, lengths):
        for _ in range(count):
            value, pos = _varint(data, pos)
            column.append(value)
    for i in range(count):
        value, pos = _varint(data, pos)
        if value == 0 and i > 0:
            offsets.append(offsets[i - 1] + lengths[i - 1])  # contiguous with the previous entry
        elif value == 0:
            raise ArchiveError("the first directory entry has no offset")
        else:
            offsets.append(value - 1)
    return list(zip(ids, offsets, lengths, runs, strict=True))


def _find(entries, tile_id):
    """The entry covering tile_id (binary search on the sorted ids), or None."""
    lo, hi = 0, len(entries) - 1
    while lo <= hi:
        mid = (lo + hi) // 2
        if entries[mid][0] < tile_id:
            lo = mid + 1
        elif entries[mid][0] > tile_id:
            hi = mid - 1
        else:
            return entries[mid]
    if hi >= 0:
        entry = entries[hi]
        if entry[3] == 0:  # a leaf directory covers everything from its first id
            return entry
        if tile_id < entry[0] + entry[3]:
            return entry
    return None


class PMTiles(Archive):
    """PMTiles v3 (https://github.com/protomaps/PMTiles/blob/main/spec/v3/spec.md), read with
    plain file seeks; directories gzip'd or not, leaf directories cached (a few per process)."""

    LEAF_CACHE = 64

    def __init__(self, path: Path):
        self._path = Path(path)
        self._size = self._path.stat().st_size
        self._leaves: OrderedDict[tuple[int, int], list] = OrderedDict()
        self._lock = Lock()
        with open(self._path, "rb") as handle:
            head = handle.read(HEADER.size)
        if not head.startswith(PMTILES_MAGIC):
            raise ArchiveError("not a PMTiles file (no PMTiles magic number)")
        if len(head) < HEADER.size:
            raise ArchiveError("the PMTiles header is cut short: the file is truncated")
        (_, version, root_off, root_len, meta_off, meta_len, leaf_off, leaf_len, data_off, data_len,
         _addressed, _entries, _contents, _clustered, internal, tile_comp, tile_type, min_z, max_z,
         min_lon, min_lat, max_lon, max_lat, c_zoom, c_lon, c_lat) = HEADER.unpack(head)
        if version != 3:
            raise ArchiveError(f"PMTiles version {version}: only version 3 is read")
        if COMPRESSION.get(internal) not in {"none", "gzip"}:
            raise ArchiveError(f"directories compressed as {COMPRESSION.get(internal, internal)}: "
                               "convert the file to gzip (pmtiles convert) first")
        if tile_type not in PM_TILE_TYPES:
            raise ArchiveError(f"tile type {tile_type} is not PNG, JPEG, WebP or MVT")
        self._tile_compression = COMPRESSION.get(tile_comp, "unknown")
        if self._tile_compression not in {"none", "gzip", "unknown"} or (
                PM_TILE_TYPES[tile_type] == "pbf" and self._tile_compression == "unknown"):
            raise ArchiveError(f"tiles compressed as {self._tile_compression}: only gzip or none can be served")
        self._internal_gzip = COMPRESSION[internal] == "gzip"
        self._sections = {"root": (root_off, root_len), "metadata": (meta_off, meta_len),
                          "leaves": (leaf_off, leaf_len), "data": (data_off, data_len)}
        for name, (offset, length) in self._sections.items():
            if offset + length > self._size:
                raise ArchiveError(f"the {name} section ends past the end of the file: the file is truncated "
                                   "or its header lies")
        if root_len > MAX_DIRECTORY_BYTES or meta_len > MAX_METADATA_BYTES:
            raise ArchiveError("the root directory or the metadata is declared far larger than any real one")
        self._root = self._directory(root_off, root_len)
        metadata = {}
        if meta_len:
            raw = self._read(meta_off, meta_len)
            raw = _bounded_gunzip(raw, MAX_METADATA_BYTES) if self._internal_gzip else raw
            try:
                metadata = json.loads(raw)
            except ValueError:
                raise ArchiveError("the PMTiles metadata is not JSON") from None
            if not isinstance(metadata, dict):
                metadata = {}
        min_z, max_z = _check_zooms(min_z, max_z)
        bounds = _check_bounds(min_lon / 1e7, min_lat / 1e7, max_lon / 1e7, max_lat / 1e7)
        kind = PM_TILE_TYPES[tile_type]
        self.info = ArchiveInfo(
            format="pmtiles", tile_type=kind, min_zoom=min_z, max_zoom=max_z, bounds=bounds,
            center=_center((c_lon / 1e7, c_lat / 1e7, c_zoom), bounds, min_z, max_z),
            name=str(metadata.get("name", ""))[:200], attribution=str(metadata.get("attribution", ""))[:500],
            vector_layers=_layer_ids(metadata))
        if not self._root:
            raise ArchiveError("the PMTiles file has no tiles")

    @property
    def gzipped_tiles(self) -> bool:
        return self._tile_compression == "gzip"

    def _read(self, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0 or offset + length > self._size:
            raise ArchiveError("an entry points outside the file")
        with open(self._path, "rb") as handle:
            handle.seek(offset)
            data = handle.read(length)
        if len(data) != length:
            raise ArchiveError("the file is shorter than it says: truncated")
        return data

    def _directory(self, offset: int, length: int) -> list:
        if length > MAX_DIRECTORY_BYTES:
            raise ArchiveError(f"a directory of {length} bytes is declared")
        raw = self._read(offset, length)
        if self._internal_gzip:
            raw = _bounded_gunzip(raw, MAX_DIRECTORY_BYTES)
        return parse_directory(raw)

    def _leaf(self, offset: int, length: int) -> list:
        key = (offset, length)
        with self._lock:
            if key in self._leaves:
                self._leaves.move_to_end(key)
                return self._leaves[key]
        leaf_off, leaf_len = self._sections["leaves"]
        if offset + length > leaf_len:
            raise ArchiveError("a leaf directory lies outside the leaf section")
        entries = self._directory(leaf_off + offset, length)
        with self._lock:
            self._leaves[key] = entries
            while len(self._leaves) > self.LEAF_CACHE:
                self._leaves.popitem(last=False)
        return entries

    def tile(self, z: int, x: int, y: int) -> bytes | None:
        if not in_range(z, x, y):
            return None
        tile_id = zxy_to_tileid(z, x, y)
        entries = self._root
        data_off, data_len = self._sections["data"]
        for _ in range(MAX_DIRECTORY_DEPTH):
            entry = _find(entries, tile_id)
            if entry is None:
                return None
            _, offset, length, run = entry
            if run == 0:
                entries = self._leaf(offset, length)
                continue
            if length > MAX_TILE_BYTES:
                raise ArchiveError(f"tile {z}/{x}/{y} is larger than {MAX_TILE_BYTES} bytes")
            if offset + length > data_len:
                raise ArchiveError("a tile lies outside the tile data section")
            return self._read(data_off + offset, length)
        raise ArchiveError("leaf directories nest deeper than the format allows")


def open_archive(path: Path) -> Archive:
    """An MBTiles or PMTiles archive, told apart by content, not by the file's name."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            head = handle.read(16)
    except OSError as exc:
        raise ArchiveError(f"cannot read {path.name}: {exc.strerror}") from None
    if head.startswith(SQLITE_MAGIC):
        return MBTiles(path)
    if head.startswith(PMTILES_MAGIC):
        return PMTiles(path)
    if not head:
        raise ArchiveError("the file is empty")
    raise ArchiveError("neither MBTiles (SQLite) nor PMTiles: nothing here is a tile archive")


def tile_is_gzipped(archive: Archive, data: bytes) -> bool:
    """Whether the bytes are gzip (served with Content-Encoding: gzip, never inflated here)."""
    if isinstance(archive, PMTiles) and archive.gzipped_tiles:
        return True
    return data.startswith(b"\x1f\x8b")
