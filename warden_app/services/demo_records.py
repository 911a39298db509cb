"""Fictional records for the demo partnership (`manage.py seed_demo --records N`).

Observations and street audits (with graded items) over the last six months in both demo
areas, by the demo field staff, clustered round a few made-up hotspots so the hotspot and
partner maps have something to show; some of Leigh's reviewed by its supervisor. Nothing
describes a real person: descriptions are generic and persons are described, never named.

Everything goes through the project's own paths, as a handheld and a supervisor would: each
author's demo handheld pushes its records (fieldsync.sync.api.push_apply: versions, the change
feed, area placement), and reviews go through services.review.review_decide (review rows, the
access log). Deterministic: one seeded RNG and record ids derived from the record's number, so
a re-run finds its records and adds only what is missing (N larger than before adds the rest).
"""
from __future__ import annotations

import math
import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta

from django.contrib.gis.geos import Point

from fieldsync.sync.api import Device, device_enrol, push_apply

from ..choices import GRADED_ISSUE_TYPES, ActionTaken, IncidentType, IssueType, Qualifier, ReviewState
from ..models import Observation, Review, StreetAudit
from .demo import DemoPartnership
from .review import review_decide

NAMESPACE = uuid.UUID("6f3c2a52-8d0e-4a57-9a43-1f0d6c0de017")
DEVICE_LABEL = "Demo handheld (seed_demo)"
DAYS = 182
SEED = 17
# Authors: field staff with their area (demo.py's TEAMS).
AUTHORS = (("warden_leigh", "LEIGH-TC"), ("pcso_leigh", "LEIGH-TC"), ("warden_wigan", "WIGAN-TC"))
REVIEWER = {"LEIGH-TC": "supervisor_leigh"}  # Wigan's team has no supervisor in the demo
AUDIT_SHARE = 0.3
REVIEWED_SHARE = 0.55  # of the reviewable records older than a week
PERSONS_SHARE = 0.12

# (incident type, qualifier, weight, descriptions): docs/domain.md's categories, weighted
# roughly as town-centre wardens record them.
INCIDENTS = (
    (IncidentType.STREET_DRINKING, Qualifier.NUISANCE, 14, (
        "Group drinking on the benches by the bus station", "Cans left after drinking in the precinct",
        "Two people drinking outside the shops, asked to move on")),
    (IncidentType.ROWDY_INCONSIDERATE, Qualifier.NUISANCE, 16, (
        "Youths shouting and kicking a ball at shop windows", "Rowdy group outside the takeaway after closing",
        "Shoppers complained about a group blocking the walkway")),
    (IncidentType.LITTERING_DRUGS_PARAPHERNALIA, Qualifier.ENVIRONMENTAL, 12, (
        "Needles found behind the car park stairwell", "Litter and foil by the underpass",
        "Discarded nitrous oxide canisters on the grass")),
    (IncidentType.VEHICLE_NUISANCE, Qualifier.NUISANCE, 8, (
        "Cars revving and racing round the retail park", "Moped ridden on the pedestrian precinct")),
    (IncidentType.VEHICLE_ABANDONED, Qualifier.ENVIRONMENTAL, 4, (
        "Car with no plates left on the side street for weeks", "Burnt-out van on the service road")),
    (IncidentType.NOISE, Qualifier.NUISANCE, 8, (
        "Loud music from a parked car late evening", "Amplified music in the square without a licence")),
    (IncidentType.BEGGING_VAGRANCY, Qualifier.PERSONAL, 6, (
        "Person sleeping in the shop doorway, offered advice on services",
        "Begging at the cash machine, signposted to the outreach team")),
    (IncidentType.ANIMAL_PROBLEMS, Qualifier.ENVIRONMENTAL, 5, (
        "Dog off its lead in the play area", "Dog fouling left on the market approach")),
    (IncidentType.TRESPASS, Qualifier.NUISANCE, 4, (
        "Youths on the roof of the empty unit", "People in the fenced-off building site")),
    (IncidentType.ROWDY_NUISANCE_NEIGHBOURS, Qualifier.PERSONAL, 4, (
        "Residents report repeated shouting from the flats above the shops",)),
    (IncidentType.FIREWORKS, Qualifier.NUISANCE, 3, (
        "Fireworks set off in the park towards passers-by",)),
    (IncidentType.OTHER, Qualifier.NUISANCE, 2, ("Graffiti tag being sprayed on the bus shelter",)),
)
ACTIONS = (ActionTaken.ADVICE, ActionTaken.WARNING, ActionTaken.CONTACT_CARD, ActionTaken.REFERRAL,
           ActionTaken.REPORTED_TO_COUNCIL, ActionTaken.REPORTED_TO_POLICE, ActionTaken.NONE)
PERSONS = ("male, 20s, grey hoodie", "female, 30s, dark coat", "group of four teenagers", "male, 40s, with a dog",
           "two males, late teens, on bicycles", "female, 50s, carrying bags")
STREETS = ("Market Street walk", "Bradshawgate and the precinct", "Bus station loop", "Town hall square",
           "Canal towpath section", "Retail park perimeter", "Library gardens and car park")
AGENCIES = ("Council street cleansing", "Council highways", "Housing association", "")
AUDIT_ISSUES = (IssueType.LITTER, IssueType.DETRITUS, IssueType.GRAFFITI, IssueType.FLY_POSTING,
                IssueType.FLY_TIPPING, IssueType.DRUG_LITTER, IssueType.DOG_FOULING, IssueType.STREET_LIGHT_OUT,
                IssueType.DAMAGED_STREET_FURNITURE, IssueType.OVERGROWN_VEGETATION, IssueType.POOR_LIGHTING)
GRADES = ("A", "B", "B", "C", "C", "D")
ISSUE_NOTES = ("Bins overflowing", "Tag on the shutter", "Posters on the lamp post", "Mattress dumped in the alley",
               "Broken bench slat", "Weeds across the path", "")


@dataclass(frozen=True)
class SeededRecords:
    observations: int
    street_audits: int
    audit_items: int
    reviewed: int
    added: int  # observations and audits new in this run


def record_id(kind: str, number: int, part: int = 0) -> uuid.UUID:
    return uuid.uuid5(NAMESPACE, f"{kind}:{number}:{part}")


def _hotspots(area, rng: random.Random) -> list[tuple[float, float]]:
    """Three made-up hotspots inside the area (its polygon's middle two thirds)."""
    x0, y0, x1, y1 = area.geom.extent
    return [(x0 + (x1 - x0) * rng.uniform(.2, .8), y0 + (y1 - y0) * rng.uniform(.2, .8)) for _ in range(3)]


def _place(area, hotspots, rng: random.Random) -> tuple[float, float]:
    """A point in the area: most round a hotspot (about 60 m spread), the rest anywhere."""
    x0, y0, x1, y1 = area.geom.extent
    for _ in range(50):
        if rng.random() < 0.7:
            cx, cy = rng.choice(hotspots)
            # ~60 m in degrees at 53.5°N
            x, y = rng.gauss(cx, 60 / (111_320 * math.cos(math.radians(cy)))), rng.gauss(cy, 60 / 111_320)
        else:
            x, y = rng.uniform(x0, x1), rng.uniform(y0, y1)
        if area.geom.contains(Point(x, y, srid=4326)):
            return round(x, 6), round(y, 6)
    return area.geom.point_on_surface.x, area.geom.point_on_surface.y


def _when(rng: random.Random, today: datetime) -> datetime:
    """A moment in the last DAYS days, busier in the evening and at weekends."""
    for _ in range(10):
        day = today - timedelta(days=rng.randrange(1, DAYS))
        if day.weekday() >= 4 or rng.random() < 0.7:
            break
    hour = min(23, max(7, int(rng.gauss(17, 3.5))))
    return datetime.combine(day.date(), time(hour, rng.randrange(60)), tzinfo=UTC)


def _iso(moment: datetime) -> str:
    return moment.isoformat()


def _device(user, password: str) -> Device:
    """The author's demo handheld: enrolled once (services, as a handheld does), then reused."""
    device = Device.objects.filter(user=user, label=DEVICE_LABEL, revoked_at__isnull=True).first()
    if device is None:
        device = device_enrol(username=user.username, password=password, label=DEVICE_LABEL,
                              platform="seed_demo").device
    return device


def _location(xy, accuracy) -> dict:
    return {"location": {"type": "Point", "coordinates": list(xy)}, "accuracy_m": accuracy, "fix_source": "gps"}


def _mutation(type_: str, mid: uuid.UUID, rid: uuid.UUID, data: dict, client_time: datetime) -> dict:
    return {"mutation_id": str(mid), "type": type_, "op": "create", "id": str(rid), "base_version": None,
            "client_time": _iso(client_time), "data": data}


def _plan(demo: DemoPartnership, count: int, today: datetime):
    """Every record of the first `count`, as (author, area code, type, id, mutations, when)."""
    rng = random.Random(SEED)  # noqa: S311 (fiction, deterministic on purpose; nothing secret)
    hotspots = {code: _hotspots(demo.areas[code], rng) for code in demo.areas}
    weights = [w for _, _, w, _ in INCIDENTS]
    for number in range(count):
        username, code = AUTHORS[rng.choices(range(len(AUTHORS)), weights=(4, 3, 4))[0]]
        area = demo.areas[code]
        when = _when(rng, today)
        sent = when + timedelta(minutes=rng.randrange(2, 90))
        if rng.random() < AUDIT_SHARE:
            rid = record_id("street_audit", number)
            start_xy = _place(area, hotspots[code], rng)
            data = {"title": rng.choice(STREETS), "started_at": _iso(when),
                    "finished_at": _iso(when + timedelta(minutes=rng.randrange(20, 75))), "form_version": 1,
                    "notes": rng.choice(("", "Dry, light footfall", "Market day, busy", "Wet; bins not yet emptied")),
                    **_location(start_xy, round(rng.uniform(3, 12), 1))}
            mutations = [_mutation("street_audit", record_id("m-street_audit", number), rid, data, sent)]
            for part, issue in enumerate(rng.sample(AUDIT_ISSUES, rng.randrange(3, 7)), start=1):
                item = {"street_audit": str(rid), "issue_type": issue.value, "form_version": 1,
                        "grade": rng.choice(GRADES) if issue.value in GRADED_ISSUE_TYPES else None,
                        "responsible_agency": rng.choice(AGENCIES), "notes": rng.choice(ISSUE_NOTES),
                        **_location(_place(area, hotspots[code], rng), round(rng.uniform(3, 12), 1))}
                mutations.append(_mutation("audit_item", record_id("m-audit_item", number, part),
                                           record_id("audit_item", number, part), item, sent))
            yield username, code, "street_audit", rid, mutations, when, rng.random(), rng.random()
        else:
            rid = record_id("observation", number)
            incident, qualifier, _, descriptions = rng.choices(INCIDENTS, weights=weights)[0]
            persons = ([{"description": rng.choice(PERSONS), "approx_age": rng.randrange(15, 60)}]
                       if rng.random() < PERSONS_SHARE else [])
            data = {"qualifier": qualifier.value, "incident_type": incident.value, "observed_at": _iso(when),
                    "description": rng.choice(descriptions),
                    "action_taken": [rng.choice(ACTIONS).value], "persons_involved": persons,
                    **_location(_place(area, hotspots[code], rng), round(rng.uniform(3, 25), 1))}
            mutations = [_mutation("observation", record_id("m-observation", number), rid, data, sent)]
            yield username, code, "observation", rid, mutations, when, rng.random(), rng.random()


def demo_records_seed(demo: DemoPartnership, *, count: int, password: str, today: datetime | None = None,
                      batch: int = 400) -> SeededRecords:
    """Add the first `count` demo records that are not there yet, and review some of them."""
    today = today or datetime.now(UTC)
    plan = list(_plan(demo, count, today))
    ids = {kind: [p[3] for p in plan if p[2] == kind] for kind in ("observation", "street_audit")}
    present = set(Observation.objects.filter(pk__in=ids["observation"]).values_list("pk", flat=True))
    present |= set(StreetAudit.objects.filter(pk__in=ids["street_audit"]).values_list("pk", flat=True))
    missing = [p for p in plan if p[3] not in present]

    # Pushed oldest first, per author, in pushes of at most `batch` mutations (an audit and
    # its items always in the same push): as each handheld would have sent them.
    by_author: dict[str, list] = {}
    for entry in sorted(missing, key=lambda p: p[5]):
        by_author.setdefault(entry[0], []).extend(entry[4])
    for username, mutations in by_author.items():
        user = demo.users[username]
        device = _device(user, password)
        start = 0
        while start < len(mutations):
            end = min(len(mutations), start + batch)
            while end < len(mutations) and mutations[end]["type"] == "audit_item":
                end += 1  # keep an audit's items with it
            results = push_apply(user=user, device=device, mutations=mutations[start:end])
            refused = [r for r in results if r.get("status") not in ("applied", "duplicate")]
            if refused:
                raise RuntimeError(f"the demo push was refused: {refused[:3]}")
            start = end

    reviewed = _review(demo, plan, today)
    observations = Observation.objects.filter(pk__in=ids["observation"]).count()
    audits = StreetAudit.objects.filter(pk__in=ids["street_audit"])
    return SeededRecords(observations=observations, street_audits=audits.count(),
                         audit_items=sum(a.items.count() for a in audits.prefetch_related("items")),
                         reviewed=reviewed, added=len(missing))


def _review(demo: DemoPartnership, plan, today: datetime) -> int:
    """The supervisor reviews most of their area's records older than a week: approved mostly,
    some returned with issues. A record reviewed before is left as it is."""
    wanted = [p for p in plan if p[1] in REVIEWER and p[5] < today - timedelta(days=7) and p[6] < REVIEWED_SHARE]
    models = {"observation": Observation, "street_audit": StreetAudit}
    done = set()
    for kind in models:
        field = f"{kind}_id"
        done |= set(Review.objects.filter(**{f"{field}__in": [p[3] for p in wanted if p[2] == kind]})
                    .values_list(field, flat=True))
    for _author, code, kind, rid, _, _, _, draw in wanted:
        if rid in done:
            continue
        has_issues = draw < 0.2
        review_decide(reviewer=demo.users[REVIEWER[code]], record_type=kind, record_id=rid,
                      decision=ReviewState.HAS_ISSUES.value if has_issues else ReviewState.APPROVED.value,
                      note="Please add what action was taken." if has_issues else "")
    return sum(model.objects.filter(pk__in=[p[3] for p in plan if p[2] == kind])
               .exclude(review_state=ReviewState.SUBMITTED).count() for kind, model in models.items())
