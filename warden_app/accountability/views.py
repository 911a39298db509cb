"""The DPO's API (access log, subject access, rectify/restrict/erase) and escalations:
thin views that parse, call a selector or service, and answer in JSON."""
from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.db import transaction
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import BasePermission
from rest_framework.response import Response

from fieldsync import parsing
from fieldsync.api_views import ERROR, ProtocolView
from fieldsync.errors import ApiError, invalid

from .. import permissions
from ..models import AccessAction, Escalation, PartnerEndpoint
from .permissions import can_answer_subject_requests, can_view_escalation
from .selectors import LogFilter, access_log_page, escalation_record, log_actor, subject_criteria
from .services.access_log import access_log_consulted
from .services.escalation import record_escalate
from .services.subjects import (
    RECTIFIABLE,
    RESTRICTABLE,
    record_erase,
    record_rectify,
    record_restrict,
    subject_access_search,
)


def _param(name: str, kind=str, description: str = "") -> OpenApiParameter:
    return OpenApiParameter(name, kind, required=False, description=description)


# 400 (parameters), 403 (not the DPO, or not signed in: session first, so no 401) and 404
# are added from the views by fieldsync.openapi.ErrorResponsesSchema.
JUSTIFIED = {"justification": serializers.CharField(help_text="the request's reference or ground")}
ACCESS_LOG_ENTRY = inline_serializer("AccessLogEntry", {
    "id": serializers.IntegerField(), "at": serializers.DateTimeField(),
    "actor": inline_serializer("AccessLogActor", {"id": serializers.IntegerField(),
                                                  "username": serializers.CharField()}, allow_null=True),
    "action": serializers.ChoiceField(AccessAction.values), "record_type": serializers.CharField(allow_blank=True),
    "record_ids": serializers.ListField(child=serializers.CharField()),
    "device_id": serializers.UUIDField(allow_null=True), "recipient": serializers.CharField(allow_blank=True),
    "purpose": serializers.CharField(allow_blank=True), "details": serializers.DictField(),
    "sealed": inline_serializer("AccessLogSeal", {"seq": serializers.IntegerField(), "hash": serializers.CharField()},
                                allow_null=True),
})
ACCESS_LOG_PAGE = inline_serializer("AccessLogPage", {
    "results": ACCESS_LOG_ENTRY.__class__(many=True), "next": serializers.URLField(allow_null=True),
})
SUBJECTS_PAGE = inline_serializer("SubjectRecordsPage", {
    "results": serializers.ListField(child=serializers.DictField(), help_text="the records, personal fields open"),
    "next": serializers.URLField(allow_null=True),
})
ESCALATION = inline_serializer("Escalation", {
    "id": serializers.UUIDField(), "record_type": serializers.CharField(), "record_id": serializers.UUIDField(),
    "endpoint": inline_serializer("EscalationEndpoint", {
        "id": serializers.IntegerField(), "name": serializers.CharField(), "organisation": serializers.CharField()}),
    "state": serializers.ChoiceField(Escalation.State.values), "attempts": serializers.IntegerField(),
    "last_status": serializers.IntegerField(allow_null=True), "last_error": serializers.CharField(allow_blank=True),
    "created_at": serializers.DateTimeField(), "last_attempt_at": serializers.DateTimeField(allow_null=True),
    "next_attempt_at": serializers.DateTimeField(allow_null=True),
    "delivered_at": serializers.DateTimeField(allow_null=True),
    "partner_reference": serializers.CharField(allow_blank=True),
    "personal_fields": serializers.ListField(child=serializers.CharField()),
})


def _record_type_path(types) -> OpenApiParameter:
    """The path's record type: only the types the operation acts on (others answer 400)."""
    return OpenApiParameter("record_type", str, OpenApiParameter.PATH, enum=sorted(types))


class CanReadAccessLog(BasePermission):
    message = "Only the data protection officer reads the access log."

    def has_permission(self, request, view) -> bool:
        return permissions.can_read_access_log(request.user)


class AnswersSubjectRequests(BasePermission):
    message = "Only the data protection officer answers subject requests."

    def has_permission(self, request, view) -> bool:
        return can_answer_subject_requests(request.user)


def _body(request) -> dict[str, Any]:
    if not hasattr(request.data, "get"):
        raise ApiError("invalid", "Send a JSON object.")
    return request.data


# --- the access log ------------------------------------------------------------------------


class AccessLogView(ProtocolView):
    """GET /api/v1/dpo/access-log?actor=&record=&action=&record_type=&from=&to=&limit=&before=&purpose=

    Newest first; `next` follows on. The read is itself logged (record_type access_log)."""

    permission_classes = [CanReadAccessLog]

    @extend_schema(summary="The s.62 access log (DPO only)", responses={200: ACCESS_LOG_PAGE}, parameters=[
        _param("actor", description="username or user id"), _param("record", OpenApiTypes.UUID),
        OpenApiParameter("action", str, enum=AccessAction.values, description="what was done"),
        _param("record_type"), _param("from", OpenApiTypes.DATETIME, "on or after (a date: its start)"),
        _param("to", OpenApiTypes.DATETIME, "before (a date: its end)"), _param("limit", int),
        _param("before", int, "the next page: rows with smaller ids"), _param("purpose", description="why you look"),
    ])
    def get(self, request):
        q = request.query_params
        actor = log_actor(q["actor"]) if q.get("actor") else None
        action = parsing.choice("action", q.get("action"), AccessAction.values)
        flt = LogFilter(actor=actor, record_id=parsing.uuid_value("record", q.get("record")), action=action,
                        record_type=q.get("record_type") or None, since=parsing.when("from", q.get("from")),
                        until=parsing.when("to", q.get("to"), end=True))
        limit = parsing.page_limit(q.get("limit"), default=settings.ACCESS_LOG_PAGE_DEFAULT,
                                   maximum=settings.ACCESS_LOG_PAGE_MAX)
        with transaction.atomic():
            rows, more = access_log_page(flt, limit=limit, before=parsing.integer("before", q.get("before"), minimum=0))
            access_log_consulted(user=request.user, entry_ids=[r["id"] for r in rows], query=flt.describe(),
                                 via="api.dpo.access_log", purpose=q.get("purpose", ""))
        next_url = None
        if more and rows:
            params = q.copy()
            params["before"] = str(rows[-1]["id"])
            next_url = request.build_absolute_uri(request.path) + "?" + params.urlencode()
        return Response({"results": [_entry(r) for r in rows], "next": next_url})


def _entry(row: dict) -> dict:
    return {
        "id": row["id"], "at": row["at"].isoformat(),
        "actor": {"id": row["actor_id"], "username": row["actor__username"]} if row["actor_id"] else None,
        "action": row["action"], "record_type": row["record_type"],
        "record_ids": [str(i) for i in row["record_ids"]],
        "device_id": str(row["device_id"]) if row["device_id"] else None,
        "recipient": row["recipient"], "purpose": row["purpose"], "details": row["details"],
        "sealed": {"seq": row["seq"], "hash": row["hash"]} if row["seq"] is not None else None,
    }


# --- data subjects' rights ----------------------------------------------------------------


class SubjectsView(ProtocolView):
    """GET /api/v1/dpo/subjects?name=&description=&age=&age_min=&age_max=&purpose=&limit=&after="""

    permission_classes = [AnswersSubjectRequests]

    @extend_schema(summary="Subject access: every record naming a person (DPO only)",
                   responses={200: SUBJECTS_PAGE}, parameters=[
        _param("name"), _param("description"), _param("age", int), _param("age_min", int), _param("age_max", int),
        _param("purpose", description="the request's reference (required by default)"), _param("limit", int),
        _param("after", OpenApiTypes.UUID, "the next page"),
    ])
    def get(self, request):
        q = request.query_params
        criteria = subject_criteria(q)
        limit = parsing.page_limit(q.get("limit"), default=settings.ACCESS_LOG_PAGE_DEFAULT,
                                   maximum=settings.ACCESS_LOG_PAGE_MAX)
        records, more = subject_access_search(user=request.user, criteria=criteria, purpose=q.get("purpose", ""),
                                              limit=limit, after=parsing.uuid_value("after", q.get("after")))
        next_url = None
        if more and records:
            params = q.copy()
            params["after"] = records[-1]["id"]
            next_url = request.build_absolute_uri(request.path) + "?" + params.urlencode()
        return Response({"results": records, "next": next_url})


class SubjectRecordView(ProtocolView):
    """PATCH /api/v1/dpo/records/<type>/<id>: rectify {persons_involved?, description?, justification}."""

    permission_classes = [AnswersSubjectRequests]

    @extend_schema(summary="Rectify personal fields (DPO only)", parameters=[_record_type_path(RECTIFIABLE)],
                   responses={200: inline_serializer("Rectified", {"id": serializers.UUIDField(),
                                                                   "version": serializers.IntegerField()})},
                   request=inline_serializer(
        "Rectification", {"persons_involved": serializers.ListField(child=serializers.DictField(), required=False),
                          "description": serializers.CharField(required=False), **JUSTIFIED}))
    def patch(self, request, record_type: str, record_id: uuid.UUID):
        body = dict(_body(request))
        justification = str(body.pop("justification", "") or "")
        version = record_rectify(user=request.user, record_type=record_type, record_id=record_id, changes=body,
                                 justification=justification)
        return Response({"id": str(record_id), "version": version})


class SubjectRestrictView(ProtocolView):
    """POST /api/v1/dpo/records/<type>/<id>/restriction {restricted: bool, justification}."""

    permission_classes = [AnswersSubjectRequests]

    @extend_schema(summary="Restrict processing, or lift it (DPO only)", parameters=[_record_type_path(RESTRICTABLE)],
                   responses={200: inline_serializer("Restricted", {
                       "id": serializers.UUIDField(), "processing_restricted": serializers.BooleanField(),
                       "changed": serializers.BooleanField()})},
                   request=inline_serializer(
        "Restriction", {"restricted": serializers.BooleanField(default=True), **JUSTIFIED}))
    def post(self, request, record_type: str, record_id: uuid.UUID):
        body = _body(request)
        restricted = body.get("restricted", True)
        if not isinstance(restricted, bool):
            raise invalid("restricted", "wrong_type", "true or false")
        changed = record_restrict(user=request.user, record_type=record_type, record_id=record_id,
                                  restricted=restricted, justification=str(body.get("justification") or ""))
        return Response({"id": str(record_id), "processing_restricted": restricted, "changed": changed})


class SubjectEraseView(ProtocolView):
    """POST /api/v1/dpo/records/<type>/<id>/erasure {justification, fields?}."""

    permission_classes = [AnswersSubjectRequests]

    @extend_schema(summary="Erase personal fields everywhere (DPO only)",
                   parameters=[_record_type_path(t for t, fields in permissions.PERSONAL_FIELDS.items() if fields)],
                   responses={200: inline_serializer("Erased", {
                       "id": serializers.UUIDField(), "erased": serializers.DictField(),
                       "access_log_entry": serializers.IntegerField()})},
                   request=inline_serializer(
        "Erasure", {"fields": serializers.ListField(child=serializers.CharField(), required=False), **JUSTIFIED}))
    def post(self, request, record_type: str, record_id: uuid.UUID):
        body = _body(request)
        fields = body.get("fields")
        if fields is not None and not (isinstance(fields, list) and all(isinstance(f, str) for f in fields)):
            raise invalid("fields", "wrong_type", "a list of field names")
        erased, entry = record_erase(user=request.user, record_type=record_type, record_id=record_id,
                                     justification=str(body.get("justification") or ""), fields=fields)
        return Response({"id": str(record_id), "erased": erased.details(), "access_log_entry": entry.pk})


# --- escalations --------------------------------------------------------------------------


class EscalationsView(ProtocolView):
    """POST /api/v1/escalations {record_type, record_id, endpoint, purpose} → 202."""

    @extend_schema(summary="Escalate a record to a partner system", request=inline_serializer("EscalationRequest", {
        "record_type": serializers.ChoiceField(["observation", "audit_item"]), "record_id": serializers.UUIDField(),
        "endpoint": serializers.IntegerField(), "purpose": serializers.CharField(),
    }), responses={202: ESCALATION, 400: ERROR, 404: ERROR, 409: ERROR})
    def post(self, request):
        body = _body(request)
        endpoint = parsing.integer("endpoint", body.get("endpoint"), minimum=0)
        if endpoint is None:
            raise invalid("endpoint", "required", "the id of a partner endpoint")
        record_id = parsing.uuid_value("record_id", body.get("record_id"))
        if record_id is None:
            raise invalid("record_id", "required", "record_id is required", summary="record_id is required")
        escalation = record_escalate(user=request.user, record_type=str(body.get("record_type") or ""),
                                     record_id=record_id, endpoint=endpoint, purpose=str(body.get("purpose") or ""))
        return Response(escalation_view(escalation), status=202)


class EscalationDetailView(ProtocolView):
    """GET /api/v1/escalations/<id>: its delivery state."""

    @extend_schema(summary="An escalation's delivery state", responses={200: ESCALATION, 404: ERROR})
    def get(self, request, escalation_id: uuid.UUID):
        escalation = Escalation.objects.select_related("endpoint__organisation").filter(pk=escalation_id).first()
        record = escalation_record(escalation.record_type, escalation.record_id) if escalation else None
        if escalation is None or not can_view_escalation(request.user, escalation, record):
            raise ApiError("not_found", "No such escalation.", status_code=404)
        return Response(escalation_view(escalation))


class PartnerEndpointsView(ProtocolView):
    """GET /api/v1/escalations/endpoints: where records may be escalated (no secrets)."""

    @extend_schema(summary="Partner endpoints records may be escalated to", responses={200: inline_serializer(
        "PartnerEndpointList", {"results": inline_serializer("PartnerEndpoint", {
            "id": serializers.IntegerField(), "name": serializers.CharField(), "kind": serializers.CharField(),
            "organisation": serializers.CharField()}, many=True)})})
    def get(self, request):
        endpoints = PartnerEndpoint.objects.filter(active=True).select_related("organisation")
        return Response({"results": [
            {"id": e.pk, "name": e.name, "kind": e.kind, "organisation": e.organisation.name} for e in endpoints
        ]})


def escalation_view(e: Escalation) -> dict:
    return {
        "id": str(e.pk), "record_type": e.record_type, "record_id": str(e.record_id),
        "endpoint": {"id": e.endpoint_id, "name": e.endpoint.name, "organisation": e.endpoint.organisation.name},
        "state": e.state, "attempts": e.attempts, "last_status": e.last_status, "last_error": e.last_error,
        "created_at": e.created_at.isoformat(),
        "last_attempt_at": e.last_attempt_at.isoformat() if e.last_attempt_at else None,
        "next_attempt_at": e.next_attempt_at.isoformat() if e.next_attempt_at else None,
        "delivered_at": e.delivered_at.isoformat() if e.delivered_at else None,
        "partner_reference": e.partner_reference, "personal_fields": e.personal_fields,
    }
