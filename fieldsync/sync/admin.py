"""Admin views of the engine's tables: devices (with revocation) and read-only sync outcomes.

Payloads, conflicting values and mutation results are never shown here: they are copies of
field data that may hold personal details, and the admin pages have no consultation log.
Only the metadata needed to see what happened (who, which device, which record, why) is.
"""
from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from fieldsync.errors import ApiError
from fieldsync.read_only_admin import ReadOnlyAdmin

from .models import Conflict, Device, QuarantinedMutation, Receipt
from .services.devices import device_revoke


class RevokedFilter(admin.SimpleListFilter):
    title = "revoked"
    parameter_name = "revoked"

    def lookups(self, request, model_admin):
        return [("yes", "Revoked"), ("no", "Active")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(revoked_at__isnull=False)
        if self.value() == "no":
            return queryset.filter(revoked_at__isnull=True)
        return queryset


class ResolvedFilter(admin.SimpleListFilter):
    title = "resolved"
    parameter_name = "resolved"

    def lookups(self, request, model_admin):
        return [("yes", "Resolved"), ("no", "Open")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(resolved_at__isnull=False)
        if self.value() == "no":
            return queryset.filter(resolved_at__isnull=True)
        return queryset


@admin.register(Device)
class DeviceAdmin(admin.ModelAdmin):
    """Handhelds enrol themselves with their user's credentials; here they are revoked."""

    list_display = (
        "label", "user", "platform", "enrolled_at", "last_push_at", "last_pull_at", "is_revoked",
        "revoked_at",
    )
    list_filter = (RevokedFilter, "enrolled_at")
    list_select_related = ("user",)
    search_fields = ("label", "platform", "user__username")
    date_hierarchy = "enrolled_at"
    fields = (
        "id", "user", "label", "platform", "enrolled_at", "last_push_at", "last_pull_at",
        "revoked_at", "revoked_by",
    )
    # Only the label is an admin's to edit; revocation goes through the service (action).
    readonly_fields = (
        "id", "user", "platform", "enrolled_at", "last_push_at", "last_pull_at", "revoked_at",
        "revoked_by",
    )
    actions = ["revoke_devices"]

    @admin.display(boolean=True, description="revoked")
    def is_revoked(self, device: Device) -> bool:
        return device.is_revoked

    def has_add_permission(self, request: HttpRequest) -> bool:
        # A device exists only through enrolment, which issues its token.
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Device | None = None) -> bool:
        # A device is provenance of the records it sent: revoke it, never delete it.
        return False

    @admin.action(
        description="Revoke selected devices (wiped at their next sync)", permissions=["change"]
    )
    def revoke_devices(self, request: HttpRequest, queryset: QuerySet[Device]) -> None:
        revoked, refused = 0, []
        for device in queryset.filter(revoked_at__isnull=True).select_related("user"):
            try:
                device_revoke(device=device, by=request.user)
            except ApiError:
                refused.append(str(device))
            else:
                revoked += 1
        if revoked:
            self.message_user(request, f"Revoked {revoked} device(s).", messages.SUCCESS)
        if refused:
            self.message_user(
                request, "Not allowed to revoke: " + ", ".join(refused), messages.ERROR
            )
        if not revoked and not refused:
            self.message_user(request, "The selected devices were already revoked.", messages.INFO)


@admin.register(Receipt)
class ReceiptAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "record_type", "record_id", "op", "status", "user", "device")
    list_filter = ("status", "record_type", "op")
    list_select_related = ("user", "device")
    search_fields = ("user__username", "device__label")
    ordering = ("-created_at",)
    date_hierarchy = "created_at"
    fields = (
        "created_at", "user", "device", "mutation_id", "record_type", "record_id", "op", "status",
        "payload_hash",
    )


@admin.register(Conflict)
class ConflictAdmin(ReadOnlyAdmin):
    list_display = (
        "created_at", "record_type", "record_id", "reason", "user", "device", "is_resolved",
    )
    list_filter = ("reason", ResolvedFilter, "record_type")
    list_select_related = ("user", "device")
    search_fields = ("user__username", "device__label")
    date_hierarchy = "created_at"
    fields = (
        "id", "created_at", "record_type", "record_id", "user", "device", "mutation_id", "reason",
        "base_version", "server_version", "conflicting_fields", "resolved_at", "resolved_by",
    )
    readonly_fields = ("conflicting_fields",)

    @admin.display(description="conflicting fields")
    def conflicting_fields(self, conflict: Conflict) -> str:
        # Field names only: the values on either side may be personal data.
        return ", ".join(sorted(conflict.fields or {})) or "-"

    @admin.display(boolean=True, description="resolved")
    def is_resolved(self, conflict: Conflict) -> bool:
        return conflict.resolved_at is not None


@admin.register(QuarantinedMutation)
class QuarantinedMutationAdmin(ReadOnlyAdmin):
    list_display = (
        "created_at", "code", "record_type", "record_id", "op", "user", "device", "is_resolved",
    )
    list_filter = ("code", ResolvedFilter, "record_type")
    list_select_related = ("user", "device")
    search_fields = ("user__username", "device__label", "code")
    date_hierarchy = "created_at"
    fields = (
        "created_at", "user", "device", "mutation_id", "record_type", "record_id", "op", "code",
        "errors", "resolved_at", "resolved_by", "resolution_note",
    )

    @admin.display(boolean=True, description="resolved")
    def is_resolved(self, item: QuarantinedMutation) -> bool:
        return item.resolved_at is not None
