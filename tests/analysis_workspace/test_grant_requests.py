"""Purpose-grant requests: an analyst asks, an administrator (never the asker) decides."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.utils import timezone

from warden_app.models import PurposeGrant, PurposeGrantRequest
from warden_app.roles import Role
from warden_app.services import purpose_requests as service


def ask(client, **data):
    until = (timezone.localdate() + timedelta(days=30)).isoformat()
    return client.post("/analysis/grants/", {"record_type": "observation", "fields": ["description"],
                                             "purpose": "quarterly repeat-victim review", "valid_until": until,
                                             **data})


def test_an_analyst_asks_and_sees_the_request_waiting(signed_in, world):
    client = signed_in("analyst")
    response = ask(client)
    assert response.status_code == 302
    request = PurposeGrantRequest.objects.get()
    assert request.requested_by == world.users["analyst"] and request.fields == ["description"]
    body = client.get(response["Location"]).content.decode()
    assert "Waiting for a decision" in body and "Description" in body


@pytest.mark.parametrize("data", [{"fields": ["author"]}, {"fields": []}, {"purpose": "  "},
                                  {"valid_until": "soon"}, {"record_type": "street_audit"},
                                  {"valid_from": "2030-01-01"}])
def test_a_bad_request_is_refused_with_the_form_again(signed_in, world, data):
    response = ask(signed_in("analyst"), **data)
    assert response.status_code == 400 and b"Please correct" in response.content
    assert not PurposeGrantRequest.objects.exists()


def _request(world):
    return service.purpose_request_make(user=world.users["analyst"], record_type="observation",
                                        fields=["description", "photos"], purpose="review", valid_from=None,
                                        valid_until=timezone.now() + timedelta(days=10))


def test_approval_issues_the_grant_by_the_decider(world):
    decided = service.purpose_request_approve(request=_request(world), decided_by=world.users["admin"])
    grant = PurposeGrant.objects.get()
    assert decided.state == "approved" and decided.grant == grant
    assert grant.granted_by == world.users["admin"] and grant.user == world.users["analyst"]
    assert grant.fields == ["description", "photos"] and grant.purpose == "review"


def test_refusal_needs_a_reason_and_opens_nothing(signed_in, world):
    request = _request(world)
    with pytest.raises(ValidationError):
        service.purpose_request_refuse(request=request, decided_by=world.users["admin"], reason=" ")
    service.purpose_request_refuse(request=request, decided_by=world.users["admin"], reason="too broad")
    assert not PurposeGrant.objects.exists()
    assert "too broad" in signed_in("analyst").get("/analysis/grants/").content.decode()
    with pytest.raises(ValidationError):  # decided once
        service.purpose_request_approve(request=request, decided_by=world.users["admin"])


def test_nobody_decides_their_own_request_and_only_admins_decide(world):
    from django.contrib.auth.models import Group

    analyst = world.users["analyst"]
    request = _request(world)
    with pytest.raises(PermissionDenied):
        service.purpose_request_approve(request=request, decided_by=world.users["supervisor_leigh"])
    analyst.groups.add(Group.objects.get(name=Role.ADMIN.value))
    from warden_app import permissions

    permissions.forget_cached_rights(analyst)
    with pytest.raises(PermissionDenied):
        service.purpose_request_approve(request=request, decided_by=analyst)
    assert PurposeGrantRequest.objects.get().state == "pending" and not PurposeGrant.objects.exists()


def test_the_admin_page_decides_requests(world):
    from django.test import Client

    request = _request(world)
    client = Client()
    client.force_login(world.users["admin"])
    assert client.get("/admin/warden_app/purposegrantrequest/").status_code == 200
    response = client.post("/admin/warden_app/purposegrantrequest/", {
        "action": "approve_requests", "_selected_action": [request.pk]})
    assert response.status_code == 302
    assert PurposeGrantRequest.objects.get().state == "approved"
    assert PurposeGrant.objects.get().granted_by == world.users["admin"]


def test_the_admin_change_form_refuses_with_a_reason(world):
    from django.test import Client

    request = _request(world)
    client = Client()
    client.force_login(world.users["admin"])
    url = f"/admin/warden_app/purposegrantrequest/{request.pk}/change/"
    assert b"refusal_reason" in client.get(url).content
    assert client.post(url, {"decision": "refuse", "refusal_reason": ""}).status_code == 200  # the form again
    assert PurposeGrantRequest.objects.get().state == "pending"
    assert client.post(url, {"decision": "refuse", "refusal_reason": "too broad"}).status_code == 302
    refused = PurposeGrantRequest.objects.get()
    assert refused.state == "refused" and refused.reason == "too broad" and refused.decided_by == world.users["admin"]
    assert not PurposeGrant.objects.exists()
