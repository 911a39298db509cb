"""Anchors: each seal's chain head, kept outside the database.

Whoever can switch the log's trigger off (a superuser, the tables' owner) can cut the
chain's end, or rewrite it and recompute every hash after; the chain alone cannot tell.
So each seal also writes its head {seal, seq, log_id, hash, at} somewhere the database's
administrators cannot rewrite, in the seal's own transaction (a head that cannot be
anchored is not sealed: the rows stay unsealed and the next run tries again).
`verify_access_log` holds the chain to every anchor.

`ACCESS_LOG_ANCHOR` says where:

- `file:///var/lib/fieldsync/anchors.log`: one JSON line per seal, appended (O_APPEND) and
  fsynced before the seal commits. Make the file append-only for everyone but its writer
  (`chattr +a`, a WORM mount, or a log shipper that copies it off the host).
- `s3://bucket/prefix`: one object per seal, `prefix/seal-<id>.json`, never overwritten
  (an existing key is an error). Turn on the bucket's Object Lock (compliance mode) and
  give the writer PutObject without DeleteObject.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlsplit

import orjson
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.files.base import ContentFile
from django.core.files.storage import Storage

_HASH = re.compile(r"[0-9a-f]{64}")


class AnchorError(Exception):
    """An anchor that cannot be written or read, or does not parse."""


class AnchorMissing(AnchorError):
    """No anchor at all where one is configured."""


@dataclass(frozen=True)
class Anchor:
    seal: int
    seq: int
    log_id: int
    hash: str
    at: str  # ISO 8601, UTC

    def encoded(self) -> bytes:
        return orjson.dumps(
            {"seal": self.seal, "seq": self.seq, "log_id": self.log_id, "hash": self.hash, "at": self.at},
            option=orjson.OPT_SORT_KEYS,
        )

    @classmethod
    def decode(cls, raw: bytes, where: str) -> Anchor:
        try:
            data = orjson.loads(raw)
            anchor = cls(seal=data["seal"], seq=data["seq"], log_id=data["log_id"], hash=data["hash"],
                         at=data["at"])
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            raise AnchorError(f"{where} is not an anchor ({exc.__class__.__name__})") from None
        ints = (anchor.seal, anchor.seq, anchor.log_id)
        if not all(type(n) is int and n > 0 for n in ints) or not isinstance(anchor.hash, str) \
                or not _HASH.fullmatch(anchor.hash) or not isinstance(anchor.at, str):
            raise AnchorError(f"{where} is not an anchor (bad field)")
        return anchor


class AnchorStore(Protocol):
    url: str
    seals: set[int]  # every seal the store holds, as of the last read() (which may fetch fewer)

    def append(self, anchor: Anchor) -> None: ...

    def read(self) -> list[Anchor]: ...


class FileAnchors:
    """An append-only file of JSON lines."""

    def __init__(self, path: Path, url: str = "") -> None:
        self.path = path
        self.url = url or f"file://{path}"
        self.seals: set[int] = set()

    def append(self, anchor: Anchor) -> None:
        line = anchor.encoded() + b"\n"
        created = not self.path.exists()
        try:
            # Read-write only to look at the last byte; every write goes to the end (O_APPEND).
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        except OSError as exc:
            raise AnchorError(f"cannot open {self.path} for appending: {exc.strerror}") from exc
        try:
            # A torn last line (a crash mid-write) must not swallow this one.
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                line = b"\n" + line
            view = memoryview(line)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        except OSError as exc:
            raise AnchorError(f"cannot append to {self.path}: {exc.strerror}") from exc
        finally:
            os.close(fd)
        if created:  # the new file's name must survive a crash too
            dir_fd = os.open(self.path.parent, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)

    def read(self) -> list[Anchor]:
        try:
            content = self.path.read_bytes()
        except FileNotFoundError:
            raise AnchorMissing(f"{self.path} does not exist") from None
        except OSError as exc:
            raise AnchorError(f"cannot read {self.path}: {exc.strerror}") from exc
        anchors = [Anchor.decode(line, f"{self.path} line {number}")
                   for number, line in enumerate(content.split(b"\n"), start=1) if line.strip()]
        self.seals = {anchor.seal for anchor in anchors}
        return anchors


class StorageAnchors:
    """One object per seal in a Django storage (S3 through django-storages in production).

    Reading lists every object but fetches only the newest `read_last` (one GET each, and a
    year of seals is half a million objects). That loses nothing: every seal must still be
    there by name, and each head is a hash over the whole chain before it, so the newest heads
    reproduced prove the older ones too."""

    NAME = re.compile(r"seal-(\d{12,})\.json")

    def __init__(self, storage: Storage, url: str, *, read_last: int = 1000) -> None:
        self.storage = storage
        self.url = url
        self.read_last = read_last
        self.seals: set[int] = set()  # every seal named in the store, as of the last read()

    @staticmethod
    def name(seal: int) -> str:
        return f"seal-{seal:012d}.json"

    def append(self, anchor: Anchor) -> None:
        name = self.name(anchor.seal)
        try:
            if self.storage.exists(name):
                raise AnchorError(f"{self.url}/{name} exists already: an anchor is never overwritten")
            saved = self.storage.save(name, ContentFile(anchor.encoded()))
        except AnchorError:
            raise
        except Exception as exc:  # boto3 and the filesystem raise their own kinds
            raise AnchorError(f"cannot write {self.url}/{name}: {exc}") from exc
        if saved != name:
            raise AnchorError(f"{self.url}/{name} was stored as {saved}")

    def read(self) -> list[Anchor]:
        try:
            _dirs, names = self.storage.listdir("")
        except FileNotFoundError:
            raise AnchorMissing(f"{self.url} does not exist") from None
        except Exception as exc:
            raise AnchorError(f"cannot list {self.url}: {exc}") from exc
        named = {}
        for name in names:
            match = self.NAME.fullmatch(name)
            if not match:
                raise AnchorError(f"{self.url}/{name} is not an anchor's name")
            named[int(match[1])] = name
        self.seals = set(named)
        anchors = []
        for seal in sorted(named)[-self.read_last:]:
            name = named[seal]
            try:
                with self.storage.open(name, "rb") as handle:
                    raw = handle.read()
            except Exception as exc:
                raise AnchorError(f"cannot read {self.url}/{name}: {exc}") from exc
            anchor = Anchor.decode(raw, f"{self.url}/{name}")
            if anchor.seal != seal:
                raise AnchorError(f"{self.url}/{name} holds the anchor of seal {anchor.seal}")
            anchors.append(anchor)
        if not anchors:
            raise AnchorMissing(f"{self.url} holds no anchor")
        return anchors


def anchor_store(url: str | None = None) -> AnchorStore | None:
    """The store `url` (default settings.ACCESS_LOG_ANCHOR) names; None when none is set."""
    url = settings.ACCESS_LOG_ANCHOR if url is None else url
    if not url:
        return None
    parts = urlsplit(url)
    if parts.scheme == "file" and parts.netloc in ("", "localhost") and parts.path.startswith("/"):
        return FileAnchors(Path(unquote(parts.path)), url)
    if parts.scheme == "s3" and parts.netloc:
        from storages.backends.s3 import S3Storage

        storage = S3Storage(
            bucket_name=parts.netloc, location=unquote(parts.path).strip("/"), file_overwrite=False,
            default_acl=None, querystring_auth=False, **settings.ACCESS_LOG_ANCHOR_S3_OPTIONS,
        )
        return StorageAnchors(storage, url)
    raise ImproperlyConfigured(f"ACCESS_LOG_ANCHOR must be file:///absolute/path or s3://bucket/prefix, not {url!r}")
