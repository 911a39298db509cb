"""Simulated handhelds for load runs: the engine shared by bench/load.py and tests/load.

A simulated handheld behaves like warden_app's offline app (static/handheld/js/sync.js): it keeps
an outbox, pushes it in batches of the manifest's `max_mutations`, sends the *same* batch again
after a timeout, a 5xx or a 429 (waiting out Retry-After), uploads its photos by hash (HEAD, then
PUT) and pulls its feed with a cursor. It edits only its own records, so every mutation it makes
must end `applied` or `merged`: anything else is a finding.

Everything put on the wire is written in a ledger; `audit` then checks the store against it:
one receipt per mutation id sent and none besides, each record once with the values its
device last gave it and one version row per mutation, every photo stored under its hash.

Django is not imported at module level: the HTTP side needs none of it, and `world_prepare`
and `audit` import the models when called (the caller has set Django up).
"""
from __future__ import annotations

import asyncio
import contextlib
import io
import itertools
import math
import os
import random
import struct
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from hashlib import sha256
from pathlib import Path

import httpx
import orjson

# The process handling of the deploy and fault tests, which start the same server.
from devtools.processes import Processes, child_env, free_port, live_processes, proc_stat, redis_server_argv, wait_until

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "load-handheld-password-7"
ENROL, MANIFEST, PUSH, PULL = "/api/v1/devices/enrol", "/api/v1/sync/manifest", "/api/v1/sync/push", "/api/v1/sync/pull"
ATTACHMENT = "/api/v1/attachments/"
OK_OUTCOMES = ("applied", "merged")
ENDPOINTS = ("enrol", "manifest", "push", "pull", "attachment_head", "attachment_put")
# Operational areas of load runs: a grid in mid-Wales, far from any area of the demo data, with
# gaps between boxes so a point never lies in two of them.
GRID_ORIGIN = (-3.70, 52.20)
GRID_COLUMNS = 10
AREA_SIZE = (0.012, 0.008)
AREA_STEP = (0.015, 0.010)
METRES_PER_DEGREE = 111_320.0


# --- what a run does ----------------------------------------------------------------------

@dataclass
class Profile:
    name: str  # "steady" or "storm"
    devices: int = 500
    duration: float = 300.0  # steady: length of the shift, seconds
    push_every: tuple[float, float] = (5.0, 15.0)  # steady: seconds between a handheld's sync rounds
    changes: tuple[int, int] = (1, 20)  # steady: mutations recorded between two rounds
    pull_every: float = 30.0  # steady
    mutations: int = 200  # storm: queued per handheld
    photos: int = 2  # storm: photos queued per handheld
    photo_chance: float = 0.02  # steady: share of new observations that carry a photo
    photo_px: tuple[int, int] = (1280, 960)
    create_share: float = 0.6  # the rest are edits of the handheld's own records
    offline_chance: float = 0.03  # steady: chance at each round of losing signal for a while
    offline: tuple[float, float] = (20.0, 90.0)  # steady: length of such a gap
    dup_chance: float = 0.03  # chance of re-sending a push (or photo) deliberately
    enrol: int = 10  # handhelds that enrol with a password; the others hold a token already
    batch: int = 0  # mutations per push; 0: the manifest's max_mutations, as the handheld app
    pull_limit: int = 200  # the handheld app's page size
    push_timeout: float = 60.0  # the handheld app's timeouts
    pull_timeout: float = 60.0
    photo_timeout: float = 120.0
    enrol_timeout: float = 30.0
    max_attempts: int = 8  # per request; then the round gives up and the next one tries again
    backoff_cap: float = 30.0
    drain_grace: float = 300.0  # steady: time after the shift for the outboxes to empty
    deadline: float = 600.0  # storm: the run gives up after this
    settle_concurrency: int = 32
    seed: int = 1
    # Targets printed (and returned) next to the figures; the audit is separate.
    target_push_p95_ms: float = 300.0
    target_drain_s: float = 60.0


def steady_profile(**overrides) -> Profile:
    return replace(Profile(name="steady"), **overrides)


def storm_profile(**overrides) -> Profile:
    return replace(Profile(name="storm"), **overrides)


# --- the world: users, areas, devices -----------------------------------------------------

@dataclass
class DeviceSpec:
    index: int
    username: str
    user_id: int
    area_id: int
    box: tuple[float, float, float, float]  # (lon0, lat0, lon1, lat1) of the handheld's area
    token: str | None  # None: the handheld enrols with PASSWORD


@dataclass
class World:
    tag: str
    devices: list[DeviceSpec]
    probe_token: str  # a device of its own that only reads the manifest before the run


def area_box(i: int) -> tuple[float, float, float, float]:
    col, row = i % GRID_COLUMNS, i // GRID_COLUMNS
    lon0 = GRID_ORIGIN[0] + col * AREA_STEP[0]
    lat0 = GRID_ORIGIN[1] + row * AREA_STEP[1]
    return (round(lon0, 6), round(lat0, 6), round(lon0 + AREA_SIZE[0], 6), round(lat0 + AREA_SIZE[1], 6))


def world_prepare(*, devices: int, enrol: int, areas: int | None = None, tag: str | None = None) -> World:
    """Users (one warden per handheld, so pushes are not serialised on one person's lock),
    spread over `areas` areas of ten or so, each area a team; devices for all but `enrol` of
    them. Idempotent about what a server already has (areas, teams, the form), so it also
    works against the database of a running server; usernames carry a fresh tag per run."""
    from django.contrib.auth.hashers import make_password
    from django.contrib.gis.geos import MultiPolygon, Polygon
    from django.db import transaction

    from fieldsync.sync.models import Device
    from fieldsync.sync.tokens import token_hash, token_new
    from warden_app.models import Area, BoundarySet, FormDefinition, Organisation, User
    from warden_app.roles import Role
    from warden_app.services.roles import role_groups_ensure
    from warden_app.services.sharing import sharing_defaults_ensure
    from warden_app.services.teams import team_get_or_create, team_set_areas

    tag = tag or uuid.uuid4().hex[:6]
    areas = areas or max(1, math.ceil(devices / 10))
    groups = role_groups_ensure()
    sharing_defaults_ensure()
    org, _ = Organisation.objects.get_or_create(slug="load-council",
                                                defaults={"name": "Load Test Council", "kind": "council"})
    ops, _ = BoundarySet.objects.get_or_create(slug="load-ops", defaults={"name": "Load Ops", "operational": True})
    if not FormDefinition.objects.filter(record_type="observation").exists():
        FormDefinition.objects.create(record_type="observation", version=1, title="ASB", definition={})
    area_rows, teams = [], []
    for i in range(areas):
        box = area_box(i)
        area, _ = Area.objects.get_or_create(
            boundary_set=ops, code=f"LOAD-{i:03d}",
            defaults={"name": f"Load area {i}", "geom": MultiPolygon(Polygon.from_bbox(box), srid=4326)},
        )
        team = team_get_or_create(name=f"load-area-{i:03d}")
        team_set_areas(team=team, areas=[area])
        area_rows.append(area)
        teams.append(team)
    # One hash for everyone, made once with the production hasher (the server's settings
    # must verify it; a test process prefers MD5, which the server does not accept).
    hashed = make_password(PASSWORD, hasher="pbkdf2_sha256")
    names = [f"load_{tag}_{i:04d}" for i in range(devices)] + [f"load_{tag}_probe"]
    with transaction.atomic():
        users = User.objects.bulk_create([User(username=n, password=hashed, organisation=org) for n in names])
        membership = User.groups.through
        links = []
        for i, user in enumerate(users):
            links.append(membership(user_id=user.pk, group_id=groups[Role.WARDEN].pk))
            links.append(membership(user_id=user.pk, group_id=teams[i % areas].field_group_id))
        membership.objects.bulk_create(links)
        tokens = {}
        rows = []
        for i, user in enumerate(users):
            if i < enrol:
                continue  # these enrol over HTTP during the run
            tokens[i] = token_new()
            rows.append(Device(user=user, label=f"load handheld {i}", platform="fieldsync-load",
                               token_hash=token_hash(tokens[i])))
        Device.objects.bulk_create(rows)
    specs = [
        DeviceSpec(index=i, username=names[i], user_id=users[i].pk, area_id=area_rows[i % areas].pk,
                   box=area_box(i % areas), token=tokens.get(i))
        for i in range(devices)
    ]
    return World(tag=tag, devices=specs, probe_token=tokens[devices])


# --- photos -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Photo:
    sha256: str
    base: int
    stamp: bytes
    width: int
    height: int
    content_type: str = "image/jpeg"


class PhotoMaker:
    """Camera-like JPEGs, each different, made cheaply: a few noisy base pictures (noise keeps
    them as heavy as a real photo; a flat colour would compress to nothing), each copy made
    unique by a JPEG comment segment. The bytes are rebuilt when uploaded, so a storm of
    a thousand photos does not sit in memory."""

    def __init__(self, px: tuple[int, int], seed: int = 1, bases: int = 4):
        from PIL import Image

        self.width, self.height = px
        self.bases: list[bytes] = []
        for b in range(bases):
            w, h = px
            coarse = Image.effect_noise((max(1, w // 4), max(1, h // 4)), 40 + 5 * b).resize((w, h), Image.BILINEAR)
            gradient = Image.linear_gradient("L").resize((w, h))
            image = Image.merge("RGB", (coarse, gradient, Image.effect_noise((w, h), 20 + b)))
            out = io.BytesIO()
            image.save(out, format="JPEG", quality=85)
            self.bases.append(out.getvalue())
        self.counter = itertools.count()
        self.seed = seed

    def bytes_of(self, photo: Photo) -> bytes:
        base = self.bases[photo.base]
        # SOI, then a COM segment (FF FE, length including itself), then the rest.
        return base[:2] + b"\xff\xfe" + struct.pack(">H", len(photo.stamp) + 2) + photo.stamp + base[2:]

    def new(self) -> tuple[Photo, int]:
        n = next(self.counter)
        stamp = f"fieldsync load photo {self.seed}/{n}/{uuid.uuid4()}".encode()
        probe = Photo(sha256="", base=n % len(self.bases), stamp=stamp, width=self.width, height=self.height)
        data = self.bytes_of(probe)
        return replace(probe, sha256=sha256(data).hexdigest()), len(data)


# --- measuring ----------------------------------------------------------------------------

class Stats:
    """Per endpoint: the latency of every answered request, and the outcome of every attempt
    (status code, or the transport error that replaced it)."""

    def __init__(self):
        self.latency: dict[str, list[float]] = defaultdict(list)
        self.outcomes: dict[str, Counter] = defaultdict(Counter)

    def answered(self, endpoint: str, status: int, seconds: float) -> None:
        self.latency[endpoint].append(seconds)
        self.outcomes[endpoint][status] += 1

    def failed(self, endpoint: str, what: str) -> None:
        self.outcomes[endpoint][what] += 1

    def requests(self) -> int:
        return sum(sum(c.values()) for c in self.outcomes.values())

    def count(self, predicate) -> int:
        return sum(n for c in self.outcomes.values() for k, n in c.items() if predicate(k))

    def server_errors(self) -> int:
        return self.count(lambda k: isinstance(k, int) and k >= 500)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (no interpolation: the figure is a latency someone saw)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


class Net:
    """One HTTP client for every simulated handheld (an httpx pool sized so no request waits
    for a connection), with the handheld app's retry rules."""

    RETRY_STATUS = frozenset({429, 500, 502, 503, 504})

    def __init__(self, base_url: str, stats: Stats, *, verify: bool | str = True, connections: int = 100,
                 transport: httpx.AsyncBaseTransport | None = None):
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        self.client = httpx.AsyncClient(base_url=base_url, verify=verify, limits=limits, timeout=60,
                                        transport=transport)
        self.stats = stats
        self.retries = 0
        self.rng = random.Random(7)

    async def close(self) -> None:
        await self.client.aclose()

    def backoff(self, attempt: int, cap: float) -> float:
        return min(cap, 0.5 * 2 ** (attempt - 1)) * self.rng.uniform(0.5, 1.5)

    @staticmethod
    def retry_after(response: httpx.Response) -> float | None:
        raw = response.headers.get("retry-after")
        if raw is None:
            return None
        try:
            return max(0.0, float(raw))
        except ValueError:
            with contextlib.suppress(TypeError, ValueError):
                from email.utils import parsedate_to_datetime

                return max(0.0, (parsedate_to_datetime(raw) - datetime.now(UTC)).total_seconds())
        return None

    async def call(self, endpoint: str, method: str, path: str, *, token: str | None = None,
                   content: bytes | None = None, content_type: str | None = None, params: dict | None = None,
                   timeout: float, until: float, attempts: int, cap: float = 30.0) -> httpx.Response | None:
        """The answer, or None when every attempt failed (timeouts, resets, 5xx, 429) within
        `attempts` tries and before the monotonic time `until`."""
        headers = {}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if content_type:
            headers["Content-Type"] = content_type
        limit = httpx.Timeout(timeout, connect=min(timeout, 15.0))
        for attempt in range(1, attempts + 1):
            started = time.perf_counter()
            delay = None
            try:
                response = await self.client.request(method, path, content=content, headers=headers, params=params,
                                                     timeout=limit)
            except httpx.TimeoutException:
                self.stats.failed(endpoint, "timeout")
            except httpx.TransportError as exc:
                self.stats.failed(endpoint, type(exc).__name__)
            else:
                self.stats.answered(endpoint, response.status_code, time.perf_counter() - started)
                if response.status_code not in self.RETRY_STATUS:
                    return response
                delay = self.retry_after(response)
            if delay is None:
                delay = self.backoff(attempt, cap)
            else:
                # At least what the server asked for; the jitter keeps throttled handhelds
                # from coming back in one wave.
                delay += self.rng.uniform(0, 0.5)
            if attempt == attempts or time.monotonic() + delay > until:
                return None
            self.retries += 1
            await asyncio.sleep(delay)
        return None


# --- what was sent, and what came back ----------------------------------------------------

@dataclass
class Sent:
    mutation: dict
    device: int
    outcome: str | None = None  # applied, merged, conflict, rejected (a duplicate's original)
    version: int | None = None
    code: str | None = None
    direct: int = 0  # answers that were not `duplicate`: more than one means applied twice


@dataclass
class PhotoSent:
    photo: Photo
    size: int
    device: int
    record_id: str
    statuses: Counter = field(default_factory=Counter)  # 201, 200, "head" (found stored)
    stored: bool = False
    head_after: int | None = None  # HEAD status in the settle phase


class Ledger:
    def __init__(self):
        self.sent: dict[str, Sent] = {}
        self.by_record: dict[str, list[str]] = defaultdict(list)  # record id -> mutation ids in order
        self.record_device: dict[str, int] = {}
        self.photos: dict[str, PhotoSent] = {}
        self.anomalies: Counter = Counter()
        self.examples: dict[str, str] = {}
        self.first_answer_at: dict[str, float] = {}

    def anomaly(self, kind: str, example: str = "") -> None:
        self.anomalies[kind] += 1
        self.examples.setdefault(kind, example[:400])

    def on_wire(self, m: dict, device: int) -> None:
        mid = m["mutation_id"]
        if mid not in self.sent:
            self.sent[mid] = Sent(mutation=m, device=device)
            self.by_record[m["id"]].append(mid)
            self.record_device.setdefault(m["id"], device)

    def answer(self, mid: str, result: dict) -> tuple[str | None, int | None]:
        sent = self.sent.get(mid)
        if sent is None:
            self.anomaly("answer for a mutation never sent", str(result))
            return None, None
        status = result.get("status")
        if status == "duplicate":
            original = result.get("original") or {}
            outcome = original.get("status")
            version = result.get("version", original.get("version"))
            code = original.get("code")
        else:
            outcome, version, code = status, result.get("version"), result.get("code")
            sent.direct += 1
            if sent.direct == 2:
                self.anomaly("answered as new twice (applied twice?)", f"{mid}: {result}")
        if sent.outcome is None:
            sent.outcome, sent.version, sent.code = outcome, version, code
            self.first_answer_at[mid] = time.monotonic()
            if outcome not in OK_OUTCOMES:
                self.anomaly(f"outcome {outcome}" + (f" ({code})" if code else ""), f"{mid}: {result}")
        elif (sent.outcome, sent.version) != (outcome, version):
            self.anomaly("answers disagree", f"{mid}: first {sent.outcome} v{sent.version}, then {result}")
        return outcome, version


# --- one simulated handheld ---------------------------------------------------------------

@dataclass
class LocalRecord:
    data: dict
    server_version: int | None = None


def _copy(value):
    return orjson.loads(orjson.dumps(value))


def _now_iso(delta: float = 0.0) -> str:
    return (datetime.now(UTC) + timedelta(seconds=delta)).isoformat()


class Kit:
    """What all handhelds of a run share."""

    def __init__(self, *, net: Net, profile: Profile, limits: dict, enums: dict, photos: PhotoMaker):
        self.net = net
        self.profile = profile
        self.limits = limits
        self.enums = enums
        self.photos = photos
        self.ledger = Ledger()
        self.counters: Counter = Counter()
        self.pull_ops: Counter = Counter()


class Handheld:
    def __init__(self, spec: DeviceSpec, kit: Kit):
        self.spec = spec
        self.kit = kit
        self.p = kit.profile
        self.rng = random.Random(f"{self.p.seed}/{spec.index}")
        self.token = spec.token
        self.outbox: list[dict] = []
        self.records: dict[str, LocalRecord] = {}
        self.photos_waiting: list[PhotoSent] = []
        self.cursor: str | None = None
        self.pulled: dict[str, int] = {}  # own record id -> version of the last upsert pulled
        self.edits = itertools.count(1)
        self.drained_at: float | None = None
        self.round_done_at: float | None = None

    # --- the warden's work -----------------------------------------------------------------

    def _point(self, near: list[float] | None = None) -> list[float]:
        lon0, lat0, lon1, lat1 = self.spec.box
        margin = 0.0004
        if near is None:
            return [round(self.rng.uniform(lon0 + margin, lon1 - margin), 7),
                    round(self.rng.uniform(lat0 + margin, lat1 - margin), 7)]
        # A real move (20-80 m: beyond the 10 m tolerance), kept inside the area.
        metres, bearing = self.rng.uniform(20, 80), self.rng.uniform(0, 2 * math.pi)
        dlat = metres * math.cos(bearing) / METRES_PER_DEGREE
        dlon = metres * math.sin(bearing) / (METRES_PER_DEGREE * math.cos(math.radians(near[1])))
        return [round(min(max(near[0] + dlon, lon0 + margin), lon1 - margin), 7),
                round(min(max(near[1] + dlat, lat0 + margin), lat1 - margin), 7)]

    def _accuracy(self, other: float | None = None) -> float:
        while True:
            value = round(self.rng.uniform(3, 30), 1)
            if value != other:
                return value

    def _actions(self, other: list[str] | None = None) -> list[str]:
        choices = self.kit.enums["action_taken"]
        while True:
            picked = sorted(self.rng.sample(choices, self.rng.randint(1, min(2, len(choices)))))
            if picked != other:
                return picked

    def _other(self, name: str, current: str | None) -> str:
        return self.rng.choice([v for v in self.kit.enums[name] if v != current] or self.kit.enums[name])

    def _queue(self, op: str, rid: str, data: dict, base: int | None) -> None:
        self.outbox.append({"mutation_id": str(uuid.uuid4()), "type": "observation", "op": op, "id": rid,
                            "base_version": base, "client_time": _now_iso(), "data": data})

    def create(self, *, photo: bool = False) -> None:
        rid = str(uuid.uuid4())
        data = {
            "qualifier": self._other("qualifier", None),
            "incident_type": self._other("incident_type", None),
            "observed_at": _now_iso(-self.rng.uniform(60, 3600)),
            "description": f"{self.spec.username} observation {rid[:8]}: group by the shops",
            "action_taken": self._actions(),
            "persons_involved": [{"description": "male, 20s, grey hoodie", "approx_age": self.rng.randint(14, 70)}],
            "location": {"type": "Point", "coordinates": self._point()},
            "accuracy_m": self._accuracy(),
            "fix_source": "gps",
        }
        if photo:
            made, size = self.kit.photos.new()
            sent = PhotoSent(photo=made, size=size, device=self.spec.index, record_id=rid)
            self.kit.ledger.photos[made.sha256] = sent
            self.photos_waiting.append(sent)
            data["photos"] = [made.sha256]
        self.records[rid] = LocalRecord(data=_copy(data))
        self._queue("create", rid, data, None)

    def edit(self) -> None:
        """A patch of one to three fields of a recent own record; every field it names gets a
        new value, so each edit is a real change (one new version on the server)."""
        rid = self.rng.choice(list(self.records)[-30:])
        rec = self.records[rid]
        n = next(self.edits)
        patch: dict = {}
        for what in self.rng.sample(["description", "incident_type", "qualifier", "action_taken", "location",
                                     "persons_involved"], self.rng.randint(1, 3)):
            if what == "description":
                patch["description"] = f"{rec.data['description'].split(' [')[0]} [edit {n}]"
            elif what in ("incident_type", "qualifier"):
                patch[what] = self._other(what, rec.data[what])
            elif what == "action_taken":
                patch["action_taken"] = self._actions(rec.data["action_taken"])
            elif what == "location":
                patch["location"] = {"type": "Point", "coordinates": self._point(rec.data["location"]["coordinates"])}
                patch["accuracy_m"] = self._accuracy(rec.data["accuracy_m"])
            else:
                patch["persons_involved"] = [{"description": f"female, 30s (edit {n})",
                                              "approx_age": self.rng.randint(14, 70)}]
        rec.data.update(_copy(patch))
        # As the handheld app: the version last seen from the server, or 1 for a record whose
        # create has not been answered yet (every offline edit carries that same base).
        self._queue("update", rid, patch, rec.server_version or 1)

    def record_changes(self, n: int, photo_chance: float) -> None:
        for _ in range(n):
            if not self.records or self.rng.random() < self.p.create_share:
                self.create(photo=self.rng.random() < photo_chance)
            else:
                self.edit()

    # --- talking to the server -------------------------------------------------------------

    def _call(self, endpoint: str, method: str, path: str, *, until: float, timeout: float, **kwargs):
        return self.kit.net.call(endpoint, method, path, token=self.token, timeout=timeout, until=until,
                                 attempts=self.p.max_attempts, cap=self.p.backoff_cap, **kwargs)

    def _refused(self, endpoint: str, response: httpx.Response) -> None:
        try:
            code = response.json().get("code", "")
        except ValueError:
            code = ""
        self.kit.ledger.anomaly(f"{endpoint} answered {response.status_code} {code}".strip(), response.text[:300])

    async def enrol(self, until: float) -> bool:
        body = orjson.dumps({"username": self.spec.username, "password": PASSWORD,
                             "label": f"load handheld {self.spec.index}", "platform": "fieldsync-load"})
        response = await self._call("enrol", "POST", ENROL, until=until, timeout=self.p.enrol_timeout, content=body,
                                    content_type="application/json")
        if response is None or response.status_code != 201:
            if response is not None:
                self._refused("enrol", response)
            else:
                self.kit.ledger.anomaly("enrol never answered")
            return False
        self.token = response.json()["token"]
        # A new handheld reads its manifest (forms, areas, limits) before anything else.
        manifest = await self._call("manifest", "GET", MANIFEST, until=until, timeout=self.p.pull_timeout)
        if manifest is not None and manifest.status_code != 200:
            self._refused("manifest", manifest)
        return True

    def next_batch(self) -> list[dict]:
        limit = self.p.batch or self.kit.limits["max_mutations"]
        max_bytes = int(self.kit.limits["max_body_bytes"] * 0.9)
        batch, size = [], 16
        for m in self.outbox:
            n = len(orjson.dumps(m)) + 1
            if len(batch) >= limit or (batch and size + n > max_bytes):
                break
            batch.append(m)
            size += n
        return batch

    def apply_results(self, batch: list[dict], results: list[dict]) -> int:
        by_id = {r.get("mutation_id"): r for r in results if isinstance(r, dict)}
        done = set()
        for m in batch:
            result = by_id.get(m["mutation_id"])
            if result is None:
                continue
            outcome, version = self.kit.ledger.answer(m["mutation_id"], result)
            if outcome is None:
                continue
            done.add(m["mutation_id"])
            rec = self.records.get(m["id"])
            if rec is not None and outcome in OK_OUTCOMES and version:
                rec.server_version = max(rec.server_version or 0, version)
        if done:
            self.outbox = [m for m in self.outbox if m["mutation_id"] not in done]
        return len(done)

    async def _push_once(self, body: bytes, until: float) -> httpx.Response | None:
        return await self._call("push", "POST", PUSH, until=until, timeout=self.p.push_timeout, content=body,
                                content_type="application/json")

    async def push_outbox(self, until: float) -> bool:
        """Push until the outbox is empty (True), or a batch could not be delivered (False:
        it stays in the outbox and is sent again, unchanged, at the next round)."""
        ledger = self.kit.ledger
        while self.outbox:
            batch = self.next_batch()
            body = orjson.dumps({"mutations": batch})
            for m in batch:
                ledger.on_wire(m, self.spec.index)
            roll = self.rng.random()
            if roll < self.p.dup_chance / 2:
                # The same push on two connections at once (a flaky link, a retry that
                # overtakes the original): one must be applied, the other a duplicate.
                self.kit.counters["parallel re-sends"] += 1
                answers = await asyncio.gather(self._push_once(body, until), self._push_once(body, until))
            else:
                answers = [await self._push_once(body, until)]
            progressed = False
            for response in answers:
                if response is None:
                    continue
                if response.status_code != 200:
                    self._refused("push", response)
                    continue
                progressed |= self.apply_results(batch, orjson.loads(response.content)["results"]) > 0
            if not progressed:
                return False
            if self.p.dup_chance / 2 <= roll < self.p.dup_chance:
                await self._resend(batch, body, until)
        return True

    async def _resend(self, batch: list[dict], body: bytes, until: float) -> None:
        """Send an answered push again, as a handheld does whose answer was lost: every
        result must be `duplicate`, carrying the original outcome."""
        self.kit.counters["re-sends after an answer"] += 1
        response = await self._push_once(body, until)
        if response is None or response.status_code != 200:
            if response is not None:
                self._refused("push", response)
            return
        results = orjson.loads(response.content)["results"]
        for r in results:
            if r.get("status") != "duplicate":
                self.kit.ledger.anomaly("re-send not answered duplicate", str(r))
        self.apply_results(batch, results)

    async def upload_photos(self, until: float) -> bool:
        ledger = self.kit.ledger
        while self.photos_waiting:
            sent = self.photos_waiting[0]
            path = ATTACHMENT + sent.photo.sha256
            head = await self._call("attachment_head", "HEAD", path, until=until, timeout=self.p.pull_timeout)
            if head is None:
                return False
            if head.status_code == 200:
                sent.statuses["head"] += 1  # an earlier upload made it; its answer was lost
            elif head.status_code == 404:
                data = self.kit.photos.bytes_of(sent.photo)
                put = await self._call("attachment_put", "PUT", path, until=until, timeout=self.p.photo_timeout,
                                       content=data, content_type=sent.photo.content_type)
                if put is None:
                    return False
                sent.statuses[put.status_code] += 1
                if put.status_code not in (200, 201):
                    self._refused("attachment_put", put)
                elif self.rng.random() < self.p.dup_chance:
                    self.kit.counters["photo re-uploads"] += 1
                    again = await self._call("attachment_put", "PUT", path, until=until,
                                             timeout=self.p.photo_timeout, content=data,
                                             content_type=sent.photo.content_type)
                    if again is not None:
                        sent.statuses[again.status_code] += 1
                        if again.status_code != 200:
                            ledger.anomaly(f"photo re-upload answered {again.status_code}", again.text[:300])
            else:
                self._refused("attachment_head", head)
                return False
            sent.stored = sent.statuses["head"] > 0 or bool(sent.statuses[200] + sent.statuses[201])
            self.photos_waiting.pop(0)
        return True

    async def pull_all(self, until: float) -> bool:
        for _ in range(100_000):
            params = {"limit": str(self.p.pull_limit), **({"cursor": self.cursor} if self.cursor else {})}
            response = await self._call("pull", "GET", PULL, until=until, timeout=self.p.pull_timeout, params=params)
            if response is None:
                return False
            if response.status_code == 410:
                self.kit.counters["resync_required"] += 1
                self.cursor = None
                continue
            if response.status_code != 200:
                self._refused("pull", response)
                return False
            page = orjson.loads(response.content)
            for change in page["changes"]:
                self.kit.pull_ops[change["op"]] += 1
                if change["id"] in self.records:
                    self.pulled[change["id"]] = change.get("version", 0) if change["op"] == "upsert" else -1
            self.cursor = page["cursor"]
            if not page["has_more"]:
                return True
        return False

    def own_pulled_ok(self) -> bool:
        return all(self.pulled.get(rid) == rec.server_version for rid, rec in self.records.items())

    # --- the two profiles ------------------------------------------------------------------

    async def steady(self, until: float, drain_until: float) -> None:
        """A shift: start at a random moment of the first interval, record and sync now and
        then, sometimes lose signal (recording on, syncing off, then a full round when the
        signal is back); after the shift, empty the outbox."""
        p = self.p
        await asyncio.sleep(self.rng.uniform(0, p.push_every[1]))
        if self.token is None and not await self.enrol(drain_until):
            return
        await self.pull_all(drain_until)  # the first sync of the shift
        now = time.monotonic()
        next_change = now + self.rng.uniform(*p.push_every)
        next_pull = now + p.pull_every
        offline_until = 0.0  # 0: in signal
        while True:
            wake = min(next_change, next_pull, offline_until or math.inf)
            if wake >= until:
                break
            await asyncio.sleep(max(0.0, wake - time.monotonic()))
            now = time.monotonic()
            push = pull = False
            if offline_until and now >= offline_until:
                offline_until = 0.0
                push = pull = True
            if now >= next_change:
                self.record_changes(self.rng.randint(*p.changes), p.photo_chance)
                next_change = now + self.rng.uniform(*p.push_every)
                if not offline_until and self.rng.random() < p.offline_chance:
                    self.kit.counters["offline gaps"] += 1
                    offline_until = now + self.rng.uniform(*p.offline)
                push = True
            if now >= next_pull:
                # A pull due while out of signal is skipped: the round on reconnection pulls.
                pull = True
                next_pull = now + p.pull_every
            if offline_until:
                continue
            if push:
                await self.push_outbox(drain_until)
                await self.upload_photos(drain_until)
            if pull:
                await self.pull_all(drain_until)
                next_pull = time.monotonic() + p.pull_every
        await asyncio.sleep(max(0.0, until - time.monotonic()))
        # End of shift, back in signal: whatever is still queued goes now.
        if await self.push_outbox(drain_until) and await self.upload_photos(drain_until):
            self.drained_at = time.monotonic()

    async def storm(self, start: asyncio.Event, until: float) -> None:
        """Back in signal with a full outbox: push it, upload the photos, pull."""
        await start.wait()
        if self.token is None and not await self.enrol(until):
            return
        if await self.push_outbox(until) and await self.upload_photos(until):
            self.drained_at = time.monotonic()
        await self.pull_all(until)
        self.round_done_at = time.monotonic()


# --- a run ---------------------------------------------------------------------------------

@dataclass
class Run:
    profile: Profile
    world: World
    handhelds: list[Handheld]
    kit: Kit
    stats: Stats
    settle_stats: Stats
    t0: float
    load_end: float
    queued_in: float = 0.0  # storm: seconds to build the outboxes (before the clock)
    settle_pull_misses: int = 0
    cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds during the load, per process group


def _enums(manifest: dict) -> dict:
    props = manifest["record_types"]["observation"]["schema"]["properties"]
    return {
        "qualifier": [v for v in props["qualifier"]["enum"] if v is not None],
        "incident_type": [v for v in props["incident_type"]["enum"] if v is not None],
        "action_taken": list(props["action_taken"]["items"]["enum"]),
    }


def _cpu(stack: Stack | None) -> dict[str, float]:
    return {"client": time.process_time(), **(stack.cpu_seconds() if stack else {})}


async def _run(base_url: str, world: World, profile: Profile, verify: bool | str, stack: Stack | None) -> Run:
    stats = Stats()
    net = Net(base_url, stats, verify=verify, connections=2 * profile.devices + 16)
    try:
        probe = await net.call("manifest", "GET", MANIFEST, token=world.probe_token, timeout=30,
                               until=time.monotonic() + 60, attempts=5)
        if probe is None or probe.status_code != 200:
            raise RuntimeError(f"the manifest is not served: {probe and probe.status_code} {probe and probe.text}")
        stats.latency.clear()  # the probe is set-up, not load
        stats.outcomes.clear()
        manifest = probe.json()
        kit = Kit(net=net, profile=profile, limits=manifest["limits"], enums=_enums(manifest),
                  photos=PhotoMaker(profile.photo_px, profile.seed))
        handhelds = [Handheld(spec, kit) for spec in world.devices[:profile.devices]]
        queued_in = 0.0
        if profile.name == "storm":
            started = time.perf_counter()
            for h in handhelds:
                # The first `photos` observations of the night carry one photo each.
                for i in range(profile.mutations):
                    if i < profile.photos:
                        h.create(photo=True)
                    elif h.rng.random() < profile.create_share:
                        h.create()
                    else:
                        h.edit()
            queued_in = time.perf_counter() - started
        cpu_before = _cpu(stack)
        t0 = time.monotonic()
        if profile.name == "steady":
            until, drain_until = t0 + profile.duration, t0 + profile.duration + profile.drain_grace
            await asyncio.gather(*(_guarded(kit, h.steady(until, drain_until)) for h in handhelds))
        else:
            start = asyncio.Event()
            tasks = [asyncio.create_task(_guarded(kit, h.storm(start, t0 + profile.deadline))) for h in handhelds]
            await asyncio.sleep(0)  # every handheld waits at the line...
            t0 = time.monotonic()
            start.set()  # ...and all reconnect at once
            await asyncio.gather(*tasks)
        load_end = time.monotonic()
        cpu_after = _cpu(stack)
        run = Run(profile=profile, world=world, handhelds=handhelds, kit=kit, stats=stats, settle_stats=Stats(),
                  t0=t0, load_end=load_end, queued_in=queued_in,
                  cpu={name: cpu_after[name] - cpu_before.get(name, 0.0) for name in cpu_after})
        await _settle(run)
        return run
    finally:
        await net.close()


async def _guarded(kit: Kit, work) -> None:
    """One handheld's work; an answer it cannot read (say, an HTML error page from a proxy)
    ends that handheld only, and is reported with the findings (its outbox then counts as
    undelivered)."""
    try:
        await work
    except Exception as exc:
        kit.ledger.anomaly(f"handheld stopped by {type(exc).__name__}", repr(exc))


async def _settle(run: Run) -> None:
    """After the load, outside the figures: each handheld pulls to the end of its feed (its
    own records must come back at their last version: the pull guarantee), then asks for
    each of its photos by HEAD, one after another as the handheld itself would."""
    net = run.kit.net
    net.stats = run.settle_stats
    until = time.monotonic() + 300
    gate = asyncio.Semaphore(run.profile.settle_concurrency)
    photos_of: dict[int, list[PhotoSent]] = defaultdict(list)
    for sent in run.kit.ledger.photos.values():
        photos_of[sent.device].append(sent)

    async def settle(h: Handheld) -> None:
        if h.token is None:
            return
        async with gate:
            for attempt in range(4):
                await h.pull_all(until)
                if h.own_pulled_ok():
                    break
                # A change committed above a pull's horizon arrives on a later pull.
                await asyncio.sleep(0.5 * (attempt + 1))
            else:
                run.settle_pull_misses += 1
            for sent in photos_of[h.spec.index]:
                answer = await h._call("attachment_head", "HEAD", ATTACHMENT + sent.photo.sha256, until=until,
                                       timeout=run.profile.pull_timeout)
                sent.head_after = answer.status_code if answer is not None else None

    await asyncio.gather(*(_guarded(run.kit, settle(h)) for h in run.handhelds))


# --- the audit -----------------------------------------------------------------------------

FIELDS = ("qualifier", "incident_type", "observed_at", "description", "action_taken", "persons_involved",
          "location", "accuracy_m", "fix_source", "photos")


def _same(name: str, expected, actual) -> bool:
    if name == "location":
        x, y = expected["coordinates"]
        return actual is not None and abs(actual.x - x) < 1e-9 and abs(actual.y - y) < 1e-9
    if name == "observed_at":
        return actual == datetime.fromisoformat(expected)
    if name == "accuracy_m":
        return actual is not None and abs(actual - expected) < 1e-9
    if name == "photos":
        return list(actual or []) == list(expected or [])
    return actual == expected


def _chunks(items: list, n: int = 5000):
    for i in range(0, len(items), n):
        yield items[i:i + n]


@dataclass
class Audit:
    lines: list[str]
    failures: list[str]
    lost: int  # sent without a receipt, photos answered as stored but not there
    duplicated: int  # receipts or version rows twice, mutations answered as new twice
    undelivered: int  # still in an outbox, or never answered: the client gave up

    @property
    def passed(self) -> bool:
        return not self.failures


def audit(run: Run, *, media_root: Path | None = None) -> Audit:
    """The store against the ledger (Django ORM, on the server's database)."""
    from fieldsync.sync.models import Attachment, Conflict, QuarantinedMutation, Receipt, RecordVersion
    from warden_app.models import Observation

    ledger = run.kit.ledger
    users = [h.spec.user_id for h in run.handhelds]
    lines, failures = [], []

    receipts = Counter()
    receipt_status: dict[str, str] = {}
    for mid, status in Receipt.objects.filter(user_id__in=users).values_list("mutation_id", "status").iterator():
        receipts[str(mid)] += 1
        receipt_status[str(mid)] = status
    sent = set(ledger.sent)
    lost = sorted(sent - set(receipts))
    stray = sorted(set(receipts) - sent)
    twice = sorted(m for m, n in receipts.items() if n > 1)
    not_ok = Counter(s for s in receipt_status.values() if s not in OK_OUTCOMES)
    unanswered = [m for m, s in ledger.sent.items() if s.outcome is None]
    unsent = sum(len(h.outbox) for h in run.handhelds)
    conflicts = Conflict.objects.filter(user_id__in=users).count()
    quarantined = Counter(QuarantinedMutation.objects.filter(user_id__in=users).values_list("code", flat=True))
    lines.append(f"mutations: sent {len(sent)}, receipts {sum(receipts.values())}, lost {len(lost)}, "
                 f"receipts twice {len(twice)}, receipts never sent {len(stray)}, unanswered {len(unanswered)}, "
                 f"never sent (client gave up) {unsent}")
    if lost:
        failures.append(f"{len(lost)} mutations sent without a receipt, e.g. {lost[:3]}")
    if twice:
        failures.append(f"{len(twice)} mutation ids with more than one receipt, e.g. {twice[:3]}")
    if stray:
        failures.append(f"{len(stray)} receipts for mutation ids never sent, e.g. {stray[:3]}")
    if unanswered:
        failures.append(f"{len(unanswered)} mutations never answered to their handheld, e.g. {unanswered[:3]}")
    if unsent:
        failures.append(f"{unsent} mutations never delivered: the handhelds gave up (see the error breakdown)")
    if not_ok or conflicts or quarantined:
        failures.append(f"unexpected outcomes (the handhelds edit only their own records): receipts "
                        f"{dict(not_ok)}, conflicts {conflicts}, quarantined {dict(quarantined)}")

    # Records: each once, with the values of the mutations the server applied, replayed in the
    # handheld's order, and one version row per such mutation.
    expected: dict[str, dict] = {}
    applied: dict[str, list[str]] = {}
    for rid, mids in ledger.by_record.items():
        mids = [m for m in mids if receipt_status.get(m) in OK_OUTCOMES]
        if not mids or ledger.sent[mids[0]].mutation["op"] != "create":
            continue
        data = _copy(ledger.sent[mids[0]].mutation["data"])
        for mid in mids[1:]:
            data.update(ledger.sent[mid].mutation["data"])
        expected[rid], applied[rid] = data, mids
    ids = list(expected)
    author = {h.spec.index: h.spec for h in run.handhelds}
    found = wrong_values = wrong_version = wrong_place = 0
    examples: list[str] = []
    final_version: dict[str, int] = {}
    for chunk in _chunks(ids):
        for row in Observation.objects.filter(id__in=chunk).values("id", "version", "author_id", "area_id",
                                                                  "deleted_at", *FIELDS):
            rid = str(row["id"])
            found += 1
            final_version[rid] = row["version"]
            spec = author[ledger.record_device[rid]]
            bad = [n for n in FIELDS if not _same(n, expected[rid].get(n, [] if n == "photos" else None), row[n])]
            if bad or row["deleted_at"] is not None:
                wrong_values += 1
                if len(examples) < 3:
                    examples.append(f"{rid}: {bad} differ")
            if row["version"] != len(applied[rid]):
                wrong_version += 1
                if len(examples) < 3:
                    examples.append(f"{rid}: version {row['version']}, {len(applied[rid])} mutations applied")
            if row["author_id"] != spec.user_id or row["area_id"] != spec.area_id:
                wrong_place += 1
    extra = Observation.objects.filter(author_id__in=users).count() - found
    versions_of: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for chunk in _chunks(ids):
        for rid, version, mid in RecordVersion.objects.filter(record_type="observation", record_id__in=chunk) \
                .values_list("record_id", "version", "mutation_id").iterator():
            versions_of[str(rid)].append((version, str(mid)))
    version_mismatch = sum(1 for rid in ids if [m for _, m in sorted(versions_of.get(rid, []))] != applied[rid])
    lines.append(f"records: {len(ids)} created, found {found}, missing {len(ids) - found}, extra {extra}, "
                 f"wrong values {wrong_values}, wrong version {wrong_version}, wrong author/area {wrong_place}, "
                 f"version rows not one per mutation {version_mismatch}")
    if found != len(ids) or extra:
        failures.append(f"records: {len(ids) - found} missing, {extra} not made by any mutation sent")
    if wrong_values or wrong_version or wrong_place or version_mismatch:
        failures.append(f"records not as their handhelds left them: {wrong_values} values, {wrong_version} versions, "
                        f"{wrong_place} author/area, {version_mismatch} version histories; {examples}")

    # The pull: each handheld's own records came back at their final version.
    behind = sum(1 for h in run.handhelds for rid in h.records
                 if rid in final_version and h.pulled.get(rid) != final_version[rid])
    lines.append(f"pull: own records not pulled at their final version {behind}")
    if behind:
        failures.append(f"pull: {behind} own records never came back at their final version")

    # Photos: stored under the sha256 of the bytes sent, with their size, type and pixels.
    photos = ledger.photos
    rows = {a["sha256"]: a for a in Attachment.objects.filter(sha256__in=list(photos)).values(
        "sha256", "size", "content_type", "width", "height", "file", "thumbnail")}
    missing = [s for s in photos if s not in rows]
    wrong = [s for s, a in rows.items() if (a["size"], a["content_type"], a["width"], a["height"])
             != (photos[s].size, photos[s].photo.content_type, photos[s].photo.width, photos[s].photo.height)]
    no_file = [s for s, a in rows.items() if media_root is not None and not (media_root / a["file"]).is_file()]
    head_missing = [s for s, p in photos.items() if p.head_after != 200]
    not_uploaded = [s for s, p in photos.items() if not p.stored]
    statuses = sum((p.statuses for p in photos.values()), Counter())
    thumbs = sum(1 for a in rows.values() if a["thumbnail"])
    lines.append(f"photos: sent {len(photos)}, stored {len(rows)}, missing {len(missing)}, wrong size/type/pixels "
                 f"{len(wrong)}, file missing {len(no_file) if media_root else 'not checked'}, HEAD not 200 "
                 f"{len(head_missing)}; answers {dict(statuses)}; thumbnails made so far {thumbs}")
    if missing or wrong or no_file or head_missing or not_uploaded:
        failures.append(f"photos: {len(missing)} missing, {len(wrong)} wrong, {len(no_file)} without a file, "
                        f"{len(head_missing)} not found by HEAD, {len(not_uploaded)} never uploaded")

    if ledger.anomalies:
        lines.append("client findings: " + "; ".join(f"{k} x{n}" for k, n in ledger.anomalies.most_common()))
        for kind, example in ledger.examples.items():
            lines.append(f"  e.g. {kind}: {example}")
        failures.append("client findings: " + ", ".join(ledger.anomalies))
    if run.settle_pull_misses:
        lines.append(f"settle: {run.settle_pull_misses} handhelds still behind on their own records after 4 pulls")
    answered_stored = {s for s, p in photos.items() if p.stored}
    return Audit(lines=lines, failures=failures, lost=len(lost) + len(answered_stored & set(missing)),
                 duplicated=len(twice) + version_mismatch + ledger.anomalies["answered as new twice (applied twice?)"],
                 undelivered=len(unanswered) + unsent + len(not_uploaded))


# --- the report ----------------------------------------------------------------------------

@dataclass
class LoadReport:
    text: str
    audit: Audit
    targets: dict[str, tuple[bool, str]]
    server_errors: int
    run: Run

    @property
    def targets_passed(self) -> bool:
        return all(ok for ok, _ in self.targets.values())


def _expected(endpoint: str, status) -> bool:
    """A normal answer: 2xx, and for HEAD also 404 (the photo is not there yet)."""
    return isinstance(status, int) and (200 <= status < 300 or (endpoint == "attachment_head" and status == 404))


def _latency_table(stats: Stats) -> list[str]:
    out = [f"  {'endpoint':<16}{'answered':>9}{'ok':>8}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'max ms':>9}"]
    for endpoint in ENDPOINTS:
        values = stats.latency.get(endpoint, [])
        if not values and not stats.outcomes.get(endpoint):
            continue
        ok = sum(n for k, n in stats.outcomes[endpoint].items() if _expected(endpoint, k))
        ms = [v * 1000 for v in values]
        out.append(f"  {endpoint:<16}{len(values):>9}{ok:>8}{percentile(ms, 50):>9.1f}{percentile(ms, 95):>9.1f}"
                   f"{percentile(ms, 99):>9.1f}{(max(ms) if ms else float('nan')):>9.1f}")
    return out


def _errors(stats: Stats) -> str:
    parts = []
    for endpoint in ENDPOINTS:
        bad = {k: n for k, n in stats.outcomes.get(endpoint, {}).items() if not _expected(endpoint, k)}
        if bad:
            parts.append(f"{endpoint}: " + ", ".join(f"{k} x{n}" for k, n in sorted(bad.items(), key=str)))
    return "; ".join(parts) or "none"


def report(run: Run, result: Audit, *, server: str) -> LoadReport:
    p, stats, ledger = run.profile, run.stats, run.kit.ledger
    elapsed = run.load_end - run.t0
    answered = [t for t in ledger.first_answer_at.values() if t <= run.load_end]
    photos = sum(1 for s in ledger.photos.values() if s.stored)
    lines = []
    if p.name == "steady":
        lines.append(f"fieldsync load, steady shift: {len(run.handhelds)} handhelds, {p.duration:.0f} s, "
                     f"{p.changes[0]}-{p.changes[1]} mutations every {p.push_every[0]:g}-{p.push_every[1]:g} s, "
                     f"pull every {p.pull_every:g} s, {p.enrol} enrol")
    else:
        lines.append(f"fieldsync load, morning storm: {len(run.handhelds)} handhelds x {p.mutations} queued "
                     f"mutations + {p.photos} photos ({p.photo_px[0]}x{p.photo_px[1]} JPEG), {p.enrol} enrol; "
                     f"outboxes built in {run.queued_in:.1f} s before the clock")
    lines.append(f"server {server}; client on the same {os.cpu_count()}-core machine")
    if run.cpu:
        # The client shares the machine: its share of the CPU is part of the figures.
        lines.append(f"CPU seconds during the load ({elapsed:.1f} s): "
                     + ", ".join(f"{name} {seconds:.1f}" for name, seconds in run.cpu.items()))
    lines.append(f"throughput: {len(answered)} mutations answered in {elapsed:.1f} s = "
                 f"{len(answered) / elapsed:.0f}/s; {stats.requests()} requests = {stats.requests() / elapsed:.1f}/s; "
                 f"{photos} photos stored")
    targets: dict[str, tuple[bool, str]] = {}
    if p.name == "storm":
        drained = [h.drained_at for h in run.handhelds]
        rounds = [h.round_done_at for h in run.handhelds if h.round_done_at]
        if all(drained):
            drain = max(drained) - run.t0
            lines.append(f"drain: every outbox and photo delivered in {drain:.1f} s "
                         f"({len(answered) / drain:.0f} mutations/s); rounds with their pull done in "
                         f"{(max(rounds) - run.t0) if rounds else float('nan'):.1f} s")
        else:
            drain = math.inf
            lines.append(f"drain: {sum(1 for d in drained if d is None)} handhelds never emptied their outbox")
        targets[f"drained within {p.target_drain_s:.0f} s"] = (drain <= p.target_drain_s, f"{drain:.1f} s")
    lines.append("latency (answered requests, retries counted one by one):")
    lines += _latency_table(stats)
    lines.append(f"errors: {_errors(stats)}")
    outcomes = Counter(s.outcome for s in ledger.sent.values())
    client = [f"retries {run.kit.net.retries}", *(f"{k} {n}" for k, n in sorted(run.kit.counters.items()))]
    lines.append(f"outcomes: {dict(outcomes)}; client: {', '.join(client)}; pulled {dict(run.kit.pull_ops)}")
    settle_bad = _errors(run.settle_stats)
    if settle_bad != "none":
        lines.append(f"settle-phase errors: {settle_bad}")
    lines.append("audit:")
    lines += [f"  {line}" for line in result.lines]
    for failure in result.failures:
        lines.append(f"  FAIL {failure}")
    lines.append(f"AUDIT {'PASS' if result.passed else 'FAIL'}")
    push_ms = [v * 1000 for v in stats.latency.get("push", [])]
    p95 = percentile(push_ms, 95)
    server_errors = stats.server_errors()
    targets["zero lost"] = (result.lost == 0 and result.undelivered == 0,
                            f"{result.lost} lost, {result.undelivered} undelivered")
    targets["zero duplicated"] = (result.duplicated == 0, f"{result.duplicated} duplicated")
    if p.name == "steady":
        targets[f"p95 push < {p.target_push_p95_ms:.0f} ms"] = (p95 < p.target_push_p95_ms, f"{p95:.1f} ms")
    else:
        targets["no 5xx"] = (server_errors == 0, f"{server_errors} answers 5xx")
    lines.append("targets: " + "; ".join(f"{name}: {'PASS' if ok else 'FAIL'} ({what})"
                                         for name, (ok, what) in targets.items()))
    return LoadReport(text="\n".join(lines), audit=result, targets=targets, server_errors=server_errors, run=run)


def run_load(base_url: str, world: World, profile: Profile, *, verify: bool | str = True,
             media_root: Path | None = None, server: str = "", stack: Stack | None = None,
             vacuum_every: float = 30.0) -> LoadReport:
    """Run a profile against `base_url`, then audit the store (the caller's Django database
    must be the server's) and build the report. With the `stack` serving it, the report
    also says how much CPU its processes used during the load. If the server's PostgreSQL
    runs without autovacuum, a stand-in vacuums the churning tables every `vacuum_every`
    seconds (0: never)."""
    stand_in = VacuumStandIn.if_needed(vacuum_every)
    try:
        run = asyncio.run(_run(base_url, world, profile, verify, stack))
    finally:
        if stand_in:
            stand_in.stop()
    result = report(run, audit(run, media_root=media_root), server=server or base_url)
    if stand_in:
        result.text += "\n" + stand_in.describe()
    return result


class VacuumStandIn(threading.Thread):
    """Autovacuum's work, for a PostgreSQL that runs without it (this machine's is set up
    for CI with `autovacuum = off`). Production runs autovacuum, and the migrations tell it
    to visit the tables a sync churns after a few thousand dead rows; without any vacuum a
    steady shift steps over ever more dead row versions, and measures that instead of the
    server. The tables are those the migrations tuned (their own autovacuum threshold).
    Plain VACUUM, not ANALYZE: it holds no transaction id, so, like autovacuum's own workers
    (which pulls leave out), it never holds back the pull horizon."""

    def __init__(self, every: float, tables: list[str], conninfo: str):
        super().__init__(daemon=True, name="vacuum-stand-in")
        self.every, self.tables, self.conninfo = every, tables, conninfo
        self.runs, self.seconds = 0, 0.0
        self._stopping = threading.Event()

    @classmethod
    def if_needed(cls, every: float) -> VacuumStandIn | None:
        from django.db import connection
        from psycopg.conninfo import make_conninfo

        if every <= 0:
            return None
        with connection.cursor() as c:
            c.execute("SELECT current_setting('autovacuum')::bool")
            if c.fetchone()[0]:
                return None
            c.execute("SELECT relname FROM pg_class WHERE relkind = 'r' AND EXISTS "
                      "(SELECT FROM unnest(reloptions) AS o WHERE o LIKE 'autovacuum_vacuum_threshold=%') "
                      "ORDER BY relname")
            tables = [name for (name,) in c.fetchall()]
        s = connection.settings_dict
        conninfo = make_conninfo(dbname=s["NAME"], user=s["USER"] or None, password=s["PASSWORD"] or None,
                                 host=s["HOST"] or None, port=s["PORT"] or None,
                                 application_name="fieldsync-load-vacuum")
        connection.close()  # idle until the audit; the pull horizon must not wait on it
        stand_in = cls(every, tables, conninfo)
        stand_in.start()
        return stand_in

    def run(self) -> None:
        import psycopg

        with psycopg.connect(self.conninfo, autocommit=True) as conn:
            while not self._stopping.wait(self.every):
                started = time.perf_counter()
                conn.execute("VACUUM " + ", ".join(self.tables))
                self.runs += 1
                self.seconds += time.perf_counter() - started

    def stop(self) -> None:
        self._stopping.set()
        self.join(timeout=120)

    def describe(self) -> str:
        return (f"autovacuum is off on this PostgreSQL: a stand-in vacuumed {', '.join(self.tables)} every "
                f"{self.every:g} s ({self.runs} runs, {self.seconds:.1f} s in all)")


# --- a server of our own -------------------------------------------------------------------

class Stack:
    """gunicorn with deploy/gunicorn.conf.py and `workers` workers, a Celery worker, and a Redis
    of their own on a free port (queues and throttle counters not shared with anyone else's
    run), all on loopback against `database_url`. Each process runs in its own session so
    `stop` ends it with its children, and nothing else."""

    def __init__(self, *, database_url: str, workers: int, work_dir: Path, celery_concurrency: int = 1,
                 env: dict[str, str] | None = None):
        self.database_url = database_url
        self.workers = workers
        self.work_dir = work_dir
        self.celery_concurrency = celery_concurrency
        self.extra_env = env or {}
        self.ports = {"http": free_port(), "redis": free_port()}
        self.media_root = work_dir / "media"
        self.processes = Processes(work_dir)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['http']}"

    def describe(self) -> str:
        return f"{self.base_url} (gunicorn {self.workers} workers, Celery worker x{self.celery_concurrency})"

    def env(self, application_name: str) -> dict[str, str]:
        env = child_env(
            database_url=self.database_url, application_name=application_name, redis_port=self.ports["redis"],
            media_root=self.media_root,
            # Plain http on loopback with no proxy in front: production's https redirect off.
            FIELDSYNC_HTTPS="false",
            # Every handheld of the run enrols from this one address.
            SYNC_ENROL_RATE="100000/min",
            GUNICORN_BIND=f"127.0.0.1:{self.ports['http']}", GUNICORN_WORKERS=str(self.workers),
            GUNICORN_ACCESS_LOG=str(self.work_dir / "gunicorn-access.log"), GUNICORN_LOG_LEVEL="warning",
            **self.extra_env,
        )
        env.setdefault("SECRET_KEY", "load-" + "k" * 60)
        return env

    def _wait(self, check, what: str, timeout: float, log: str) -> None:
        """Until `check` holds; a process that exits meanwhile ends the wait with its log."""
        def ready() -> bool:
            for name, process in self.processes.started.items():
                if process.poll() is not None:
                    raise RuntimeError(f"{name} exited ({process.returncode}):\n{self.processes.log(name)[-3000:]}")
            return check()

        wait_until(ready, what, timeout, lambda: self.processes.log(log)[-3000:])

    def start(self) -> Stack:
        self.media_root.mkdir(parents=True, exist_ok=True)
        self.processes.start("redis", redis_server_argv(self.ports["redis"], self.work_dir), dict(os.environ))
        self.processes.start("gunicorn", [sys.executable, "-m", "gunicorn", "-c",
                                          str(ROOT / "deploy" / "gunicorn.conf.py"), "fieldsync.wsgi"],
                             self.env("fieldsync-load"))
        self.processes.start("celery", [sys.executable, "-m", "celery", "-A", "fieldsync", "worker", "-l", "info",
                                        "-c", str(self.celery_concurrency), "-n", f"load-{uuid.uuid4().hex[:8]}@%h",
                                        "--without-gossip", "--without-mingle"], self.env("fieldsync-load-worker"))
        self._wait(lambda: httpx.get(self.base_url + "/readyz", timeout=2).status_code == 200, "gunicorn", 60,
                   "gunicorn")
        self._wait(lambda: " ready." in self.processes.log("celery"), "the Celery worker", 60, "celery")
        return self

    def cpu_seconds(self) -> dict[str, float]:
        """User + system CPU of each process group (gunicorn: master and workers), from /proc:
        the live members' own time, plus the leader's time of children it has reaped (workers
        recycled after max_requests, which a full-size run sees several times)."""
        tick = os.sysconf("SC_CLK_TCK")
        seconds = {}
        for name, process in self.processes.started.items():
            if name == "redis":
                continue
            pgid = process.pid
            seconds[name] = (_cpu_ticks(pgid, lambda fields, pgid=pgid: int(fields[2]) == pgid) or 0) / tick
        postgres = _postgres_cpu_ticks(self.database_url)
        if postgres is not None:
            seconds["postgres (cluster)"] = postgres / tick
        return seconds

    def stop(self) -> None:
        """TERM each process group (graceful), then KILL the groups still alive."""
        self.processes.stop_all()


def _cpu_ticks(leader: int, belongs: Callable[[list[str]], bool]) -> int | None:
    """User + system CPU of the live processes `belongs` picks (by their proc_stat fields),
    plus that of the children `leader` has reaped; None once `leader` is gone."""
    fields = proc_stat(leader)
    if fields is None:
        return None
    reaped = int(fields[13]) + int(fields[14])  # cutime, cstime
    return reaped + sum(int(f[11]) + int(f[12]) for _, f in live_processes() if belongs(f))


def _postgres_cpu_ticks(database_url: str) -> int | None:
    """CPU of the PostgreSQL cluster serving `database_url`, if it runs on this machine: its
    postmaster's live children (backends, autovacuum, WAL writer...) plus the backends it has
    reaped. None when the server is elsewhere (its processes are not in this /proc)."""
    import psycopg

    with psycopg.connect(database_url) as conn:
        backend = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
    fields = proc_stat(backend)
    if fields is None:
        return None
    postmaster = int(fields[1])  # ppid
    return _cpu_ticks(postmaster, lambda f: int(f[1]) == postmaster)
