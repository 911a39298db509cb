"""OpenAPI description of the sync protocol: the device bearer token and the response bodies
(docs/sync.md). The error shape and the error statuses are the project's (fieldsync/openapi.py)."""
from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import serializers


class DeviceTokenScheme(OpenApiAuthenticationExtension):
    target_class = "fieldsync.sync.auth.DeviceTokenAuthentication"
    name = "deviceToken"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "Device token from POST /api/v1/devices/enrol"}


# --- response bodies of the sync protocol (docs/sync.md), so clients can rely on them ------------
# Objects allow further keys (OpenAPI's default): the protocol adds fields, never takes them away.


class OrganisationSummarySerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()


class DeviceUserSerializer(serializers.Serializer):
    username = serializers.CharField()
    roles = serializers.ListField(child=serializers.CharField())
    organisation = OrganisationSummarySerializer(allow_null=True)


class DeviceAreaSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    geometry = serializers.DictField(help_text="GeoJSON MultiPolygon (WGS84)")


class EnrolmentSerializer(serializers.Serializer):
    device_id = serializers.UUIDField()
    token = serializers.CharField(help_text="fsd_…, shown once")
    user = DeviceUserSerializer()
    areas = DeviceAreaSerializer(many=True)


class RevocationSerializer(serializers.Serializer):
    device_id = serializers.UUIDField()
    revoked_at = serializers.DateTimeField()


class RecordTypeManifestSerializer(serializers.Serializer):
    form_version = serializers.IntegerField(allow_null=True)
    schema = serializers.DictField(help_text="JSON Schema of the record's `data`")
    personal_fields = serializers.ListField(child=serializers.CharField())
    code_lists = serializers.DictField(child=serializers.ListField())


class LimitsSerializer(serializers.Serializer):
    max_mutations = serializers.IntegerField()
    max_body_bytes = serializers.IntegerField()
    max_attachment_bytes = serializers.IntegerField()
    # Added: what a handheld should check before sending, so a refusal never surprises it.
    max_json_depth = serializers.IntegerField(help_text="nesting of a whole body (400 too_deep beyond)")
    max_mutation_depth = serializers.IntegerField(help_text="nesting of one mutation (rejected too_deep beyond)")
    max_image_pixels = serializers.IntegerField(help_text="pixels a photo may declare (413 beyond)")


class ManifestSerializer(serializers.Serializer):
    protocol = serializers.IntegerField()
    server_time = serializers.DateTimeField()
    device_id = serializers.UUIDField()
    user = DeviceUserSerializer()
    areas = DeviceAreaSerializer(many=True)
    record_types = serializers.DictField(child=RecordTypeManifestSerializer())
    limits = LimitsSerializer()
    sync_window_days = serializers.IntegerField()


class PushOutcomeSerializer(serializers.Serializer):
    """One mutation's result; the keys beside `status` depend on it (docs/sync.md, Push)."""

    mutation_id = serializers.UUIDField(allow_null=True, help_text="null when the envelope had no usable one")
    id = serializers.UUIDField(allow_null=True)
    status = serializers.ChoiceField(["applied", "merged", "conflict", "rejected", "duplicate"])
    version = serializers.IntegerField(required=False)
    conflict_id = serializers.UUIDField(required=False)
    code = serializers.CharField(required=False, help_text="rejected: why")
    message = serializers.CharField(required=False)
    errors = serializers.DictField(required=False, help_text="rejected: per field, [{code, message}]")
    record = serializers.DictField(required=False, help_text="conflict: the server's record")
    original = serializers.DictField(required=False, help_text="duplicate: the first answer")


class PushAnswerSerializer(serializers.Serializer):
    results = PushOutcomeSerializer(many=True)
    server_time = serializers.DateTimeField()


class ChangeSerializer(serializers.Serializer):
    type = serializers.CharField()
    id = serializers.UUIDField()
    op = serializers.ChoiceField(["upsert", "delete", "evict"])
    version = serializers.IntegerField()
    data = serializers.DictField(required=False, help_text="upsert: the record as this user may see it")
    area = serializers.IntegerField(required=False, allow_null=True)
    author = serializers.CharField(required=False)
    organisation = serializers.IntegerField(required=False, allow_null=True)
    server_time = serializers.DateTimeField(required=False)
    review = serializers.DictField(required=False)


class PullPageSerializer(serializers.Serializer):
    changes = ChangeSerializer(many=True)
    cursor = serializers.CharField()
    has_more = serializers.BooleanField()
    server_time = serializers.DateTimeField()


class DeviceHealthSerializer(serializers.Serializer):
    device_id = serializers.UUIDField()
    label = serializers.CharField(allow_blank=True)
    user = serializers.CharField()
    revoked = serializers.BooleanField()
    last_push_at = serializers.DateTimeField(allow_null=True)
    last_pull_at = serializers.DateTimeField(allow_null=True)
    conflicts = serializers.ListField(child=serializers.DictField())
    quarantined = serializers.ListField(child=serializers.DictField())
    missing_attachments = serializers.ListField(child=serializers.DictField())


class SyncStatusSerializer(DeviceHealthSerializer):
    team_devices = DeviceHealthSerializer(many=True, required=False, help_text="supervisors: their teams' devices")


class AttachmentStoredSerializer(serializers.Serializer):
    sha256 = serializers.CharField()
    size = serializers.IntegerField()
    content_type = serializers.CharField()
