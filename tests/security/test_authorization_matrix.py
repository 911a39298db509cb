"""Every endpoint, tried by every kind of caller, with the credentials that caller really holds.

One table (`matrix_rows`): each row is a request an attacker would send (an endpoint, a target
record, device, export… of their own, of their own area, of another area or organisation, or
one that does not exist) and, for every principal, the answer the policy of
shared/docs/product.md requires: a status code, a redirect target, and for reads that are
allowed, which records and which personal fields the answer may hold (judged by the oracle
below, written from product.md and not from warden_app/permissions.py).

The test walks Django's URL resolver and fails if a route has no row, so a new endpoint cannot
ship without someone deciding who may call it.

Each request runs in a savepoint rolled back afterwards, so a revoke, an erasure or a review by
one principal does not change what the next one finds.
"""
from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta

import pytest
from django.contrib import admin
from django.db import transaction
from django.urls import URLPattern, URLResolver, get_resolver, resolve

from tests.sync.conftest import IN_WIGAN, mutation, observation_data

from .conftest import SecurityWorld, png

pytestmark = pytest.mark.django_db

PRINCIPALS = ("anonymous", "warden", "pcso", "foreign_warden", "supervisor", "analyst", "partner", "dpo", "admin",
              "revoked", "analyst_token")
USERNAME = {"warden": "warden_leigh", "pcso": "pcso_leigh", "foreign_warden": "warden_wigan",
            "supervisor": "supervisor_leigh", "analyst": "analyst", "partner": "partner_fire", "dpo": "dpo",
            "admin": "admin"}
SIGNED_IN = tuple(USERNAME)
FIELD = ("warden", "pcso", "foreign_warden")
HANDHELDS = (*FIELD, "supervisor")
READERS = ("supervisor", "analyst", "admin")  # records API, exports, OGC (product.md)
STAFF = ("dpo", "admin")  # the admin site
PERSONAL = ("description", "persons_involved", "photos")


# --- the policy oracle (product.md), for what an allowed read may contain ----------------------

@dataclass(frozen=True)
class Rec:
    id: str
    author: str
    org: str
    area: str | None  # "leigh", "wigan" or None (outside every area)
    rejected: bool


def records_meta(world: SecurityWorld) -> dict[str, Rec]:
    from warden_app.models import Observation

    areas = {world.analysis.demo.areas["LEIGH-TC"].pk: "leigh", world.analysis.demo.areas["WIGAN-TC"].pk: "wigan"}
    return {
        str(o.pk): Rec(str(o.pk), o.author.username, o.organisation.slug, areas.get(o.area_id),
                       o.review_state == "rejected")
        for o in Observation.objects.select_related("author", "organisation")
    }


LEIGH_TEAM = {"warden_leigh", "pcso_leigh", "supervisor_leigh"}
HOME = {"warden_leigh": "leigh", "pcso_leigh": "leigh", "warden_wigan": "wigan", "supervisor_leigh": "leigh"}
ORG = {"warden_leigh": "wigan-council", "pcso_leigh": "greater-manchester-police", "warden_wigan": "wigan-council"}


def supervises(rec: Rec) -> bool:
    """The Leigh supervisor: all records of Leigh, and out-of-area ones of the Leigh team."""
    return rec.area == "leigh" or (rec.area is None and rec.author in LEIGH_TEAM)


def reader_sees(principal: str, rec: Rec) -> bool:
    """Records API and OGC: admins all; analysts all areas; supervisors their areas."""
    principal = "analyst" if principal == "analyst_token" else principal
    return {"admin": True, "analyst": rec.area is not None, "supervisor": supervises(rec)}.get(principal, False)


def handheld_sees(principal: str, rec: Rec) -> bool:
    """A handheld's pull: its own records, and those of its areas (the supervisor: as above)."""
    user = USERNAME[principal]
    if rec.author == user:
        return True
    if principal == "supervisor":
        return supervises(rec)
    return rec.area is not None and rec.area == HOME[user]


def personal_open(principal: str, rec: Rec) -> bool:
    """Personal details: author, admin, DPO, the reviewing supervisor, and field staff in their
    own organisation's records; analysts only under a purpose grant (none here)."""
    user = USERNAME.get("analyst" if principal == "analyst_token" else principal)
    if rec.author == user or principal in ("admin", "dpo"):
        return True
    if principal == "supervisor":
        return supervises(rec)
    if principal in FIELD:
        return rec.org == ORG[user] and rec.area == HOME[user]
    return False


def check_record(principal: str, rec: Rec, properties: dict, where: str) -> list[str]:
    """A record as the records API and OGC give it: personal fields null and listed as
    redacted unless open to this principal."""
    problems = []
    open_ = personal_open(principal, rec)
    for name in PERSONAL:
        redacted = name in properties.get("redacted", [])
        if open_ and redacted:
            problems.append(f"{where}: {name} of {rec.author}'s record redacted but should be open")
        if not open_ and (not redacted or properties.get(name) not in (None, [], "")):
            problems.append(f"{where}: {name} of {rec.author}'s ({rec.org}, {rec.area}) record leaked")
    return problems


def records_list_check(world, principal, response, body, *, filtered: bool = False) -> list[str]:
    """The list holds every record the principal may see (a filtered list: only such
    records), each redacted as it must be."""
    meta = records_meta(world)
    got = {r["id"]: r for r in body["results"]}
    wanted = {i for i, rec in meta.items() if reader_sees(principal, rec) and not rec.rejected}
    problems = [f"list: unexpected records {sorted(set(got) - wanted)}"] if set(got) - wanted else []
    if not filtered and wanted - set(got):
        problems.append(f"list: missing records {sorted(wanted - set(got))}")
    for record_id, row in got.items():
        if record_id in meta:
            problems += check_record(principal, meta[record_id], row, "list")
    return problems


def ogc_items_check(world, principal, response, body, *, filtered: bool = False) -> list[str]:
    meta = records_meta(world)
    got = {f["id"]: f["properties"] for f in body["features"]}
    wanted = {i for i, rec in meta.items() if reader_sees(principal, rec) and not rec.rejected}
    problems = [f"ogc: unexpected records {sorted(set(got) - wanted)}"] if set(got) - wanted else []
    if not filtered and wanted - set(got):
        problems.append(f"ogc: missing records {sorted(wanted - set(got))}")
    for record_id, props in got.items():
        problems += check_record(principal, meta[record_id], props, "ogc")
    return problems


def filtered(check: Callable) -> Callable:
    def run(world, principal, response, body) -> list[str]:
        return check(world, principal, response, body, filtered=True)
    return run


def detail_check(label: str) -> Callable:
    def check(world, principal, response, body) -> list[str]:
        rec = records_meta(world)[world.records[label]]
        props = body.get("properties", body)
        return check_record(principal, rec, props, f"detail {label}")
    return check


def pull_check(world, principal, response, body) -> list[str]:
    meta = records_meta(world)
    got = {c["id"]: c["data"] for c in body["changes"] if c["type"] == "observation" and c["op"] == "upsert"}
    wanted = {i for i, rec in meta.items() if handheld_sees(principal, rec)}
    problems = [f"pull: unexpected records {[meta[i].author + '/' + str(meta[i].area) for i in set(got) - wanted]}"
                ] if set(got) - wanted else []
    problems += [f"pull: missing records {sorted(wanted - set(got))}"] if wanted - set(got) else []
    for record_id, data in got.items():
        rec = meta[record_id]
        shown = {name for name in PERSONAL if name in data}
        if personal_open(principal, rec) and shown != set(PERSONAL):
            problems.append(f"pull: personal fields of {rec.author}'s record missing: {set(PERSONAL) - shown}")
        if not personal_open(principal, rec) and shown:
            problems.append(f"pull: {sorted(shown)} of {rec.author}'s ({rec.org}, {rec.area}) record leaked")
    return problems


def contains(*texts: str) -> Callable:
    def check(world, principal, response, body) -> list[str]:
        return [f"answer lacks {text!r}" for text in texts if text.encode() not in response.raw_body]
    return check


def lacks(*texts: str) -> Callable:
    def check(world, principal, response, body) -> list[str]:
        return [f"answer shows {text!r}" for text in texts if text.encode() in response.raw_body]
    return check


def both(*checks: Callable) -> Callable:
    def check(world, principal, response, body) -> list[str]:
        return [problem for c in checks for problem in c(world, principal, response, body)]
    return check


def push_result(status: str, code: str | None = None) -> Callable:
    def check(world, principal, response, body) -> list[str]:
        result = body["results"][0]
        if result["status"] != status or (code and result.get("code") != code):
            return [f"push: {result['status']}/{result.get('code')} instead of {status}/{code}"]
        return []
    check.refusal = status == "rejected"  # a denied write: no record may change
    return check


# --- the table ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Expect:
    status: int | tuple[int, ...]
    location: str | None = None  # a redirect must go here (prefix)
    check: Callable | None = None  # (world, principal, response, body) -> problems

    def statuses(self) -> tuple[int, ...]:
        return self.status if isinstance(self.status, tuple) else (self.status,)


@dataclass
class Row:
    method: str
    path: str
    # "web": the session cookie; "api": HTTP Basic; "device": the handheld's token (Basic for
    # roles without one); "enrol": no header, the caller's own password in the body.
    channel: str
    expect: dict[str, Expect]
    data: object = None
    content_type: str | None = None
    # Run after the request, inside its savepoint: the database as the request left it.
    after: Callable | None = None
    note: str = ""
    # The analyst's API token's answer where it differs from the analyst's (tokens' own API).
    token: Expect | None = None
    route: str = field(default="", init=False)


def outcome(default, **per_principal) -> dict[str, Expect]:
    """Expectations for every principal: `default`, unless named (int, tuple or Expect)."""
    def as_expect(value):
        return value if isinstance(value, Expect) else Expect(value)

    unknown = set(per_principal) - set(PRINCIPALS)
    assert not unknown, unknown
    # The analyst's personal API token (fsp_…) is a credential of the analysis API only
    # (records, exports, OGC); anywhere else it counts for nothing, as no credentials do.
    return {name: as_expect(per_principal.get(name, default)) for name in PRINCIPALS if name != "analyst_token"}


def only(allowed: dict[str, object], *, denied=403, anonymous=401) -> dict[str, Expect]:
    """`allowed` principals get their answer; every other signed-in caller `denied`; no
    credentials or a revoked handheld's token `anonymous`."""
    return outcome(denied, anonymous=anonymous, revoked=anonymous, **allowed)


def to_login(prefix: str) -> Expect:
    return Expect(302, location=prefix)


DESK_LOGIN = to_login("/review/login/?next=")
ADMIN_LOGIN = to_login("/admin/login/?next=")
FRONT_DOOR_LOGIN = to_login("/login/?next=")


def admin_outcome(**staff) -> dict[str, Expect]:
    """The admin site: the anonymous (and a revoked handheld's token, no cookie) go to its
    sign-in; a signed-in non-staff user gets the front door's 403 page; staff as named."""
    return outcome(403, anonymous=ADMIN_LOGIN, revoked=ADMIN_LOGIN, **staff)


def door(*allowed: str) -> dict[str, Expect]:
    """A workspace behind door_required: the anonymous go to the front door's sign-in, the
    roles it opens to get the page, every other role the 403 page."""
    return outcome(403, anonymous=FRONT_DOOR_LOGIN, revoked=FRONT_DOOR_LOGIN, **dict.fromkeys(allowed, 200))


def desk(allowed: object, *, anonymous: Expect = DESK_LOGIN) -> dict[str, Expect]:
    """Review desk pages: supervisors only; the anonymous (and a revoked handheld's token,
    which is no cookie) are sent to the desk's login page, every other role gets 403."""
    return outcome(403, anonymous=anonymous, revoked=anonymous, supervisor=allowed)


DOOR_LOGIN = to_login("/login/?next=")


def dpo_page(allowed: object) -> dict[str, Expect]:
    """The DPO's pages (/dpo/): the DPO only; admins and every other role get the 403 page,
    the anonymous (and a handheld's token, which is no cookie) the front door's sign-in."""
    return outcome(403, anonymous=DOOR_LOGIN, revoked=DOOR_LOGIN, dpo=allowed)


def last_closed_month() -> str:
    first = date.today().replace(day=1)
    return (first - timedelta(days=40)).strftime("%Y-%m")


def state_unchanged(label: str) -> Callable:
    def after(world, principal) -> list[str]:
        from warden_app.models import Observation

        state = Observation.objects.get(pk=world.records[label]).review_state
        return [f"{label} is now {state}"] if state != "submitted" else []
    return after


def record_unchanged(label: str, *, allowed: tuple[str, ...] = ()) -> Callable:
    """Nobody but the `allowed` principals got "HACKED" into the record's description."""
    def after(world, principal) -> list[str]:
        from warden_app.models import Observation

        if principal in allowed:
            return []
        value = Observation.objects.get(pk=world.records[label]).description
        return [f"{label}.description changed to {value!r}"] if value == "HACKED" else []
    return after


def push_photo_refused(world, principal, response, body) -> list[str]:
    result = body["results"][0]
    codes = [e["code"] for e in result.get("errors", {}).get("photos", [])]
    if result["status"] != "rejected" or codes != ["photo_unavailable"]:
        return [f"push: {result['status']}/{result.get('code')} {result.get('errors')} instead of photo_unavailable"]
    return []


def photo_named_once(label: str) -> Callable:
    """Only the photo's own record names it."""
    def after(world, principal) -> list[str]:
        from warden_app.models import Observation

        named = Observation.objects.filter(photos__contains=[world.ids[label]]).count()
        return [f"{named} records name {label}"] if named != 1 else []
    return after


def tokens_listed(world) -> Callable:
    """The caller's own tokens, never the secret: the analyst sees their token's prefix, nobody
    else sees it."""
    def check(world_, principal, response, body) -> list[str]:
        token = world.ids["api_token_analyst"]
        prefixes = [t["prefix"] for t in body["tokens"]]
        problems = [f"the token itself is in the answer to {principal}"] if token.encode() in response.raw_body else []
        if (token[:10] in prefixes) != (principal in ("analyst", "analyst_token")):
            problems.append(f"{principal} sees token prefixes {prefixes}")
        return problems
    return check


def token_alive_unless(token_id: int, *revokers: str) -> Callable:
    def after(world, principal) -> list[str]:
        from warden_app.models import ApiToken

        revoked = ApiToken.objects.get(pk=token_id).revoked_at is not None
        if revoked != (principal in revokers):
            return [f"the analyst's token {'was' if revoked else 'was not'} revoked by {principal}"]
        return []
    return after


def matrix_rows(world: SecurityWorld) -> list[Row]:
    r, ids = world.records, world.ids
    obs = "/api/v1/records/observation"
    records_list = only({p: Expect(200, check=records_list_check) for p in READERS})
    ogc_items = only({p: Expect(200, check=ogc_items_check) for p in READERS})
    bogus = uuid.uuid4()
    update = mutation("observation", "update", r["council_leigh"], {"description": "HACKED"}, base_version=1)
    collide = mutation("observation", "create", r["council_leigh"], observation_data(description="HACKED"))
    on_device = dict(anonymous=401, revoked=401, analyst=401, partner=401, dpo=401, admin=401)
    photo_sha = ids["photo_leigh"]
    new_photo = png((1, 2, 3))
    new_sha = hashlib.sha256(new_photo).hexdigest()
    partner_params = f"?boundary_set=partnership-areas&period={last_closed_month()}"
    aggregate = only({p: 200 for p in ("supervisor", "analyst", "partner", "admin")})
    dpo_only = only({"dpo": 200})
    from warden_app.models import ApiToken
    from warden_app.services.api_tokens import api_token_hash

    analyst_token_id = ApiToken.objects.get(token_hash=api_token_hash(ids["api_token_analyst"])).pk
    from warden_app.models import AccessLogEntry

    first_log_entry = AccessLogEntry.objects.order_by("id").values_list("id", flat=True).first()
    rows = [
        # Public: health probes, the API's description, the handheld app's shell.
        Row("get", "/healthz", "api", outcome(200)),
        Row("get", "/readyz", "api", outcome(200)),
        Row("get", "/favicon.ico", "web", outcome(302), note="a redirect to the static icon"),
        Row("get", "/api/schema/", "api", outcome(200), note="the API's description is public (no data)"),
        Row("get", "/api/docs/", "web", outcome(200)),
        Row("get", "/api/redoc/", "web", outcome(200)),
        # The front door: sign-in for the anonymous, the home page of doors for anyone signed
        # in; each workspace behind it opens to its roles (tests/warden/test_front_door.py).
        Row("get", "/", "web", outcome(200)),
        Row("get", "/login/", "web", outcome(200)),
        Row("post", "/logout/", "web", outcome(to_login("/"))),
        Row("get", "/analysis/", "web", door("supervisor", "analyst", "admin")),
        Row("get", "/partner/", "web", door("supervisor", "analyst", "partner", "admin")),
        Row("get", "/dpo/", "web", door("dpo")),
        Row("get", "/warden/", "web", outcome(200)),
        Row("get", "/warden/manifest.webmanifest", "web", outcome(200)),
        Row("get", "/warden/sw.js", "web", outcome(200)),
        # Base-map tiles are public geography (docs/maps.md); no base map imported: 404 for all.
        Row("get", "/tiles/0123456789abcdef/1/0/0.png", "web", outcome(404)),

        # Enrolment: each caller sends their own password (the anonymous and the thief a guess).
        Row("post", "/api/v1/devices/enrol", "enrol",
            outcome(403, anonymous=401, revoked=401, **dict.fromkeys(HANDHELDS, 201))),
        # Revoking: supervisors their team's handhelds, admins any; others see nothing.
        Row("post", f"/api/v1/devices/{ids['device_warden_leigh']}/revoke", "api",
            only({"supervisor": 200, "admin": 200, "warden": 403}, denied=404)),
        Row("post", f"/api/v1/devices/{ids['device_warden_wigan']}/revoke", "api",
            only({"admin": 200, "foreign_warden": 403}, denied=404), note="another team's device"),
        Row("post", f"/api/v1/devices/{bogus}/revoke", "api", only({}, denied=404)),

        # The sync protocol: device tokens only; a revoked one is told to wipe.
        Row("get", "/api/v1/sync/manifest", "device", outcome(200, **on_device)),
        Row("get", "/api/v1/sync/status", "device", outcome(200, **on_device)),
        Row("get", "/api/v1/sync/pull", "device", outcome(Expect(200, check=pull_check), **on_device)),
        Row("post", "/api/v1/sync/push", "device",
            outcome(Expect(200, check=push_result("rejected", "permission_denied")), **on_device,
                    warden=Expect(200, check=push_result("applied")),
                    supervisor=Expect(200, check=push_result("applied"))),
            data={"mutations": [update]}, content_type="application/json",
            after=record_unchanged("council_leigh", allowed=("warden", "supervisor")),
            note="edit another user's record (the author and its supervisor may)"),
        Row("post", "/api/v1/sync/push", "device",
            outcome(Expect(200, check=push_result("rejected", "id_exists")), **on_device),
            data={"mutations": [collide]}, content_type="application/json",
            after=record_unchanged("council_leigh"), note="create over an existing record's id"),
        # Mass assignment: the server sets author, organisation, area and review state.
        Row("post", "/api/v1/sync/push", "device",
            outcome(Expect(200, check=push_result("rejected")), **on_device),
            data={"mutations": [mutation("observation", "update", r["council_leigh"],
                                         {"review_state": "approved"}, base_version=1)]},
            content_type="application/json", after=state_unchanged("council_leigh"),
            note="approve a record through the sync API"),
        Row("post", "/api/v1/sync/push", "device",
            outcome(Expect(200, check=push_result("rejected")), **on_device),
            data={"mutations": [mutation("observation", "create", uuid.uuid4(), observation_data(
                author="pcso_leigh", organisation=world.analysis.demo.organisations["Greater Manchester Police"].pk,
                area=world.analysis.demo.areas["WIGAN-TC"].pk, review_state="approved"))]},
            content_type="application/json", note="create a record as someone else, elsewhere, approved"),
        Row("post", "/api/v1/sync/push", "device",
            outcome(Expect(200, check=push_result("rejected", "permission_denied")), **on_device,
                    foreign_warden=Expect(200, check=push_result("applied"))),
            data={"mutations": [mutation("observation", "create", uuid.uuid4(),
                                         observation_data(at=IN_WIGAN))]},
            content_type="application/json", note="record in the Wigan area"),
        Row("put", f"/api/v1/attachments/{new_sha}", "device", outcome(201, **on_device),
            data=new_photo, content_type="image/png"),
        # HEAD confirms a photo only to who uploaded it or may pull a record naming it with its
        # photos (a council warden's photos are personal: not the police PCSO's, product.md);
        # to anyone else 404, as for one never stored.
        Row("head", f"/api/v1/attachments/{photo_sha}", "device",
            outcome(404, **on_device, warden=200, supervisor=200), note="a Leigh warden's photo"),
        Row("head", f"/api/v1/attachments/{ids['photo_wigan']}", "device",
            outcome(404, **on_device, foreign_warden=200), note="a Wigan warden's photo"),
        Row("head", f"/api/v1/attachments/{hashlib.sha256(b'never stored').hexdigest()}", "device",
            outcome(404, **on_device)),
        # GET hands the bytes (and the thumbnail) to exactly those HEAD answers 200 (added for the
        # handheld's sent photos), logged as a consultation of the record naming it.
        Row("get", f"/api/v1/attachments/{photo_sha}", "device",
            outcome(404, **on_device, warden=200, supervisor=200), note="a Leigh warden's photo"),
        Row("get", f"/api/v1/attachments/{photo_sha}/thumbnail", "device",
            outcome(404, **on_device, warden=200, supervisor=200), note="a Leigh warden's photo's thumbnail"),
        Row("get", f"/api/v1/attachments/{ids['photo_wigan']}", "device",
            outcome(404, **on_device, foreign_warden=200), note="a Wigan warden's photo"),
        Row("get", f"/api/v1/attachments/{hashlib.sha256(b'never stored').hexdigest()}/thumbnail", "device",
            outcome(404, **on_device)),
        # A record may name only photos its author may see (or not stored and named by nobody).
        Row("post", "/api/v1/sync/push", "device",
            outcome(Expect(200, check=push_photo_refused), **on_device,
                    foreign_warden=Expect(200, check=push_result("rejected", "permission_denied"))),
            data={"mutations": [mutation("observation", "create", uuid.uuid4(),
                                         observation_data(photos=[ids["photo_wigan"]]))]},
            content_type="application/json", after=photo_named_once("photo_wigan"),
            note="name another area's stored photo in one's own record"),

        # Personal API tokens: every signed-in user lists, makes and revokes their own only; a
        # token lists and revokes (itself) but never makes one.
        Row("get", "/api/v1/tokens", "api",
            only({p: Expect(200, check=tokens_listed(world)) for p in SIGNED_IN}),
            token=Expect(200, check=tokens_listed(world))),
        Row("post", "/api/v1/tokens", "api", only(dict.fromkeys(SIGNED_IN, 201)),
            data={"name": "new"}, content_type="application/json", token=Expect(403)),
        Row("delete", f"/api/v1/tokens/{analyst_token_id}", "api", only({"analyst": 200}, denied=404),
            token=Expect(200), after=token_alive_unless(analyst_token_id, "analyst", "analyst_token")),
        Row("get", "/review/tokens/", "web", outcome(200, anonymous=DESK_LOGIN, revoked=DESK_LOGIN)),
        Row("post", "/review/tokens/", "web", outcome(200, anonymous=DESK_LOGIN, revoked=DESK_LOGIN),
            data={"name": "new"}),
        Row("post", f"/review/tokens/{analyst_token_id}/revoke", "web",
            outcome(404, anonymous=DESK_LOGIN, revoked=DESK_LOGIN, analyst=to_login("/review/tokens/")),
            after=token_alive_unless(analyst_token_id, "analyst")),

        # Records API (analysts, supervisors, admins); every id of every kind of record.
        Row("get", obs, "api", records_list),
        Row("post", obs, "api", records_list, data={}, content_type="application/json"),
        Row("get", f"{obs}/{r['council_leigh']}", "api",
            only({p: Expect(200, check=detail_check("council_leigh")) for p in READERS})),
        Row("get", f"{obs}/{r['police_leigh']}", "api",
            only({p: Expect(200, check=detail_check("police_leigh")) for p in READERS}),
            note="another organisation's personal fields"),
        Row("get", f"{obs}/{r['council_wigan']}", "api",
            only({"supervisor": 404, "analyst": Expect(200, check=detail_check("council_wigan")),
                  "admin": Expect(200, check=detail_check("council_wigan"))}), note="another area"),
        Row("get", f"{obs}/{r['council_outside']}", "api",
            only({"supervisor": Expect(200, check=detail_check("council_outside")), "analyst": 404,
                  "admin": Expect(200, check=detail_check("council_outside"))}), note="outside every area"),
        Row("get", f"{obs}/{bogus}", "api", only(dict.fromkeys(READERS, 404))),
        Row("get", f"{obs}?area={world.analysis.demo.areas['WIGAN-TC'].pk}&include_rejected=true", "api",
            only({p: Expect(200, check=filtered(records_list_check)) for p in READERS}),
            note="a filter naming another area widens nothing"),
        Row("get", f"/api/v1/records/street_audit/{r['audit']}", "api", only(dict.fromkeys(READERS, 200))),
        Row("get", "/api/v1/records/nonsense", "api", only(dict.fromkeys(READERS, 404))),

        # Exports: only their owner sees or fetches one.
        Row("post", "/api/v1/exports", "api", only(dict.fromkeys(READERS, 202)),
            data={"type": "observation", "format": "csv"}, content_type="application/json"),
        Row("get", "/api/v1/exports", "api",
            only({p: Expect(200, check=(contains(ids["export_analyst"]) if p == "analyst"
                                        else lacks(ids["export_analyst"]))) for p in READERS})),
        Row("get", f"/api/v1/exports/{ids['export_analyst']}", "api",
            only({"analyst": 200, "supervisor": 404, "admin": 404})),
        Row("get", f"/api/v1/exports/{ids['export_analyst']}/file", "api",
            only({"analyst": 200, "supervisor": 404, "admin": 404})),

        # Aggregates: inside the partnership and partner viewers; partners' fixed outputs.
        Row("get", "/api/v1/aggregates/boundary-sets", "api", aggregate),
        Row("get", "/api/v1/aggregates/counts" + partner_params, "api", aggregate),
        Row("get", "/api/v1/aggregates/hotspots" + partner_params, "api", aggregate),
        Row("get", "/api/v1/aggregates/counts?boundary_set=partnership-areas&start=2026-01-01T00:00:00Z"
                   "&end=2026-01-02T00:00:00Z", "api", {**aggregate, "partner": Expect(400)},
            note="free filters that could be differenced: not for partners"),

        # The DPO's API: nobody else, admins included.
        Row("get", "/api/v1/dpo/access-log", "api", dpo_only),
        Row("get", "/api/v1/dpo/subjects?name=driver&purpose=SAR-1", "api", dpo_only),
        Row("patch", f"/api/v1/dpo/records/observation/{r['police_leigh']}", "api", dpo_only,
            data={"description": "HACKED", "justification": "SAR-1"}, content_type="application/json",
            after=record_unchanged("police_leigh", allowed=("dpo",))),
        Row("post", f"/api/v1/dpo/records/observation/{r['police_leigh']}/restriction", "api", dpo_only,
            data={"restricted": True, "justification": "SAR-1"}, content_type="application/json"),
        Row("post", f"/api/v1/dpo/records/observation/{r['police_leigh']}/erasure", "api", dpo_only,
            data={"justification": "SAR-1"}, content_type="application/json"),

        # Escalations: the area's supervisor and analysts; the requester and the DPO follow it.
        Row("post", "/api/v1/escalations", "api", only({"supervisor": 202, "analyst": 202}, denied=404),
            data={"record_type": "observation", "record_id": r["council_leigh"], "endpoint": ids["endpoint"],
                  "purpose": "ASB case 2"}, content_type="application/json"),
        Row("post", "/api/v1/escalations", "api", only({"analyst": 202}, denied=404),
            data={"record_type": "observation", "record_id": r["council_wigan"], "endpoint": ids["endpoint"],
                  "purpose": "ASB case 3"}, content_type="application/json", note="another area"),
        Row("get", "/api/v1/escalations/endpoints", "api", only(dict.fromkeys(SIGNED_IN, 200)),
            note="names of partner systems, no secrets: any signed-in user"),
        Row("get", f"/api/v1/escalations/{ids['escalation']}", "api",
            only({"supervisor": 200, "analyst": 200, "dpo": 200}, denied=404)),

        # OGC API - Features: the records API's readers, same scope and redaction.
        Row("get", "/ogc/", "api", only(dict.fromkeys(READERS, 200))),
        Row("get", "/ogc/conformance", "api", only(dict.fromkeys(READERS, 200))),
        Row("get", "/ogc/api", "api", only(dict.fromkeys(READERS, 200))),
        Row("get", "/ogc/collections", "api", only(dict.fromkeys(READERS, 200))),
        Row("get", "/ogc/collections/observations", "api", only(dict.fromkeys(READERS, 200))),
        Row("get", "/ogc/collections/observations/items", "api", ogc_items),
        Row("get", f"/ogc/collections/observations/items?area={world.analysis.demo.areas['WIGAN-TC'].pk}", "api",
            only({p: Expect(200, check=filtered(ogc_items_check)) for p in READERS})),
        Row("get", f"/ogc/collections/observations/items/{r['police_leigh']}", "api",
            only({p: Expect(200, check=detail_check("police_leigh")) for p in READERS})),
        Row("get", f"/ogc/collections/observations/items/{r['council_wigan']}", "api",
            only({"supervisor": 404, "analyst": Expect(200, check=detail_check("council_wigan")),
                  "admin": Expect(200, check=detail_check("council_wigan"))})),

        # The review desk: supervisors, their areas and teams only.
        Row("get", "/review/login/", "web", outcome(200)),
        Row("post", "/review/logout/", "web", outcome(to_login("/review/login/"))),
        Row("get", "/review/", "web",
            desk(Expect(200, check=both(contains(r["council_leigh"]), lacks(r["council_wigan"]))))),
        Row("get", f"/review/records/observation/{r['police_leigh']}/", "web",
            desk(Expect(200, check=contains("Music from a parked car", "driver, 20s"))),
            note="a PCSO's record: its reviewing supervisor sees its personal fields"),
        Row("get", f"/review/records/observation/{r['council_wigan']}/", "web", desk(404)),
        Row("get", f"/review/records/street_audit/{r['audit']}/", "web", desk(200)),
        Row("post", f"/review/records/observation/{r['council_leigh']}/review", "web", desk(302),
            data={"decision": "approved", "note": "ok", "version": 1}),
        Row("post", f"/review/records/observation/{r['council_wigan']}/review", "web", desk(404),
            data={"decision": "approved", "note": "ok", "version": 1}),
        Row("post", f"/review/records/observation/{r['own_supervisor']}/review", "web", desk(404),
            data={"decision": "approved", "note": "ok", "version": 1}, after=state_unchanged("own_supervisor"),
            note="nobody approves their own work"),
        Row("get", f"/review/records/observation/{r['photo_leigh']}/photos/{ids['photo_leigh']}", "web", desk(200)),
        Row("get", f"/review/records/observation/{r['photo_wigan']}/photos/{ids['photo_wigan']}", "web", desk(404)),
        Row("get", f"/review/records/observation/{r['photo_leigh']}/photos/{ids['photo_wigan']}", "web", desk(404),
            note="another area's photo through a record of one's own area"),
        Row("get", f"/review/records/observation/{r['photo_leigh']}/photos/{ids['photo_leigh']}/thumb", "web",
            desk(200)),
        Row("get", f"/review/records/observation/{r['photo_leigh']}/photos/{ids['photo_wigan']}/thumb", "web",
            desk(404)),
        Row("get", "/review/conflicts/", "web",
            desk(Expect(200, check=both(contains(ids["conflict_leigh"]), lacks(ids["conflict_wigan"]))))),
        Row("get", f"/review/conflicts/{ids['conflict_leigh']}/", "web", desk(200)),
        Row("get", f"/review/conflicts/{ids['conflict_wigan']}/", "web", desk(404)),
        Row("post", f"/review/conflicts/{ids['conflict_wigan']}/", "web", desk(404), data={"note": "x"}),
        Row("get", "/review/quarantine/", "web",
            desk(Expect(200, check=both(contains(f"/review/quarantine/{ids['quarantine_leigh']}/"),
                                        lacks(f"/review/quarantine/{ids['quarantine_wigan']}/"))))),
        Row("get", f"/review/quarantine/{ids['quarantine_leigh']}/", "web", desk(200)),
        Row("get", f"/review/quarantine/{ids['quarantine_wigan']}/", "web", desk(404)),
        Row("post", f"/review/quarantine/{ids['quarantine_wigan']}/", "web", desk(404), data={"note": "x"}),
        Row("get", "/review/devices/", "web",
            desk(Expect(200, check=both(contains(ids["device_warden_leigh"]), lacks(ids["device_warden_wigan"]))))),
        Row("post", f"/review/devices/{ids['device_warden_leigh']}/revoke", "web", desk(302)),
        Row("post", f"/review/devices/{ids['device_warden_wigan']}/revoke", "web", desk(404)),

        # The DPO's pages: the DPO only, admins included in the refusal.
        Row("get", "/dpo/", "web", dpo_page(200)),
        Row("get", f"/dpo/entries/{first_log_entry}/", "web", dpo_page(200)),
        Row("get", "/dpo/verification/", "web", dpo_page(200)),
        Row("get", "/dpo/subjects/", "web", dpo_page(200)),
        Row("post", "/dpo/subjects/", "web", dpo_page(Expect(200, check=contains("driver, 20s"))),
            data={"description": "driver", "purpose": "SAR-1"}),
        Row("post", "/dpo/subjects/export/", "web", dpo_page(Expect(200, check=contains("driver, 20s"))),
            data={"description": "driver", "purpose": "SAR-1"}),
        Row("post", f"/dpo/records/observation/{r['police_leigh']}/rectify/", "web", dpo_page(200),
            data={"description": "HACKED", "justification": "SAR-1", "confirm": "yes"},
            after=record_unchanged("police_leigh", allowed=("dpo",))),
        Row("post", f"/dpo/records/observation/{r['police_leigh']}/restrict/", "web", dpo_page(200),
            data={"restricted": "true", "justification": "SAR-1", "confirm": "yes"}),
        Row("post", f"/dpo/records/observation/{r['police_leigh']}/erase/", "web", dpo_page(200),
            data={"fields": ["description"], "justification": "SAR-1", "confirm": "yes"}),

        # The analyst workspace: the records API's readers; a record outside the reader's
        # scope is the same 404 page as one that does not exist; tokens only ever your own.
        Row("get", "/analysis/?qualifier=nuisance", "web", door(*READERS)),
        Row("get", "/analysis/?polygon=POINT(0%200)", "web", {**door(*READERS), **dict.fromkeys(READERS, Expect(400))}),
        Row("get", f"/analysis/records/observation/{r['council_leigh']}", "web", door(*READERS)),
        Row("get", f"/analysis/records/observation/{r['council_outside']}", "web",
            {**door(*READERS), "analyst": Expect(404)}, note="outside every area the analyst may analyse"),
        Row("get", f"/analysis/records/observation/{bogus}", "web", {**door(), **dict.fromkeys(READERS, Expect(404))}),
        Row("get", "/analysis/exports/", "web", door(*READERS)),
        Row("post", "/analysis/exports/", "web", {**door(), **dict.fromkeys(READERS, Expect(400))},
            data={"type": "observation", "format": "exe"}),
        Row("get", "/analysis/connect/", "web", door(*READERS)),
        Row("post", "/analysis/connect/tokens", "web", door(*READERS), data={"name": "matrix"}),
        Row("post", f"/analysis/connect/tokens/{analyst_token_id}/revoke", "web",
            {**door(), **dict.fromkeys(READERS, Expect(404)), "analyst": Expect(302)},
            after=token_alive_unless(analyst_token_id, "analyst")),
        Row("get", "/analysis/grants/", "web", door(*READERS)),
        Row("post", "/analysis/grants/", "web",
            {**door(), "analyst": Expect(302), "supervisor": Expect(400), "admin": Expect(400)},
            data={"record_type": "observation", "fields": ["description"], "purpose": "matrix",
                  "valid_until": "2099-01-01"}, note="only analysts ask (others: the form again, nothing made)"),
    ]
    return rows + admin_rows(world)


# --- the admin site ------------------------------------------------------------------------------

# What the admin role may do per model (product.md: users, teams, areas, organisations, devices,
# forms, retention settings; records and sync outcomes read-only; never the access log).
MANAGE = {"changelist", "add", "change", "delete", "history"}
READ = {"changelist", "change", "history"}
ADMIN_RIGHTS = {
    "organisation": MANAGE, "user": MANAGE, "boundaryset": MANAGE, "area": MANAGE, "team": MANAGE,
    "formdefinition": MANAGE, "partnerendpoint": MANAGE, "retentionperiod": MANAGE,
    "group": READ | {"add"},  # role groups are read-only to admins and cannot be deleted
    "device": READ,  # devices come from enrolment and are revoked, never added or deleted
    "receipt": READ, "conflict": READ, "quarantinedmutation": READ,
    "observation": READ, "streetaudit": READ, "audititem": READ, "escalation": READ,
    "accesslogentry": set(),
    "purposegrantrequest": READ,  # decided through the service, never added or deleted by hand
    # The sharing protocol. The target is the default clause, which is changed, never deleted.
    "sharingrule": MANAGE - {"delete"},
    "purposegrant": READ | {"add"},  # issued, then only revoked (an action), never edited or deleted
    "apitoken": READ,  # made by their owner (the secret shown once), revoked by an action
}
DPO_RIGHTS = {"accesslogentry": READ}


def admin_target(world: SecurityWorld, model) -> object:
    """The object each model's change/delete/history pages are asked about."""
    from django.contrib.auth.models import Group

    name = model._meta.model_name
    if name == "user":
        return world.users["warden_leigh"].pk
    if name == "group":
        return Group.objects.get(name="warden").pk
    if name == "device":
        return world.ids["device_warden_leigh"]
    if name == "observation":
        return world.records["police_leigh"]
    instance = model._default_manager.order_by("pk").first()
    assert instance is not None, f"the world has no {name} to ask the admin about"
    return instance.pk


def admin_page(allowed_for: dict[str, bool], *, check: Callable | None = None,
               redirect: bool = False) -> dict[str, Expect]:
    """Admin site pages: the anonymous and a revoked handheld go to the admin's login page,
    non-staff get the 403 page; staff get the page (200, or 302 for a saved form) or 403."""
    expect = admin_outcome()
    for principal in STAFF:
        allowed = Expect(302) if redirect else Expect(200, check=check)
        expect[principal] = allowed if allowed_for.get(principal) else Expect(403)
    return expect


def admin_rows(world: SecurityWorld) -> list[Row]:
    from django.contrib.auth.models import Group

    rows = [
        Row("get", "/admin/", "web", admin_outcome(dpo=200, admin=200)),
        Row("get", "/admin/login/", "web", outcome(200, dpo=to_login("/admin/"), admin=to_login("/admin/"))),
        # admin_view sends a non-staff caller of the logout page to the admin's index.
        Row("post", "/admin/logout/", "web", outcome(to_login("/admin/"), dpo=200, admin=200)),
        Row("get", "/admin/password_change/", "web", admin_outcome(dpo=200, admin=200)),
        Row("get", "/admin/password_change/done/", "web", admin_outcome(dpo=200, admin=200)),
        Row("get", "/admin/autocomplete/", "web", admin_outcome(dpo=403, admin=403)),
        Row("get", "/admin/jsi18n/", "web", admin_outcome(dpo=200, admin=200)),
        Row("get", "/admin/sync/", "web", admin_outcome(dpo=404, admin=200)),
        Row("get", "/admin/warden_app/", "web", admin_outcome(dpo=200, admin=200)),
        Row("get", "/admin/no-such-page/", "web", admin_outcome(dpo=404, admin=404)),
    ]
    from django.contrib.contenttypes.models import ContentType

    from warden_app.models import Observation

    ct = ContentType.objects.get_for_model(Observation).pk
    rows.append(Row("get", f"/admin/r/{ct}/{world.records['police_leigh']}/", "web",
                    admin_outcome(dpo=404, admin=404), note="no record has a public page"))
    personal_text = lacks("Music from a parked car", "driver, 20s")
    for model in admin.site._registry:
        name, app = model._meta.model_name, model._meta.app_label
        target = admin_target(world, model)
        base = f"/admin/{app}/{name}/"
        pages = {"changelist": base, "add": base + "add/", "change": f"{base}{target}/change/",
                 "delete": f"{base}{target}/delete/", "history": f"{base}{target}/history/"}
        for page, path in pages.items():
            allowed = {"admin": page in ADMIN_RIGHTS[name], "dpo": page in DPO_RIGHTS.get(name, set())}
            # Admin pages leave personal fields out: they write no consultation log.
            rows.append(Row("get", path, "web", admin_page(allowed, check=personal_text), note=f"{name} {page}"))
        rows.append(Row("get", f"{base}{target}/", "web",
                        admin_outcome(dpo=to_login(pages["change"]), admin=to_login(pages["change"])),
                        note=f"{name}: old-style URL redirects to the change page"))

    # Escalation of privilege through the admin: the DPO's account is out of an admin's reach
    # (an admin who could set the DPO's password would read the access log).
    dpo_user = world.users["dpo"].pk
    admin_user = world.users["admin"]
    self_edit = {"username": "admin", "organisation": admin_user.organisation_id, "is_active": "on", "is_staff": "on",
                 "is_superuser": "on", "date_joined_0": "2026-01-01", "date_joined_1": "00:00:00"}
    admin_group, dpo_group = (Group.objects.get(name=n).pk for n in ("admin", "dpo"))
    rows += [
        # The superuser flag is not an admin's to set, nor the DPO role to hand out (to
        # themselves or anyone): the first is ignored, the second refused.
        Row("post", f"/admin/warden_app/user/{admin_user.pk}/change/", "web",
            admin_page({"admin": True}, redirect=True), data={**self_edit, "groups": [admin_group]},
            after=not_escalated("admin"), note="admin makes themselves superuser"),
        Row("post", f"/admin/warden_app/user/{admin_user.pk}/change/", "web",
            admin_page({"admin": True}), data={**self_edit, "groups": [admin_group, dpo_group]},
            after=not_escalated("admin"), note="admin gives themselves the DPO role"),
        Row("get", f"/admin/warden_app/user/{dpo_user}/password/", "web", admin_page({})),
        Row("post", f"/admin/warden_app/user/{dpo_user}/password/", "web", admin_page({}),
            data={"password1": "Taken-over-9!", "password2": "Taken-over-9!", "usable_password": "true"},
            after=password_unchanged("dpo")),
        Row("post", f"/admin/warden_app/user/{dpo_user}/delete/", "web", admin_page({}), data={"post": "yes"}),
        Row("get", f"/admin/warden_app/user/{world.users['warden_leigh'].pk}/password/", "web",
            admin_page({"admin": True})),
    ]
    rows += sharing_admin_rows(world)
    return rows


def sharing_admin_rows(world: SecurityWorld) -> list[Row]:
    """The protocol's admin pages write through services: the admin's write goes through (302),
    the DPO's and everyone else's is refused and leaves every table as it was."""
    from warden_app.models import ApiToken, SharingRule
    from warden_app.services.api_tokens import api_token_hash

    token = world.ids["api_token_analyst"]
    token_id = ApiToken.objects.get(token_hash=api_token_hash(token)).pk
    rule = SharingRule.objects.order_by("pk").first()
    police = world.users["pcso_leigh"].organisation_id
    return [
        # Neither the token nor its hash is on any admin page, to anyone.
        Row("get", "/admin/warden_app/apitoken/", "web",
            admin_page({"admin": True}, check=lacks(token, api_token_hash(token))), note="token list"),
        Row("get", f"/admin/warden_app/apitoken/{token_id}/change/", "web",
            admin_page({"admin": True}, check=lacks(token, api_token_hash(token))), note="the analyst's token"),
        Row("post", "/admin/warden_app/apitoken/", "web", admin_page({"admin": True}, redirect=True),
            data={"action": "revoke_tokens", "_selected_action": [token_id]},
            after=token_alive_unless(token_id, "admin"), note="revoke the analyst's token"),
        Row("post", "/admin/warden_app/purposegrant/add/", "web", admin_page({"admin": True}, redirect=True),
            data={"user": world.users["analyst"].pk, "record_type": "observation", "fields": ["description"],
                  "purpose": "matrix", "valid_until_0": "2099-01-01", "valid_until_1": "00:00:00"},
            note="issue a grant"),
        Row("post", "/admin/warden_app/purposegrant/", "web", admin_page({"admin": True}, redirect=True),
            data={"action": "revoke_grants", "_selected_action": [world.ids["purpose_grant"]]},
            note="revoke a grant"),
        Row("post", "/admin/warden_app/sharingrule/add/", "web", admin_page({"admin": True}, redirect=True),
            data={"key": "matrix-police", "viewer_scope": "organisation", "viewer_organisation": police,
                  "viewer_roles": ["pcso"], "owner_scope": "any", "field_groups": ["personal"],
                  "note": "matrix"}, note="add a rule"),
        Row("post", f"/admin/warden_app/sharingrule/{rule.pk}/delete/", "web", admin_page({}),
            data={"post": "yes"}, note="the default clause is never deleted"),
    ]


def not_escalated(username: str) -> Callable:
    def after(world, principal) -> list[str]:
        from warden_app.models import User

        user = User.objects.get(username=username)
        problems = [f"{username} became a superuser"] if user.is_superuser else []
        if user.groups.filter(name="dpo").exists():
            problems.append(f"{username} now holds the DPO role")
        return problems
    return after


def password_unchanged(username: str) -> Callable:
    def after(world, principal) -> list[str]:
        from warden_app.models import User

        user = User.objects.get(username=username)
        return [f"{username}'s password was changed"] if user.check_password("Taken-over-9!") else []
    return after


# --- running it ----------------------------------------------------------------------------------

def resolver_routes() -> set[str]:
    """Every route of the URL map, spelt as ResolverMatch.route spells it."""
    def walk(patterns, prefix: str):
        for pattern in patterns:
            text = str(pattern.pattern)
            text = text[1:] if text.startswith("^") else text
            if isinstance(pattern, URLResolver):
                yield from walk(pattern.url_patterns, prefix + text)
            elif isinstance(pattern, URLPattern):
                yield prefix + text
    return set(walk(get_resolver().url_patterns, ""))


TOKEN_PATHS = ("/api/v1/records/", "/api/v1/exports", "/ogc/")


def token_expectation(row: Row) -> Expect:
    if row.token is not None:
        return row.token
    if row.channel == "api" and row.path.startswith(TOKEN_PATHS):
        return row.expect["analyst"]
    return row.expect["anonymous"]


def client_for(world: SecurityWorld, principal: str, row: Row):
    if principal == "analyst_token":
        return world.principals[principal].client(
            session=False, authorization=f"Bearer {world.ids['api_token_analyst']}")
    p = world.principals[principal]
    if principal == "revoked":  # a lost handheld: its token is all the thief has
        return p.client(session=False, authorization=f"Bearer {p.device_token}")
    if row.channel == "web":
        return p.client(session=True)
    if row.channel == "device" and p.device_token:
        return p.client(session=False, authorization=f"Bearer {p.device_token}")
    if row.channel == "enrol":
        return p.client(session=False)
    return p.client(session=False, authorization=p.basic)


def request_data(world: SecurityWorld, principal: str, row: Row):
    if row.channel == "enrol":
        p = world.principals["anonymous" if principal == "analyst_token" else principal]
        from tests.analysis.conftest import PASSWORD

        username, password = (p.username, PASSWORD) if p.username else ("warden_leigh", "guessed-password")
        return json.dumps({"username": username, "password": password, "label": "new", "platform": "t"}), \
            "application/json"
    if row.content_type == "application/json":
        return json.dumps(row.data), row.content_type
    return row.data, row.content_type


WRITES = ("post", "put", "patch", "delete")
# What a refused mutation inside an accepted push leaves, by design (protocol section 4): its
# receipt (so a resend is a duplicate), the quarantined copy a supervisor sees, and the
# device's last push time. Nothing of any record.
REFUSAL_TRACE = frozenset({"sync_receipt", "sync_quarantinedmutation", "sync_device"})
REFUSED_WRITES_CHECKED: list[str] = []


def denied(expect: Expect) -> bool:
    """The answer the policy requires is a refusal: every allowed status a 4xx, a redirect
    to sign in first (`?next=`: not a logout's way out), or a push whose mutation is rejected."""
    if expect.location is not None:
        return "/login/?next=" in expect.location
    return all(400 <= status < 500 for status in expect.statuses()) or (
        expect.check is not None and getattr(expect.check, "refusal", False))


# Columns that say a credential was used, not what it may do: authenticating with a personal
# API token stamps its last use (at most once a minute) even when what it asks is refused.
USE_STAMPS = {"warden_app_apitoken": ("last_used_at",)}


def fingerprint() -> dict[str, str]:
    """A hash of every row of every table of the app (one statement): what a refused write
    must leave exactly as it was."""
    from django.db import connection

    with connection.cursor() as c:
        c.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'spatial_ref_sys' "
                  "ORDER BY tablename")
        tables = [name for (name,) in c.fetchall()]
        def row_text(name: str) -> str:
            stamps = USE_STAMPS.get(name)
            return f"(to_jsonb(t) - ARRAY{list(stamps)})::text" if stamps else "t::text"

        c.execute(" UNION ALL ".join(
            f"SELECT '{name}', md5(coalesce(string_agg({row_text(name)}, '|' ORDER BY {row_text(name)}), '')) "
            f"FROM \"{name}\" t"
            for name in tables))
        return dict(c.fetchall())


def run_one(world: SecurityWorld, principal: str, row: Row) -> list[str]:
    expect = token_expectation(row) if principal == "analyst_token" else row.expect[principal]
    client = client_for(world, principal, row)
    data, content_type = request_data(world, principal, row)
    kwargs = {}
    if data is not None:
        kwargs["data"] = data
    if content_type:
        kwargs["content_type"] = content_type
    problems: list[str] = []
    refused_write = row.method in WRITES and denied(expect)
    with transaction.atomic():
        before = fingerprint() if refused_write else None
        try:
            response = getattr(client, row.method)(row.path, **kwargs)
            # (Not response.close(): the test client has closed it, or does so when a stream
            # is read to its end; closing again would close the database connection.)
            body = b"".join(response.streaming_content) if response.streaming else response.content
        except Exception as exc:  # a crash is an answer too, and never the right one
            transaction.set_rollback(True)
            return [f"raised {type(exc).__name__}: {exc}"]
        if response.status_code not in expect.statuses():
            problems.append(f"status {response.status_code}, expected {expect.status}: {body[:160]!r}")
        elif expect.location and not response["Location"].startswith(expect.location):
            problems.append(f"redirected to {response['Location']}, expected {expect.location}")
        elif expect.check:
            response.raw_body, parsed = body, body
            if response.get("Content-Type", "").startswith(("application/json", "application/geo+json")):
                parsed = json.loads(body)
            problems += expect.check(world, principal, response, parsed)
        if row.after:
            problems += row.after(world, principal)
        if before is not None:
            REFUSED_WRITES_CHECKED.append(f"{row.method} {row.path} {principal}")
            after = fingerprint()
            allowed = REFUSAL_TRACE if expect.check is not None and getattr(expect.check, "refusal", False) \
                else frozenset()
            changed = sorted(name for name in set(before) | set(after)
                             if before.get(name) != after.get(name) and name not in allowed)
            if changed:
                problems.append(f"a refused write changed {changed}")
        transaction.set_rollback(True)
    return problems


def test_every_endpoint_as_every_role(sec_world, settings):
    settings.SYNC_DEVICE_RATE = "10000/min"  # each handheld calls the sync API once per row
    rows = matrix_rows(sec_world)
    for row in rows:
        row.route = resolve(row.path.split("?")[0]).route

    uncovered = resolver_routes() - {row.route for row in rows}
    assert not uncovered, f"routes without a row in the authorisation matrix: {sorted(uncovered)}"

    failures = []
    for row in rows:
        for principal in PRINCIPALS:
            for problem in run_one(sec_world, principal, row):
                failures.append(f"{row.method.upper()} {row.path} as {principal}"
                                f"{' (' + row.note + ')' if row.note else ''}: {problem}")
    print(f"authorisation matrix: {len(rows)} rows x {len(PRINCIPALS)} principals = {len(rows) * len(PRINCIPALS)}; "
          f"{len(REFUSED_WRITES_CHECKED)} refused writes left every table as it was")
    assert REFUSED_WRITES_CHECKED, "no refused write was checked"
    assert not failures, "\n" + "\n".join(failures)
