"""Admin page of personal API tokens: who holds which, when each was made, last used and
expires, and a way to end them (a lost laptop, someone leaving). Registered from
warden_app/admin.py.

The secret is shown once, to its owner, when they make it on their tokens page; only its
sha256 is stored, and this page never shows even that (nor the password fingerprint): a hash
in a screenshot or a shared screen is one less thing to explain. Nothing is added or edited
here; tokens are revoked through the service, never deleted (the log names them).
"""
from __future__ import annotations

from datetime import timedelta

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.formats import date_format

from . import permissions
from .models import ApiToken
from .services.api_tokens import api_token_state, api_tokens_revoke_as_admin


def day(moment) -> str:
    return date_format(timezone.localtime(moment), "j M Y")


STATE_LABELS = {"active": "Active", "expired": "Expired", "revoked": "Revoked",
                "password_changed": "Ended by a password change"}


class TokenStateFilter(admin.SimpleListFilter):
    """Revoked and expired are columns; "ended by a password change" is only known per row
    (an HMAC of the current password), so "active" here means neither revoked nor expired."""

    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return [("live", "Not revoked or expired"), ("expired", "Expired"), ("revoked", "Revoked")]

    def queryset(self, request, queryset):
        now = timezone.now()
        return {
            "live": queryset.filter(revoked_at__isnull=True, expires_at__gt=now),
            "expired": queryset.filter(revoked_at__isnull=True, expires_at__lte=now),
            "revoked": queryset.filter(revoked_at__isnull=False),
        }.get(self.value(), queryset)


class UsedFilter(admin.SimpleListFilter):
    title = "used"
    parameter_name = "used"

    def lookups(self, request, model_admin):
        return [("never", "Never used"), ("30d", "In the last 30 days"), ("stale", "Not in 30 days")]

    def queryset(self, request, queryset):
        since = timezone.now() - timedelta(days=30)
        return {
            "never": queryset.filter(last_used_at__isnull=True),
            "30d": queryset.filter(last_used_at__gte=since),
            "stale": queryset.filter(last_used_at__lt=since),
        }.get(self.value(), queryset)


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    # Dates without times, and the revocation inside "state": the whole row fits a laptop.
    list_display = ("owner", "name_or_dash", "prefix_shown", "state", "created", "last_used", "expires")
    list_filter = (TokenStateFilter, UsedFilter, ("user__organisation", admin.RelatedOnlyFieldListFilter))
    list_select_related = ("user", "user__organisation")
    search_fields = ("user__username", "user__first_name", "user__last_name", "name", "prefix")
    # Never token_hash or password_fingerprint: only what tells one token from another.
    fields = ("user", "name", "prefix_shown", "created_at", "last_used_at", "expires_at", "state", "revoked_at")
    readonly_fields = fields
    actions = ["revoke_tokens"]

    @admin.display(description="owner", ordering="user__username")
    def owner(self, row: ApiToken) -> str:
        return row.user.get_username()

    @admin.display(description="made", ordering="created_at")
    def created(self, row: ApiToken) -> str:
        return day(row.created_at)

    @admin.display(description="last used", ordering="last_used_at")
    def last_used(self, row: ApiToken) -> str:
        return day(row.last_used_at) if row.last_used_at else "never"

    @admin.display(description="expires", ordering="expires_at")
    def expires(self, row: ApiToken) -> str:
        return day(row.expires_at)

    @admin.display(description="name", ordering="name")
    def name_or_dash(self, row: ApiToken) -> str:
        return row.name or "-"

    @admin.display(description="starts with", ordering="prefix")
    def prefix_shown(self, row: ApiToken) -> str:
        # The first ten characters the owner's list shows too: too short to use, enough to
        # match against what is configured on a machine.
        return f"{row.prefix}…" if row.prefix else "-"

    @admin.display(description="state")
    def state(self, row: ApiToken) -> str:
        state = api_token_state(row)
        if state == "revoked":
            return f"Revoked {day(row.revoked_at)}"
        return STATE_LABELS[state]

    def has_module_permission(self, request: HttpRequest) -> bool:
        return permissions.can_manage(request.user)

    def has_view_permission(self, request: HttpRequest, obj=None) -> bool:
        return permissions.can_manage(request.user)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # made by their owner, who alone sees the secret, once

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False  # revoked instead: the row says when, and whose it was

    def has_revoke_permission(self, request: HttpRequest) -> bool:
        return permissions.can_manage(request.user)

    @admin.action(description="Revoke selected tokens (they stop working at once)", permissions=["revoke"])
    def revoke_tokens(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        ended = api_tokens_revoke_as_admin(tokens=list(queryset), by=request.user)
        already = queryset.count() - ended
        note = f" ({already} already revoked)" if already else ""
        self.message_user(request, f"{ended} API token(s) revoked{note}.", messages.SUCCESS)
