"""The sharing protocol as data: SharingRule and PurposeGrant rows decide personal fields
for the pull, the API, exports and OGC alike; the SQL form the selectors use gives the same
answers as the per-record functions; rules and grants are read in one query per request."""
from __future__ import annotations

import itertools
from datetime import timedelta

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from warden_app import permissions
from warden_app.models import Observation, Organisation, PurposeGrant, SharingRule, User
from warden_app.services.demo import demo_seed
from warden_app.services.sharing import DEFAULT_RULES, purpose_grant_issue, sharing_defaults_ensure

from ..statements import statements_sent
from .conftest import PASSWORD, PERSONAL

ALL_FIELDS = frozenset(f.name for f in Observation._meta.concrete_fields)
USERS = ("warden_leigh", "pcso_leigh", "warden_wigan", "supervisor_leigh", "analyst", "partner_fire", "admin", "dpo")


def fresh(user: User) -> User:
    return User.objects.get(pk=user.pk)  # rights are cached on the instance


# --- the declared protocol ---------------------------------------------------------------------

def test_every_database_starts_with_the_default_rule(db):
    """Migration 0004 creates it, so an upgraded database keeps deciding as before."""
    sharing_defaults_ensure()
    rule = SharingRule.objects.get(key=DEFAULT_RULES[0]["key"])
    assert rule.viewer_scope == "any" and rule.owner_scope == "own"
    assert rule.viewer_roles == ["warden", "pcso"] and rule.field_groups == ["personal"]


def test_seed_demo_is_idempotent_for_the_rules_too(db):
    demo_seed(password=PASSWORD)
    first = list(SharingRule.objects.order_by("pk").values())
    demo_seed(password=PASSWORD)
    assert list(SharingRule.objects.order_by("pk").values()) == first


def test_an_edited_default_rule_is_put_back(db):
    sharing_defaults_ensure()
    SharingRule.objects.filter(key=DEFAULT_RULES[0]["key"]).update(owner_scope="any")
    sharing_defaults_ensure()
    assert SharingRule.objects.get(key=DEFAULT_RULES[0]["key"]).owner_scope == "own"


@pytest.mark.parametrize("bad", [
    {"viewer_roles": ["analyst"]},  # analysts need a purpose grant
    {"viewer_roles": []},
    {"field_groups": ["everything"]},
    {"viewer_scope": "kind"},  # without a kind
    {"owner_scope": "organisation"},  # without an organisation
    {"viewer_kind": "police"},  # a kind with scope "any"
])
def test_rules_that_make_no_sense_are_refused_by_the_database(db, bad):
    values = {"key": "bad", "viewer_scope": "any", "viewer_roles": ["warden"], "owner_scope": "own",
              "field_groups": ["personal"]} | bad
    with pytest.raises(IntegrityError), transaction.atomic():
        SharingRule.objects.create(**values)


def test_purpose_grants_are_issued_by_admins_to_analysts_for_personal_fields(world):
    admin, analyst, warden = (world.users[n] for n in ("admin", "analyst", "warden_leigh"))
    until = timezone.now() + timedelta(days=1)
    with pytest.raises(PermissionDenied):
        purpose_grant_issue(granted_by=analyst, user=analyst, record_type="observation", fields=["description"],
                            purpose="x", valid_until=until)
    with pytest.raises(ValidationError):
        purpose_grant_issue(granted_by=admin, user=warden, record_type="observation", fields=["description"],
                            purpose="x", valid_until=until)
    with pytest.raises(ValidationError):
        purpose_grant_issue(granted_by=admin, user=analyst, record_type="observation", fields=["qualifier"],
                            purpose="x", valid_until=until)
    with pytest.raises(ValidationError):
        purpose_grant_issue(granted_by=admin, user=analyst, record_type="observation", fields=["description"],
                            purpose="  ", valid_until=until)
    with pytest.raises(IntegrityError), transaction.atomic():
        PurposeGrant.objects.create(user=admin, granted_by=admin, record_type="observation", fields=["description"],
                                    purpose="to myself", valid_from=timezone.now(), valid_until=until)


def test_a_grant_to_someone_who_is_no_longer_an_analyst_opens_nothing(world):
    analyst = world.users["analyst"]
    purpose_grant_issue(granted_by=world.users["admin"], user=analyst, record_type="observation",
                        fields=list(PERSONAL), purpose="case review", valid_until=timezone.now() + timedelta(days=1))
    record = Observation.objects.get(pk=world.records["police_leigh"])
    assert permissions.personal_fields_for(fresh(analyst), "observation", record) == frozenset(PERSONAL)
    analyst.groups.clear()
    assert permissions.personal_fields_for(fresh(analyst), "observation", record) == frozenset()


# --- rules reach the pull too ---------------------------------------------------------------------

def test_a_rule_for_police_staff_opens_council_records_in_their_pull(world):
    pcso = world.handheld("pcso_leigh")
    record = world.records["council_leigh"]
    pcso.pull_all()
    assert set(PERSONAL).isdisjoint(pcso.store[("observation", record)]["data"])
    SharingRule.objects.create(
        key="police-see-council", viewer_scope="kind", viewer_kind="police", viewer_roles=["pcso"],
        owner_scope="organisation", owner_organisation=Organisation.objects.get(slug="wigan-council"),
        field_groups=["personal"], note="ISP 4.2: joint tasking in Leigh",
    )
    fresh_pcso = world.handheld("pcso_leigh")
    fresh_pcso.cursor = None
    fresh_pcso.store.clear()
    fresh_pcso.pull_all()
    data = fresh_pcso.store[("observation", record)]["data"]
    assert data["description"] == "Two youths shouting at a woman"
    # The council warden is not police: nothing changes for them about police records.
    warden = world.handheld("warden_leigh")
    warden.pull_all()
    assert set(PERSONAL).isdisjoint(warden.store[("observation", world.records["police_leigh"])]["data"])


def test_a_rule_for_one_organisation_and_any_owner(world):
    police = Organisation.objects.get(slug="greater-manchester-police")
    SharingRule.objects.create(key="gmp-sees-all", viewer_scope="organisation", viewer_organisation=police,
                               viewer_roles=["pcso"], owner_scope="any", field_groups=["personal"])
    pcso = fresh(world.users["pcso_leigh"])
    for label in ("council_leigh", "council_wigan", "police_leigh"):
        record = Observation.objects.get(pk=world.records[label])
        assert permissions.personal_fields_for(pcso, "observation", record) == frozenset(PERSONAL), label
    warden = fresh(world.users["warden_leigh"])
    assert not permissions.may_see_personal(warden, "observation", Observation.objects.get(
        pk=world.records["police_leigh"]))


# --- the SQL twin agrees with the per-record functions ----------------------------------------------

def _configure(world, config: str) -> None:
    if config == "police-kind-rule":
        SharingRule.objects.create(
            key="police-see-council", viewer_scope="kind", viewer_kind="police", viewer_roles=["pcso", "warden"],
            owner_scope="organisation", owner_organisation=Organisation.objects.get(slug="wigan-council"),
            field_groups=["personal"])
    elif config == "supervisors-everywhere":
        SharingRule.objects.create(key="supervisors", viewer_scope="any", viewer_roles=["supervisor"],
                                   owner_scope="any", field_groups=["personal"])
    elif config == "analyst-grant":
        purpose_grant_issue(granted_by=world.users["admin"], user=world.users["analyst"], record_type="observation",
                            fields=["persons_involved", "photos"], purpose="hotspot validation",
                            valid_until=timezone.now() + timedelta(hours=1))
    elif config == "no-rules":
        SharingRule.objects.all().delete()


@pytest.mark.parametrize("config", ["defaults", "police-kind-rule", "supervisors-everywhere", "analyst-grant",
                                    "no-rules"])
def test_sql_scope_and_redaction_agree_with_can_view_record_and_personal_fields_for(world, config):
    _configure(world, config)
    records = list(Observation.objects.all())
    for username, record in itertools.product(USERS, records):
        user = fresh(world.users[username])
        scope = permissions.record_scope_q(user)
        in_scope = scope is True or (scope is not False and Observation.objects.filter(scope, pk=record.pk).exists())
        assert in_scope == permissions.can_view_record(user, record), (username, record.description)
        expected = permissions.personal_fields_for(user, "observation", record)
        for name, q in permissions.personal_fields_q(user, "observation").items():
            opened = q is True or (q is not False and Observation.objects.filter(q, pk=record.pk).exists())
            assert opened == (name in expected), (config, username, record.description, name)
        assert permissions.visible_fields(user, "observation", record, ALL_FIELDS) == (
            ALL_FIELDS - (frozenset(PERSONAL) - expected))


def test_rules_and_grants_are_read_once_per_request(world):
    records = list(Observation.objects.all())
    warden = fresh(world.users["warden_leigh"])
    permissions.roles_of(warden)
    with statements_sent() as seen:
        for record in records * 20:
            permissions.visible_fields(warden, "observation", record, ALL_FIELDS)
    assert len(seen) == 1, seen.all
    analyst = fresh(world.users["analyst"])
    permissions.roles_of(analyst)
    with statements_sent() as seen:
        for record in records * 20:
            permissions.visible_fields(analyst, "observation", record, ALL_FIELDS)
        permissions.personal_fields_q(analyst, "observation")
    assert len(seen) == 1, seen.all
