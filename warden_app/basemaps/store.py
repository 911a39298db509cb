"""Importing, choosing and opening base maps: the one place that writes Basemap rows.

The file is copied into BASEMAP_DIR under its SHA-256 before it is checked, and the copy is
what is checked and served: the operator's original may change or vanish afterwards without
the served tiles changing under their immutable URLs.
"""
from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from threading import Lock

from django.conf import settings
from django.db import transaction

from ..models import Basemap
from .archives import Archive, ArchiveError, open_archive

COPY_CHUNK = 1024 * 1024
ACTIVE_TTL_S = 10.0

_active: tuple[float, Basemap | None] | None = None
_archives: dict[str, Archive] = {}
_lock = Lock()


def basemap_dir() -> Path:
    return Path(settings.BASEMAP_DIR)


def _copy_hashed(source: Path, folder: Path) -> tuple[Path, str, int]:
    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / f".import-{os.getpid()}-{time.monotonic_ns()}.partial"
    digest = hashlib.sha256()
    size = 0
    try:
        with open(source, "rb") as src, open(partial, "xb") as dst:
            while chunk := src.read(COPY_CHUNK):
                digest.update(chunk)
                dst.write(chunk)
                size += len(chunk)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return partial, digest.hexdigest(), size


@transaction.atomic
def basemap_import(*, path: Path | str, name: str = "", attribution: str = "", activate: bool = True) -> Basemap:
    """Check and keep a tile archive, and (by default) make it the base map every map uses."""
    source = Path(path)
    if not source.is_file():  # a directory, a device (/dev/zero) or a FIFO is never copied
        raise ArchiveError(f"{source} is not a regular file")
    folder = basemap_dir()
    partial, sha, size = _copy_hashed(source, folder)
    try:
        archive = open_archive(partial)
        info = archive.info
        archive.close()
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    file_name = f"{sha}.{info.format}"
    existing = Basemap.objects.filter(sha256=sha).first()
    os.replace(partial, folder / file_name)
    if existing:
        basemap = existing
        basemap.name = name or basemap.name
        basemap.attribution = attribution or basemap.attribution
        basemap.save(update_fields=["name", "attribution"])
    else:
        basemap = Basemap.objects.create(
            name=(name or info.name or source.stem)[:200], attribution=(attribution or info.attribution)[:500],
            format=info.format, tile_type=info.tile_type, min_zoom=info.min_zoom, max_zoom=info.max_zoom,
            bounds=list(info.bounds), center=list(info.center), vector_layers=info.vector_layers, sha256=sha,
            size_bytes=size, file_name=file_name)
    if activate:
        basemap_use(basemap=basemap)
    return basemap


@transaction.atomic
def basemap_use(*, basemap: Basemap | None) -> None:
    """Make this base map the one in use (None: none, so TILE_URL or plain outlines)."""
    Basemap.objects.filter(active=True).exclude(pk=basemap.pk if basemap else None).update(active=False)
    if basemap is not None and not basemap.active:
        basemap.active = True
        basemap.save(update_fields=["active"])
    forget_cached()
    transaction.on_commit(forget_cached)


def forget_cached() -> None:
    global _active
    with _lock:
        _active = None


def active_basemap() -> Basemap | None:
    """The base map in use, read at most every ACTIVE_TTL_S seconds per process (every page's
    map and CSP ask; another process's `import_basemap --use` shows within that time)."""
    global _active
    now = time.monotonic()
    with _lock:
        if _active is not None and now - _active[0] < ACTIVE_TTL_S:
            return _active[1]
    basemap = Basemap.objects.filter(active=True).first()
    with _lock:
        _active = (now, basemap)
    return basemap


def basemap_by_version(version: str) -> Basemap | None:
    active = active_basemap()
    if active is not None and active.version == version:
        return active
    return Basemap.objects.filter(sha256__startswith=version).first()


def archive_of(basemap: Basemap) -> Archive:
    """The open archive of a base map (one per process, opened on first use)."""
    path = str(basemap_dir() / basemap.file_name)
    with _lock:
        archive = _archives.get(path)
    if archive is None:
        archive = open_archive(Path(path))
        with _lock:
            _archives[path] = archive
    return archive
