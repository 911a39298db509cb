"""The sharing protocol's admin pages (rules, purpose grants) and the API token page, through
the Django test client on real PostgreSQL, as the demo admin, DPO and analyst: list, add,
change, revoke; every write through its service; validation said in words; the token's
secret and hash never in any answer; only the admin role gets in."""
from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.urls import reverse
from django.utils import timezone

from warden_app import permissions
from warden_app.models import ApiToken, PurposeGrant, SharingRule, User
from warden_app.services.api_tokens import api_token_create, api_token_hash, api_token_user
from warden_app.services.sharing import DEFAULT_RULES, purpose_grant_issue

pytestmark = pytest.mark.django_db

PAGES = ("sharingrule", "purposegrant", "apitoken")
PERSONAL = ["description", "persons_involved", "photos"]


def url(model: str, page: str = "changelist", *args) -> str:
    return reverse(f"admin:warden_app_{model}_{page}", args=args)


def signed_in(client, demo, username: str):
    client.force_login(demo.users[username])
    return client


def fresh(user: User) -> User:
    """The user as the next request loads them: nothing worked out earlier is kept."""
    return User.objects.get(pk=user.pk)


def council_record(demo) -> SimpleNamespace:
    """What the personal-field decision reads of a record: a council warden's, outside every
    area (so no supervisor's relationship to it matters here)."""
    return SimpleNamespace(author_id=demo.users["warden_leigh"].pk, area_id=None,
                           organisation_id=demo.organisations["Wigan Council"].pk)


@pytest.fixture
def admin_client(client, demo):
    return signed_in(client, demo, "admin")


def grant_form(demo, **changes) -> dict:
    form = {"user": demo.users["analyst"].pk, "record_type": "observation", "fields": ["description"],
            "purpose": "repeat victims study, case 2026-41", "valid_from_0": "", "valid_from_1": "",
            "valid_until_0": (timezone.localdate() + timedelta(days=30)).isoformat(), "valid_until_1": "17:00:00"}
    return {**form, **changes}


def rule_form(demo, **changes) -> dict:
    form = {"key": "police-see-council-personal", "viewer_scope": "kind", "viewer_kind": "police",
            "viewer_organisation": "", "viewer_roles": ["pcso"], "owner_scope": "organisation",
            "owner_organisation": demo.organisations["Wigan Council"].pk, "field_groups": ["personal"],
            "note": "Protocol 4.2: PCSOs see personal details in the council's records."}
    return {**form, **changes}


# --- who gets in -------------------------------------------------------------------------------

def test_the_admin_index_lists_the_three_pages_and_each_opens(admin_client):
    index = admin_client.get(reverse("admin:index")).content.decode()
    for model in PAGES:
        assert url(model) in index
        assert admin_client.get(url(model)).status_code == 200
    assert "Sharing rules" in index and "Purpose grants" in index and "API tokens" in index


@pytest.mark.parametrize("model", PAGES)
def test_the_dpo_is_refused_every_page_and_never_sees_them_listed(client, demo, model):
    dpo = signed_in(client, demo, "dpo")
    assert url(model) not in dpo.get(reverse("admin:index")).content.decode()
    assert dpo.get(url(model)).status_code == 403
    assert dpo.get(url(model, "add")).status_code == 403


@pytest.mark.parametrize("model", PAGES)
def test_an_analyst_gets_the_closed_door(client, demo, model):
    # Not staff: the front door's 403 page (with a way to sign out), as for every admin page.
    assert signed_in(client, demo, "analyst").get(url(model)).status_code == 403
    anonymous = client.__class__().get(url(model))
    assert anonymous.status_code == 302 and anonymous["Location"].startswith("/admin/login/")


# --- sharing rules -----------------------------------------------------------------------------

def test_the_rule_list_says_who_sees_what_in_whose_records(admin_client):
    body = admin_client.get(url("sharingrule")).content.decode()
    assert DEFAULT_RULES[0]["key"] in body
    assert "Wardens, PCSOs of any organisation" in body
    assert "their own organisation&#x27;s" in body
    assert "Observation: description, persons involved, photos" in body
    # The filters an admin narrows a long protocol with.
    assert "role that sees" in body and "?role=pcso" in body


def test_a_rule_added_in_the_admin_opens_fields_from_the_next_request(admin_client, demo):
    pcso, record = demo.users["pcso_leigh"], council_record(demo)
    assert permissions.personal_fields_for(fresh(pcso), "observation", record) == frozenset()

    response = admin_client.post(url("sharingrule", "add"), rule_form(demo))
    assert response.status_code == 302, response.content.decode()[:2000]
    rule = SharingRule.objects.get(key="police-see-council-personal")
    assert (rule.viewer_scope, rule.viewer_kind, rule.viewer_roles) == ("kind", "police", ["pcso"])
    assert permissions.personal_fields_for(fresh(pcso), "observation", record) == frozenset(PERSONAL)
    # A warden of the council was not named: the rule does not reach them.
    other = SimpleNamespace(author_id=demo.users["pcso_leigh"].pk, area_id=None,
                            organisation_id=demo.organisations["Greater Manchester Police"].pk)
    assert permissions.personal_fields_for(fresh(demo.users["warden_wigan"]), "observation", other) == frozenset()

    # Changed to open nothing: the next request withholds the fields again.
    change = rule_form(demo, field_groups=[])
    change.pop("key")
    assert admin_client.post(url("sharingrule", "change", rule.pk), change).status_code == 302
    assert SharingRule.objects.get(pk=rule.pk).field_groups == []
    assert permissions.personal_fields_for(fresh(pcso), "observation", record) == frozenset()

    page = admin_client.get(url("sharingrule", "change", rule.pk)).content.decode()
    assert "PCSOs of every police organisation see nothing in Wigan Council&#x27;s records." in page


def test_values_a_scope_does_not_use_are_dropped_not_kept(admin_client, demo):
    """'Any organisation' with a police kind left in the form: saved as any, the kind dropped
    (the table's constraint would refuse it, with only a constraint name to show)."""
    form = rule_form(demo, key="everyone-any", viewer_scope="any", owner_scope="own")
    assert admin_client.post(url("sharingrule", "add"), form).status_code == 302
    rule = SharingRule.objects.get(key="everyone-any")
    assert (rule.viewer_kind, rule.viewer_organisation, rule.owner_organisation) == ("", None, None)


@pytest.mark.parametrize(("changes", "message"), [
    ({"viewer_scope": "organisation", "viewer_organisation": ""}, "Choose the organisation whose staff see"),
    ({"viewer_kind": ""}, "Choose the kind of organisation"),
    ({"owner_organisation": ""}, "Choose the organisation whose records are shared"),
    ({"viewer_roles": []}, "This field is required"),
    ({"viewer_roles": ["analyst"]}, "Select a valid choice"),
    ({"note": ""}, "This field is required"),
    ({"key": "not a slug!"}, "Enter a valid"),
])
def test_a_rule_that_makes_no_sense_is_refused_in_words(admin_client, demo, changes, message):
    response = admin_client.post(url("sharingrule", "add"), rule_form(demo, **changes))
    assert response.status_code == 200
    body = response.content.decode()
    assert message in body
    assert "Constraint" not in body and "sharing_rule_" not in body
    assert SharingRule.objects.count() == len(DEFAULT_RULES)


def test_the_default_clause_is_changed_but_never_deleted(admin_client, demo):
    default = SharingRule.objects.get(key=DEFAULT_RULES[0]["key"])
    assert admin_client.get(url("sharingrule", "delete", default.pk)).status_code == 403
    assert admin_client.post(url("sharingrule", "delete", default.pk), {"post": "yes"}).status_code == 403
    # A bulk delete holding it is refused whole; another rule alone goes.
    admin_client.post(url("sharingrule", "add"), rule_form(demo))
    extra = SharingRule.objects.get(key="police-see-council-personal")
    both = {"action": "delete_selected", "post": "yes", "_selected_action": [default.pk, extra.pk]}
    assert admin_client.post(url("sharingrule"), both).status_code == 403
    assert SharingRule.objects.count() == 2
    alone = {"action": "delete_selected", "post": "yes", "_selected_action": [extra.pk]}
    assert admin_client.post(url("sharingrule"), alone).status_code == 302
    assert list(SharingRule.objects.values_list("key", flat=True)) == [default.key]
    # Its name is fixed once made: seeding and the DPO find it by that name.
    page = admin_client.get(url("sharingrule", "change", default.pk)).content.decode()
    assert 'name="key"' not in page


# --- purpose grants ----------------------------------------------------------------------------

def test_a_grant_issued_in_the_admin_is_granted_by_the_admin_and_opens_the_fields(admin_client, demo):
    analyst, record = demo.users["analyst"], council_record(demo)
    assert permissions.personal_fields_for(fresh(analyst), "observation", record) == frozenset()
    response = admin_client.post(url("purposegrant", "add"), grant_form(demo))
    assert response.status_code == 302, response.content.decode()[:2000]
    grant = PurposeGrant.objects.get()
    assert grant.granted_by == demo.users["admin"] and grant.user == analyst
    assert grant.fields == ["description"] and grant.revoked_at is None
    assert grant.valid_from <= timezone.now() < grant.valid_until  # "from" left empty: now
    assert permissions.personal_fields_for(fresh(analyst), "observation", record) == frozenset({"description"})

    listing = admin_client.get(url("purposegrant")).content.decode()
    assert "repeat victims study, case 2026-41" in listing and "In force" in listing
    assert "analyst" in listing
    # An issued grant is a record: its page shows it and has nothing to save.
    page = admin_client.get(url("purposegrant", "change", grant.pk)).content.decode()
    assert "repeat victims study" in page and 'name="_save"' not in page
    edit = admin_client.post(url("purposegrant", "change", grant.pk), grant_form(demo, purpose="changed"))
    assert edit.status_code == 403 and PurposeGrant.objects.get().purpose.startswith("repeat")


@pytest.mark.parametrize(("changes", "message"), [
    ({"valid_from_0": "2030-01-02", "valid_from_1": "09:00:00", "valid_until_0": "2030-01-01"},
     "The grant must end after it starts."),
    ({"purpose": "   "}, "This field is required"),
    ({"fields": []}, "This field is required"),
    ({"fields": ["qualifier"]}, "Select a valid choice"),
    ({"valid_until_0": "", "valid_until_1": ""}, "This field is required"),
])
def test_a_grant_that_makes_no_sense_is_refused_in_words(admin_client, demo, changes, message):
    response = admin_client.post(url("purposegrant", "add"), grant_form(demo, **changes))
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not PurposeGrant.objects.exists()


def test_only_analysts_can_be_chosen_never_the_admin_themselves(admin_client, demo):
    page = admin_client.get(url("purposegrant", "add")).content.decode()
    assert f'value="{demo.users["analyst"].pk}"' in page
    for username in ("warden_leigh", "admin", "dpo"):
        assert f'value="{demo.users[username].pk}"' not in page
        response = admin_client.post(url("purposegrant", "add"), grant_form(demo, user=demo.users[username].pk))
        assert response.status_code == 200 and "Select a valid choice" in response.content.decode()
    assert not PurposeGrant.objects.exists()


def test_revoking_a_grant_closes_the_fields_from_the_next_request(admin_client, demo):
    analyst, record = demo.users["analyst"], council_record(demo)
    grant = purpose_grant_issue(granted_by=demo.users["admin"], user=analyst, record_type="observation",
                                fields=PERSONAL, purpose="case review",
                                valid_until=timezone.now() + timedelta(days=3))
    assert permissions.personal_fields_for(fresh(analyst), "observation", record) == frozenset(PERSONAL)
    response = admin_client.post(url("purposegrant"), {"action": "revoke_grants", "_selected_action": [grant.pk]},
                                 follow=True)
    assert "1 purpose grant(s) revoked." in response.content.decode()
    grant.refresh_from_db()
    assert grant.revoked_at is not None and grant.revoked_by == demo.users["admin"]
    assert permissions.personal_fields_for(fresh(analyst), "observation", record) == frozenset()
    assert "Revoked" in admin_client.get(url("purposegrant") + "?state=revoked").content.decode()
    assert admin_client.get(url("purposegrant", "delete", grant.pk)).status_code == 403


# --- API tokens --------------------------------------------------------------------------------

@pytest.fixture
def analyst_token(demo):
    row, token = api_token_create(user=demo.users["analyst"], name="QGIS laptop")
    return row, token


def test_the_token_list_and_page_never_show_the_secret_or_its_hash(admin_client, analyst_token):
    row, token = analyst_token
    secret_parts = (token, api_token_hash(token), token[len(row.prefix):], row.password_fingerprint)
    for path in (url("apitoken"), url("apitoken", "change", row.pk), url("apitoken") + "?q=QGIS",
                 url("apitoken") + "?state=live", url("apitoken", "history", row.pk)):
        response = admin_client.get(path)
        assert response.status_code == 200, path
        body = response.content.decode()
        for secret in secret_parts:
            assert secret not in body, path
    listing = admin_client.get(url("apitoken")).content.decode()
    assert "QGIS laptop" in listing and f"{row.prefix}…" in listing and "Active" in listing
    page = admin_client.get(url("apitoken", "change", row.pk)).content.decode()
    assert "token_hash" not in page and "fingerprint" not in page.lower() and 'name="_save"' not in page


def test_tokens_are_not_made_edited_or_deleted_in_the_admin(admin_client, analyst_token):
    row, _ = analyst_token
    assert admin_client.get(url("apitoken", "add")).status_code == 403
    assert admin_client.post(url("apitoken", "change", row.pk), {"name": "renamed"}).status_code == 403
    assert admin_client.get(url("apitoken", "delete", row.pk)).status_code == 403
    assert ApiToken.objects.get().name == "QGIS laptop"


def test_the_admin_revokes_selected_tokens_and_they_stop_working(admin_client, analyst_token):
    row, token = analyst_token
    assert api_token_user(token) is not None
    response = admin_client.post(url("apitoken"), {"action": "revoke_tokens", "_selected_action": [row.pk]},
                                 follow=True)
    assert "1 API token(s) revoked." in response.content.decode()
    assert api_token_user(token) is None
    assert "Revoked" in admin_client.get(url("apitoken") + "?state=revoked").content.decode()
    again = admin_client.post(url("apitoken"), {"action": "revoke_tokens", "_selected_action": [row.pk]},
                              follow=True)
    assert "0 API token(s) revoked (1 already revoked)." in again.content.decode()


def test_the_dpo_cannot_revoke_a_token(client, demo, analyst_token):
    row, token = analyst_token
    dpo = signed_in(client, demo, "dpo")
    assert dpo.post(url("apitoken"), {"action": "revoke_tokens", "_selected_action": [row.pk]}).status_code == 403
    assert api_token_user(token) is not None
