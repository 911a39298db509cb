"""Sync protocol v1 over HTTP: thin views that parse, authenticate and call services."""
from __future__ import annotations

import re

from django.conf import settings
from django.http import FileResponse, HttpResponse
from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import AllowAny, BasePermission, IsAuthenticated

from fieldsync import parsing
from fieldsync.api_views import ERROR, ProtocolView
from fieldsync.errors import ApiError, field_error
from fieldsync.responses import json_response

from . import bodies, registry
from .attachments import attachment_store
from .auth import DeviceTokenAuthentication
from .models import Device
from .photo_access import photo_read, photo_visible
from .pull import pull_changes
from .push import push_apply
from .schema import (
    AttachmentStoredSerializer,
    EnrolmentSerializer,
    ManifestSerializer,
    PullPageSerializer,
    PushAnswerSerializer,
    RevocationSerializer,
    SyncStatusSerializer,
)
from .selectors import sync_status
from .services.devices import device_enrol, device_revoke
from .throttling import DeviceRateThrottle, EnrolThrottle

SHA256_PATH = re.compile(r"^[0-9a-f]{64}$")


class IsDevice(BasePermission):
    """The caller authenticated with a device token (request.auth is the Device)."""

    def has_permission(self, request, view) -> bool:
        return isinstance(request.auth, Device)


class DeviceView(ProtocolView):
    authentication_classes = [DeviceTokenAuthentication]
    permission_classes = [IsDevice]
    throttle_classes = [DeviceRateThrottle]


def read_json_body(request, *, limit: int, check_depth: bool = True) -> object:
    """The body as JSON, refusing wrong media types (415), oversize bodies (413), malformed
    JSON (400 malformed_json) and JSON nesting deeper than JSON_MAX_DEPTH (400 too_deep)
    before anything is processed. A caller checking the depth itself, part by part (the
    push, per mutation), passes check_depth=False."""
    content_type = request.META.get("CONTENT_TYPE", "").split(";")[0].strip().lower()
    if content_type != "application/json":
        raise ApiError("unsupported_media_type", "Send application/json.", status_code=415)
    body = bodies.read_limited(request._request, limit, bodies.declared_length(request.META))
    return bodies.json_loads(body, max_depth=settings.JSON_MAX_DEPTH if check_depth else None)


class EnrolView(ProtocolView):
    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes = [EnrolThrottle]

    @extend_schema(
        # JSON only: the body is read raw (read_json_body), so DRF's form parsers never apply.
        request={"application/json": inline_serializer("EnrolRequest", {
            "username": serializers.CharField(), "password": serializers.CharField(),
            "label": serializers.CharField(), "platform": serializers.CharField(required=False),
        })},
        responses={201: EnrolmentSerializer, 400: ERROR, 401: ERROR, 403: ERROR, 413: ERROR},
        summary="Enrol a handheld (field staff and supervisors)",
    )
    def post(self, request):
        body = read_json_body(request, limit=16 * 1024)
        if not isinstance(body, dict):
            raise ApiError("invalid", "The body must be a JSON object.")
        missing = {
            name: [field_error("required", f"{name} is required")]
            for name in ("username", "password", "label")
            if not isinstance(body.get(name), str) or not body.get(name)
        }
        if missing:
            raise ApiError("invalid", "Some fields are missing.", fields=missing)
        nul = {
            name: [field_error("invalid_character", f"{name} contains a NUL character")]
            for name in ("username", "password", "label", "platform")
            if isinstance(body.get(name), str) and "\x00" in body[name]
        }
        if nul:  # PostgreSQL text cannot hold NUL: refuse it as the push does (invalid_character)
            raise ApiError("invalid", "Some fields are not valid.", fields=nul)
        platform = body.get("platform") if isinstance(body.get("platform"), str) else ""
        enrolment = device_enrol(
            username=body["username"], password=body["password"], label=body["label"][:120],
            platform=platform[:120], request=request._request,
        )
        policy = registry.device_policy()
        user = enrolment.device.user
        return json_response({
            "device_id": str(enrolment.device.pk),
            "token": enrolment.token,
            "user": policy.describe_user(user),
            "areas": policy.areas(user),
        }, status=201)


class RevokeView(ProtocolView):
    """Supervisors (for their teams' devices) and admins; session, Basic or device auth."""

    authentication_classes = [DeviceTokenAuthentication, *ProtocolView.authentication_classes]
    permission_classes = [IsAuthenticated]

    @extend_schema(request=None, responses={200: RevocationSerializer, 403: ERROR, 404: ERROR},
                   summary="Revoke a device")
    def post(self, request, device_id):
        device = get_object_or_404(Device, pk=device_id)
        if not registry.device_policy().can_see_device(request.user, device):
            raise ApiError("not_found", "No such device.", status_code=404)
        revoked = device_revoke(device=device, by=request.user)
        return json_response({"device_id": str(revoked.pk), "revoked_at": revoked.revoked_at.isoformat()})


class ManifestView(DeviceView):
    @extend_schema(responses={200: ManifestSerializer, 401: ERROR}, summary="What this device syncs")
    def get(self, request):
        user, device = request.user, request.auth
        policy = registry.device_policy()
        record_types = {}
        for rtype in registry.all_types():
            form = rtype.policy.form(None)
            record_types[rtype.name] = {
                "form_version": form[1] if form else None,
                "schema": rtype.json_schema(form[2] if form else {}),
                "personal_fields": sorted(rtype.policy.personal_fields),
                # The form version's code lists, e.g. which checklist issues are graded A-D.
                "code_lists": {name: list(codes) for name, codes in (form[2] if form else {}).items()},
            }
        return json_response({
            "protocol": 1,
            "server_time": timezone.now().isoformat(),
            "device_id": str(device.pk),
            "user": policy.describe_user(user),
            "areas": policy.areas(user),
            "record_types": record_types,
            "limits": {
                "max_mutations": settings.SYNC_MAX_MUTATIONS,
                "max_body_bytes": settings.SYNC_MAX_BODY_BYTES,
                "max_attachment_bytes": settings.SYNC_MAX_ATTACHMENT_BYTES,
                "max_json_depth": settings.JSON_MAX_DEPTH,
                "max_mutation_depth": settings.SYNC_MAX_MUTATION_DEPTH,
                "max_image_pixels": settings.SYNC_MAX_IMAGE_PIXELS,
            },
            "sync_window_days": settings.SYNC_WINDOW_DAYS,
        })


class PushView(DeviceView):
    @extend_schema(
        # JSON only: the body is read raw (read_json_body), so DRF's form parsers never apply.
        request={"application/json": inline_serializer(
            "PushRequest", {"mutations": serializers.ListField(child=serializers.DictField())})},
        # 503 busy: a push that kept deadlocking (docs/sync.md); send it again.
        responses={200: PushAnswerSerializer, 400: ERROR, 401: ERROR, 413: ERROR, 415: ERROR, 429: ERROR,
                   503: ERROR},
        summary="Push mutations (each ends applied, merged, conflict, rejected or duplicate)",
    )
    def post(self, request):
        # Depth is checked per mutation by push_apply (a too-deep one is rejected alone; past
        # JSON_MAX_DEPTH the whole push is refused), so the body is not walked twice.
        body = read_json_body(request, limit=settings.SYNC_MAX_BODY_BYTES, check_depth=False)
        if not isinstance(body, dict) or not isinstance(body.get("mutations"), list):
            raise ApiError("invalid", "The body must be {\"mutations\": [...]}.",
                           fields={"mutations": [field_error("required", "a list of mutations")]})
        if len(body) > 1 and bodies.nests_deeper({k: v for k, v in body.items() if k != "mutations"},
                                                 settings.JSON_MAX_DEPTH):
            raise bodies.too_deep(settings.JSON_MAX_DEPTH)
        mutations = body["mutations"]
        if len(mutations) > settings.SYNC_MAX_MUTATIONS:
            raise ApiError("too_many_mutations", f"At most {settings.SYNC_MAX_MUTATIONS} mutations per push.",
                           status_code=413)
        results = push_apply(user=request.user, device=request.auth, mutations=mutations)
        return json_response({"results": results, "server_time": timezone.now().isoformat()})


class PullView(DeviceView):
    @extend_schema(
        parameters=[
            OpenApiParameter("cursor", str, required=False, description="Opaque cursor from the last page"),
            OpenApiParameter("limit", int, required=False, description="Changes per page (default 500)"),
        ],
        responses={200: PullPageSerializer, 400: ERROR, 401: ERROR, 410: ERROR},
        summary="Pull the changes in this device's scope",
    )
    def get(self, request):
        limit = parsing.page_limit(request.query_params.get("limit"), default=500,
                                   maximum=settings.SYNC_PULL_MAX_LIMIT)
        page = pull_changes(user=request.user, device=request.auth,
                            cursor_token=request.query_params.get("cursor") or None, limit=limit)
        return json_response(page)


class StatusView(DeviceView):
    @extend_schema(responses={200: SyncStatusSerializer, 401: ERROR}, summary="This device's sync health")
    def get(self, request):
        return json_response(sync_status(user=request.user, device=request.auth))


class AttachmentView(DeviceView):
    @extend_schema(request={"image/jpeg": OpenApiTypes.BINARY, "image/png": OpenApiTypes.BINARY,
                            "image/webp": OpenApiTypes.BINARY},
                   responses={200: AttachmentStoredSerializer, 201: AttachmentStoredSerializer, 400: ERROR, 413: ERROR,
                              415: ERROR},
                   summary="Upload a photo by its sha256 (idempotent)")
    def put(self, request, sha256):
        if not SHA256_PATH.fullmatch(sha256):  # not .match: `$` matches before a newline
            raise ApiError("invalid_hash", "The address must be a lowercase hex sha256.", status_code=400,
                           fields={"sha256": [field_error("invalid", "64 lowercase hex digits")]})
        data = bodies.read_limited(request._request, settings.SYNC_MAX_ATTACHMENT_BYTES,
                                   bodies.declared_length(request.META))
        stored = attachment_store(sha256=sha256, data=data, content_type=request.META.get("CONTENT_TYPE", ""),
                                  device=request.auth)
        return json_response({"sha256": sha256, "size": stored.attachment.size,
                              "content_type": stored.attachment.content_type},
                             status=201 if stored.created else 200)

    @extend_schema(responses={200: None, 404: None}, summary="Is this photo stored (and yours to know of)?")
    def head(self, request, sha256):
        # 404 alike for a photo not stored and one stored that this user may not see: HEAD
        # must not confirm someone else's evidence to whoever holds its hash (photo_access.py).
        found = bool(SHA256_PATH.fullmatch(sha256)) and photo_visible(request.user, sha256)
        return HttpResponse(status=200 if found else 404)

    @extend_schema(responses={(200, "image/jpeg"): OpenApiTypes.BINARY, (200, "image/png"): OpenApiTypes.BINARY,
                              (200, "image/webp"): OpenApiTypes.BINARY, 400: ERROR, 401: ERROR, 404: ERROR},
                   summary="A stored photo, to a device whose user may see it (added)")
    def get(self, request, sha256):
        return photo_response(request, sha256, thumbnail=False)


class AttachmentThumbnailView(DeviceView):
    @extend_schema(responses={(200, "image/jpeg"): OpenApiTypes.BINARY, (200, "image/png"): OpenApiTypes.BINARY,
                              (200, "image/webp"): OpenApiTypes.BINARY, 400: ERROR, 401: ERROR, 404: ERROR},
                   summary="A stored photo's 320 px JPEG thumbnail (the photo until it is made), to a device "
                           "whose user may see it (added)")
    def get(self, request, sha256):
        return photo_response(request, sha256, thumbnail=True)


PHOTO_TYPES = frozenset({"image/jpeg", "image/png", "image/webp"})


def photo_response(request, sha256: str, *, thumbnail: bool) -> FileResponse:
    """The bytes of a photo the user may see (the HEAD rule), logged as a consultation of the
    records naming it; 404 alike for one not stored and one not theirs."""
    if not SHA256_PATH.fullmatch(sha256):
        raise ApiError("invalid_hash", "The address must be a lowercase hex sha256.", status_code=400,
                       fields={"sha256": [field_error("invalid", "64 lowercase hex digits")]})
    read = photo_read(user=request.user, device=request.auth, sha256=sha256, thumbnail=thumbnail)
    if read is None:
        raise ApiError("not_found", "No such photo, or not one you may see.", status_code=404)
    response = FileResponse(read.handle, content_type=read.content_type if read.content_type in PHOTO_TYPES
                            else "application/octet-stream")
    # Evidence: never kept by a proxy, nor unencrypted in the handheld browser's cache.
    response["Cache-Control"] = "private, no-store"
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Disposition"] = f'inline; filename="{sha256[:12]}{"-thumb" if thumbnail else ""}"'
    return response
