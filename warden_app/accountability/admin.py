"""Admin pages of the accountability part: the access log (read-only, the DPO's alone, and
every look at it logged), partner endpoints and retention periods (admins), escalations
(read-only). Registered from warden_app/admin.py."""
from __future__ import annotations

import uuid

from django import forms
from django.contrib import admin
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest

from fieldsync.read_only_admin import ReadOnlyAdmin

from .. import permissions
from ..models import AccessLogEntry, Escalation, PartnerEndpoint, RetentionPeriod
from .services.access_log import access_log_consulted


@admin.register(AccessLogEntry)
class AccessLogEntryAdmin(ReadOnlyAdmin):
    """Visible to the DPO only (permissions.can_read_access_log), whatever model rights a
    user holds: admins and superusers see everything but the log (product.md). Nothing
    can be added, changed or deleted here (nor anywhere: the table's trigger refuses)."""

    list_display = ("id", "at", "actor", "action", "record_type", "record_count", "recipient", "purpose", "seq")
    list_filter = ("action", "record_type")
    date_hierarchy = "at"
    search_fields = ("actor__username", "recipient", "purpose")
    list_select_related = ("actor",)
    fields = ("id", "at", "actor", "action", "record_type", "record_ids", "device_id", "recipient", "purpose",
              "details", "xid", "seq", "prev_hash", "hash")
    readonly_fields = fields
    show_full_result_count = False  # a count of the whole log on every page is not free

    def has_module_permission(self, request: HttpRequest) -> bool:
        return permissions.can_read_access_log(request.user)

    def has_view_permission(self, request: HttpRequest, obj=None) -> bool:
        return permissions.can_read_access_log(request.user)

    @admin.display(description="records")
    def record_count(self, entry: AccessLogEntry) -> int:
        return len(entry.record_ids)

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str):
        """A record id finds every row naming that record."""
        try:
            record_id = uuid.UUID(search_term.strip())
        except ValueError:
            return super().get_search_results(request, queryset, search_term)
        return queryset.filter(record_ids__contains=[record_id]), False

    def changelist_view(self, request: HttpRequest, extra_context=None):
        with transaction.atomic():
            response = super().changelist_view(request, extra_context)
            if getattr(response, "status_code", 200) == 200 and hasattr(response, "render"):
                response.render()
                changelist = (response.context_data or {}).get("cl")
                shown = [entry.pk for entry in changelist.result_list] if changelist else []
                access_log_consulted(user=request.user, entry_ids=shown, query=_described(request.GET),
                                     via="admin.access_log")
        return response

    def change_view(self, request: HttpRequest, object_id, form_url="", extra_context=None):
        with transaction.atomic():
            response = super().change_view(request, object_id, form_url, extra_context)
            if getattr(response, "status_code", 200) == 200 and hasattr(response, "render"):
                response.render()
                if str(object_id).isascii() and str(object_id).isdigit():
                    access_log_consulted(user=request.user, entry_ids=[int(object_id)], query={},
                                         via="admin.access_log")
        return response


def _described(params) -> dict:
    """The page's filters for the log; a free-text search is kept only as a record id
    (typed text may be a name, and the log keeps what it holds for ever)."""
    described = dict(params.items())
    term = described.get("q", "").strip()
    if term:
        try:
            described["q"] = str(uuid.UUID(term))
        except ValueError:
            described["q"] = "(text search)"
    return described


class PartnerEndpointForm(forms.ModelForm):
    """The header secret is write-only: never shown again, kept when left empty."""

    url = forms.URLField(max_length=500, assume_scheme="https")
    auth_header_secret = forms.CharField(
        required=False, widget=forms.PasswordInput(render_value=False),
        help_text="The header's value (e.g. 'Bearer …'), or env:NAME to read it from the worker's "
                  "environment. Leave empty to keep the current one.",
    )

    class Meta:
        model = PartnerEndpoint
        fields = ("name", "organisation", "kind", "url", "auth_header_name", "auth_header_secret", "active")

    def clean_auth_header_secret(self) -> str:
        value = self.cleaned_data.get("auth_header_secret") or ""
        if not value and self.instance.pk:
            return PartnerEndpoint.objects.filter(pk=self.instance.pk).values_list(
                "auth_header_secret", flat=True).first() or ""
        return value


@admin.register(PartnerEndpoint)
class PartnerEndpointAdmin(admin.ModelAdmin):
    form = PartnerEndpointForm
    list_display = ("name", "organisation", "kind", "url", "has_secret", "active")
    list_filter = ("kind", "active", "organisation")
    list_select_related = ("organisation",)
    search_fields = ("name", "url")

    @admin.display(description="secret set", boolean=True)
    def has_secret(self, endpoint: PartnerEndpoint) -> bool:
        return bool(endpoint.auth_header_secret)


@admin.register(RetentionPeriod)
class RetentionPeriodAdmin(admin.ModelAdmin):
    """Per record type, how long personal fields are kept (the daily retention job erases
    them after that); types without a row follow settings.RETENTION_PERSONAL_DAYS."""

    list_display = ("record_type", "personal_days", "updated_at", "updated_by")
    fields = ("record_type", "personal_days", "note", "updated_at", "updated_by")
    readonly_fields = ("updated_at", "updated_by")

    def save_model(self, request: HttpRequest, obj: RetentionPeriod, form, change: bool) -> None:
        obj.updated_by = request.user
        super().save_model(request, obj, form, change)


@admin.register(Escalation)
class EscalationAdmin(ReadOnlyAdmin):
    """Delivery state of escalations, read-only: each one is made (and logged) through the
    escalation service, never by hand."""

    list_display = ("created_at", "record_type", "record_id", "endpoint", "state", "attempts", "last_status",
                    "delivered_at", "requested_by")
    list_filter = ("state", "endpoint")
    list_select_related = ("endpoint", "requested_by")
    fields = ("id", "record_type", "record_id", "endpoint", "requested_by", "purpose", "personal_fields", "state",
              "attempts", "last_status", "last_error", "partner_reference", "created_at", "last_attempt_at",
              "next_attempt_at", "delivered_at")
    readonly_fields = fields

