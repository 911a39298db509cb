"""The permission policy of product.md, as one table: every role against every question.

Each table below is read row by row: a user of the demo partnership, then the expected
answer for each target in the column order given. `expand` turns the tables into
parametrize rows `(role_user, question, target, expected)`, so a failure names the cell.

The demo partnership (product.md): warden_leigh and supervisor_leigh work for Wigan
Council, pcso_leigh for Greater Manchester Police, all in the Leigh team; warden_wigan
(council) is in the Wigan team. `nobody` is an active council user with no role and no
team; `anonymous` is Django's anonymous user.
"""
import secrets
import uuid

import pytest
from django.contrib.auth.models import AnonymousUser
from django.contrib.gis.geos import Point
from django.db import transaction
from django.utils import timezone

from fieldsync.sync.models import Device
from warden_app import permissions
from warden_app.models import Observation, User
from warden_app.services.demo import COUNCIL, LEIGH, WIGAN, demo_seed

Y, N = True, False

USERS = (
    "warden_leigh",
    "pcso_leigh",
    "warden_wigan",
    "supervisor_leigh",
    "analyst",
    "partner_fire",
    "admin",
    "dpo",
    "nobody",
    "anonymous",
)

# --- questions about the user alone ---------------------------------------------------------
#                      warden_leigh pcso_leigh warden_wigan supervisor analyst partner admin dpo nobody anon
USER_QUESTIONS = {
    "can_enrol_device":    (Y, Y, Y, Y, N, N, N, N, N, N),  # field staff and supervisors
    "can_view_aggregates": (N, N, N, Y, Y, Y, Y, N, N, N),
    "can_manage":          (N, N, N, N, N, N, Y, N, N, N),  # admin only
    "can_read_access_log": (N, N, N, N, N, N, N, Y, N, N),  # DPO only, not even admin
    # The records API, exports and OGC: analysts, supervisors and admins; partners get
    # aggregates only, field staff their handhelds.
    "can_read_records":    (N, N, N, Y, Y, N, Y, N, N, N),
}  # fmt: skip

# --- questions about an area: Leigh (the Leigh team's), Wigan (foreign to it), none ---------
AREA_TARGETS = ("leigh", "wigan", "no_area")
AREA_QUESTIONS = {
    # A fix outside every area is still recorded and kept, so "no area" is allowed.
    "can_record_in": {
        "warden_leigh":     (Y, N, Y),
        "pcso_leigh":       (Y, N, Y),
        "warden_wigan":     (N, Y, Y),
        "supervisor_leigh": (Y, N, Y),
        "analyst":          (N, N, N),
        "partner_fire":     (N, N, N),
        "admin":            (N, N, N),
        "dpo":              (N, N, N),
        "nobody":           (N, N, N),
        "anonymous":        (N, N, N),
    },
    # Out-of-area records are reviewed through can_review_record, which knows the author.
    "can_review": {
        "warden_leigh":     (N, N, N),
        "pcso_leigh":       (N, N, N),
        "warden_wigan":     (N, N, N),
        "supervisor_leigh": (Y, N, N),
        "analyst":          (N, N, N),
        "partner_fire":     (N, N, N),
        "admin":            (N, N, N),
        "dpo":              (N, N, N),
        "nobody":           (N, N, N),
        "anonymous":        (N, N, N),
    },
    # The analyst role carries the model-wide analyse_area grant: all areas.
    "can_analyse": {
        "warden_leigh":     (N, N, N),
        "pcso_leigh":       (N, N, N),
        "warden_wigan":     (N, N, N),
        "supervisor_leigh": (N, N, N),
        "analyst":          (Y, Y, Y),
        "partner_fire":     (N, N, N),
        "admin":            (N, N, N),
        "dpo":              (N, N, N),
        "nobody":           (N, N, N),
        "anonymous":        (N, N, N),
    },
}  # fmt: skip

# --- questions about a record (an ASB observation) ------------------------------------------
RECORD_TARGETS = (
    "leigh_by_warden_leigh",  # in Leigh, by a council warden
    "leigh_by_pcso_leigh",  # in Leigh, by a police PCSO
    "leigh_by_supervisor_leigh",  # in Leigh, by the council supervisor
    "wigan_by_warden_wigan",  # in Wigan, by a council warden of the Wigan team
    "outside_by_warden_leigh",  # outside every area, by a Leigh team warden
)
RECORD_QUESTIONS = {
    # Field staff: their areas; supervisors: their areas and their team's out-of-area
    # records; analysts: all areas; admins: everything; partners and the DPO: no records.
    "can_view_record": {
        "warden_leigh":     (Y, Y, Y, N, Y),
        "pcso_leigh":       (Y, Y, Y, N, N),
        "warden_wigan":     (N, N, N, Y, N),
        "supervisor_leigh": (Y, Y, Y, N, Y),
        "analyst":          (Y, Y, Y, Y, N),
        "partner_fire":     (N, N, N, N, N),
        "admin":            (Y, Y, Y, Y, Y),
        "dpo":              (N, N, N, N, N),
        "nobody":           (N, N, N, N, N),
        "anonymous":        (N, N, N, N, N),
    },
    # Supervisors review their areas and their team's out-of-area records, never their own.
    "can_review_record": {
        "warden_leigh":     (N, N, N, N, N),
        "pcso_leigh":       (N, N, N, N, N),
        "warden_wigan":     (N, N, N, N, N),
        "supervisor_leigh": (Y, Y, N, N, Y),
        "analyst":          (N, N, N, N, N),
        "partner_fire":     (N, N, N, N, N),
        "admin":            (N, N, N, N, N),
        "dpo":              (N, N, N, N, N),
        "nobody":           (N, N, N, N, N),
        "anonymous":        (N, N, N, N, N),
    },
    # Authors edit their own; supervisors correct what they review. Admins manage users,
    # areas and forms, not records; the DPO changes nothing but what a request names
    # (through its own services, not field edits).
    "can_edit_record": {
        "warden_leigh":     (Y, N, N, N, Y),
        "pcso_leigh":       (N, Y, N, N, N),
        "warden_wigan":     (N, N, N, Y, N),
        "supervisor_leigh": (Y, Y, Y, N, Y),
        "analyst":          (N, N, N, N, N),
        "partner_fire":     (N, N, N, N, N),
        "admin":            (N, N, N, N, N),
        "dpo":              (N, N, N, N, N),
        "nobody":           (N, N, N, N, N),
        "anonymous":        (N, N, N, N, N),
    },
    # Which fields, once a record may be seen at all (can_view_record is asked first):
    # field staff see personal details only in their own organisation's records, so the
    # police PCSO never sees a council record's, and a council warden sees any council
    # record's; supervisors in what they review; analysts not without a purpose-bound
    # grant; admins and the DPO (subject access) do.
    "may_see_personal": {
        "warden_leigh":     (Y, N, Y, Y, Y),
        "pcso_leigh":       (N, Y, N, N, N),
        "warden_wigan":     (Y, N, Y, Y, Y),
        "supervisor_leigh": (Y, Y, Y, N, Y),
        "analyst":          (N, N, N, N, N),
        "partner_fire":     (N, N, N, N, N),
        "admin":            (Y, Y, Y, Y, Y),
        "dpo":              (Y, Y, Y, Y, Y),
        "nobody":           (N, N, N, N, N),
        "anonymous":        (N, N, N, N, N),
    },
}  # fmt: skip

# --- revoking a handheld ---------------------------------------------------------------------
DEVICE_TARGETS = ("device_of_warden_leigh", "device_of_warden_wigan", "device_of_supervisor_leigh")
DEVICE_QUESTIONS = {
    # Admins any device; supervisors their team's (their own included). Field staff report
    # a lost handheld; they do not revoke it themselves.
    "can_revoke_device": {
        "warden_leigh":     (N, N, N),
        "pcso_leigh":       (N, N, N),
        "warden_wigan":     (N, N, N),
        "supervisor_leigh": (Y, N, Y),
        "analyst":          (N, N, N),
        "partner_fire":     (N, N, N),
        "admin":            (Y, Y, Y),
        "dpo":              (N, N, N),
        "nobody":           (N, N, N),
        "anonymous":        (N, N, N),
    },
}  # fmt: skip


def expand():
    rows = []
    for question, answers in USER_QUESTIONS.items():
        assert len(answers) == len(USERS), question
        rows += [(user, question, None, expected) for user, expected in zip(USERS, answers, strict=True)]
    for questions, targets in (
        (AREA_QUESTIONS, AREA_TARGETS),
        (RECORD_QUESTIONS, RECORD_TARGETS),
        (DEVICE_QUESTIONS, DEVICE_TARGETS),
    ):
        for question, table in questions.items():
            assert tuple(table) == USERS, question
            for user, answers in table.items():
                assert len(answers) == len(targets), (question, user)
                rows += [(user, question, t, e) for t, e in zip(targets, answers, strict=True)]
    return rows


ROWS = expand()
ALL_OBSERVATION_FIELDS = frozenset(f.name for f in Observation._meta.concrete_fields)

LEIGH_CENTRE = Point(-2.5170, 53.4975, srid=4326)
WIGAN_CENTRE = Point(-2.6325, 53.5450, srid=4326)
# Between the two town centres, in neither.
NO_MANS_LAND = Point(-2.5750, 53.5200, srid=4326)


def _observation(author: User, location: Point, form) -> Observation:
    now = timezone.now()
    record = Observation.objects.create(
        id=uuid.uuid4(),
        author=author,
        organisation=author.organisation,
        form=form,
        created_at=now,
        updated_at=now,
        location=location,
        qualifier="personal",
        incident_type="rowdy_inconsiderate",
        observed_at=now,
        description="Two youths shouting at passers-by",
        persons_involved=[{"description": "tall, red jacket", "approx_age": 16}],
    )
    record.refresh_from_db()  # the area is the database's (trigger on location)
    return record


@pytest.fixture(scope="module")
def world(django_db_setup, django_db_blocker, fast_password_hashing):
    """The demo partnership plus records and devices, built once for the whole table and
    rolled back at the end; each test runs in a savepoint inside it."""
    with django_db_blocker.unblock(), transaction.atomic():
        demo = demo_seed()
        users = dict(demo.users)
        users["nobody"] = User.objects.create(
            username="nobody", organisation=demo.organisations[COUNCIL]
        )
        form = demo.forms["observation"]
        targets = {
            "leigh": demo.areas[LEIGH],
            "wigan": demo.areas[WIGAN],
            "no_area": None,
            "leigh_by_warden_leigh": _observation(users["warden_leigh"], LEIGH_CENTRE, form),
            "leigh_by_pcso_leigh": _observation(users["pcso_leigh"], LEIGH_CENTRE, form),
            "leigh_by_supervisor_leigh": _observation(
                users["supervisor_leigh"], LEIGH_CENTRE, form
            ),
            "wigan_by_warden_wigan": _observation(users["warden_wigan"], WIGAN_CENTRE, form),
            "outside_by_warden_leigh": _observation(users["warden_leigh"], NO_MANS_LAND, form),
        }
        for owner in ("warden_leigh", "warden_wigan", "supervisor_leigh"):
            targets[f"device_of_{owner}"] = Device.objects.create(
                user=users[owner], label=f"{owner}'s handheld", token_hash=secrets.token_hex(32)
            )
        yield {"users": {name: user.pk for name, user in users.items()}, "targets": targets}
        transaction.set_rollback(True)


def _fresh_user(world, name: str):
    # A fresh instance per test: the permission functions cache rights on the instance.
    if name == "anonymous":
        return AnonymousUser()
    return User.objects.get(pk=world["users"][name])


def test_the_table_covers_every_question_in_permissions_py():
    asked = {question for _, question, _, _ in ROWS} | {"visible_fields"}
    public = {
        name
        for name in dir(permissions)
        if name.startswith(("can_", "may_", "visible_")) and callable(getattr(permissions, name))
    }
    assert public <= asked, f"questions without a row in the table: {sorted(public - asked)}"


@pytest.mark.django_db
def test_records_land_in_the_areas_the_table_assumes(world):
    targets = world["targets"]
    assert targets["leigh_by_warden_leigh"].area_id == targets["leigh"].pk
    assert targets["leigh_by_pcso_leigh"].area_id == targets["leigh"].pk
    assert targets["leigh_by_supervisor_leigh"].area_id == targets["leigh"].pk
    assert targets["wigan_by_warden_wigan"].area_id == targets["wigan"].pk
    assert targets["outside_by_warden_leigh"].area_id is None


@pytest.mark.django_db
@pytest.mark.parametrize(("role_user", "question", "target", "expected"), ROWS)
def test_permission_table(world, role_user, question, target, expected):
    user = _fresh_user(world, role_user)
    ask = getattr(permissions, question)
    if target is None:
        answer = ask(user)
    elif question == "may_see_personal":
        answer = ask(user, "observation", world["targets"][target])
    else:
        answer = ask(user, world["targets"][target])
    assert answer is expected


@pytest.mark.django_db
@pytest.mark.parametrize("role_user", USERS)
@pytest.mark.parametrize("target", RECORD_TARGETS)
def test_visible_fields_follow_may_see_personal(world, role_user, target):
    """Personal fields (description, persons involved, photos) are dropped exactly where
    the table says personal details may not be seen."""
    user = _fresh_user(world, role_user)
    record = world["targets"][target]
    fields = permissions.visible_fields(user, "observation", record, ALL_OBSERVATION_FIELDS)
    expected = RECORD_QUESTIONS["may_see_personal"][role_user][RECORD_TARGETS.index(target)]
    personal = {"description", "persons_involved", "photos"}
    if expected:
        assert fields == ALL_OBSERVATION_FIELDS
    else:
        assert fields == ALL_OBSERVATION_FIELDS - personal


@pytest.mark.django_db
def test_an_inactive_user_loses_every_right(world):
    user = _fresh_user(world, "supervisor_leigh")
    user.is_active = False
    record = world["targets"]["leigh_by_warden_leigh"]
    assert not permissions.can_enrol_device(user)
    assert not permissions.can_review(user, world["targets"]["leigh"])
    assert not permissions.can_view_record(user, record)
    assert not permissions.can_edit_record(user, record)
    assert not permissions.may_see_personal(user, "observation", record)
