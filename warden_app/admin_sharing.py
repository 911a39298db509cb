"""Admin pages of the information sharing protocol: its clauses (SharingRule) and the purpose
grants that open personal fields to one analyst. Registered from warden_app/admin.py.

Both are the administrators' alone (permissions.can_manage): the DPO and every other role get
403, whatever model rights they hold. Every change goes through services/sharing.py, which
validates it and applies it from the next request (rules and grants are read once per request).
A grant is never edited after it is issued: it is the record of what was opened, to whom, why
and by whom; it is ended by revoking it.
"""
from __future__ import annotations

from datetime import datetime

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.widgets import RelatedFieldWidgetWrapper
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.formats import date_format

from . import permissions
from .choices import OrganisationKind
from .models import FieldGroup, PurposeGrant, SharingRule, User
from .models.sharing import RECORD_TYPES, RULE_ROLES
from .roles import Role
from .services.sharing import (
    DEFAULT_KEYS,
    purpose_grant_issue,
    purpose_grant_problems,
    purpose_grant_revoke,
    sharing_rule_delete,
    sharing_rule_problems,
    sharing_rule_save,
)

ROLE_LABELS = {Role.WARDEN.value: "Wardens", Role.PCSO.value: "PCSOs", Role.SUPERVISOR.value: "Supervisors"}
RECORD_LABELS = dict(RECORD_TYPES)


class AdministratorsOnly:
    """The protocol is the administrators' to declare; the DPO audits it through the access
    log (which names the rule or grant behind every read), not here."""

    def has_module_permission(self, request: HttpRequest) -> bool:
        return permissions.can_manage(request.user)

    def has_view_permission(self, request: HttpRequest, obj=None) -> bool:
        return permissions.can_manage(request.user)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return permissions.can_manage(request.user)

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return permissions.can_manage(request.user)

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return permissions.can_manage(request.user)


def _add_problems(form: forms.Form, problems: dict[str, str]) -> None:
    for name, text in problems.items():
        form.add_error(name if name in form.fields else None, text)


# --- sharing rules ---------------------------------------------------------------------------

class SharingRuleForm(forms.ModelForm):
    viewer_roles = forms.MultipleChoiceField(
        choices=[(role, ROLE_LABELS[role]) for role in RULE_ROLES], widget=forms.CheckboxSelectMultiple,
        label="Roles that see",
        help_text="Analysts see personal fields only under a purpose grant; partner viewers never see "
                  "records; admins and the DPO see them by their role.",
    )
    field_groups = forms.MultipleChoiceField(
        choices=FieldGroup.choices, widget=forms.CheckboxSelectMultiple, required=False,
        label="Fields opened",
        help_text="Fields not opened by any rule stay withheld (shown as withheld in pulls, exports "
                  "and the API). A rule opening nothing opens nothing.",
    )
    note = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}), label="Clause of the protocol",
        help_text="Which clause of the signed information sharing protocol this implements, in words "
                  "a DPO can check against it.",
    )

    class Meta:
        model = SharingRule
        fields = ("key", "viewer_scope", "viewer_kind", "viewer_organisation", "viewer_roles",
                  "owner_scope", "owner_organisation", "field_groups", "note")
        labels = {
            "key": "Name", "viewer_scope": "Staff of", "viewer_kind": "Kind of organisation",
            "viewer_organisation": "Organisation", "owner_scope": "In records of",
            "owner_organisation": "Owning organisation",
        }
        help_texts = {
            "key": "A short fixed name (letters, digits, hyphens), e.g. police-see-council-personal.",
            "viewer_kind": "Only when 'Staff of' is organisations of a kind.",
            "viewer_organisation": "Only when 'Staff of' is one organisation.",
            "owner_scope": "Whose records: the viewer's own organisation's, one organisation's, or anyone's.",
            "owner_organisation": "Only when 'In records of' is one organisation.",
        }

    def clean(self):
        data = super().clean()
        # What the chosen scopes do not use is dropped (the service does the same), so a kind
        # left over from an earlier choice neither lingers unseen nor trips the table's checks.
        if data.get("viewer_scope") != SharingRule.Viewer.KIND:
            data["viewer_kind"] = ""
        if data.get("viewer_scope") != SharingRule.Viewer.ORGANISATION:
            data["viewer_organisation"] = None
        if data.get("owner_scope") != SharingRule.Owner.ORGANISATION:
            data["owner_organisation"] = None
        probe = SharingRule(
            viewer_scope=data.get("viewer_scope") or "", viewer_kind=data.get("viewer_kind") or "",
            viewer_organisation=data.get("viewer_organisation"), viewer_roles=data.get("viewer_roles") or [],
            owner_scope=data.get("owner_scope") or "", owner_organisation=data.get("owner_organisation"),
            field_groups=data.get("field_groups") or [],
        )
        # Required fields already have their own error; say only what is wrong beyond them.
        _add_problems(self, {k: v for k, v in sharing_rule_problems(probe).items() if k not in self.errors})
        return data


def who_sees(rule: SharingRule) -> str:
    roles = ", ".join(ROLE_LABELS.get(role, role) for role in rule.viewer_roles)
    if rule.viewer_scope == SharingRule.Viewer.ANY:
        return f"{roles} of any organisation"
    if rule.viewer_scope == SharingRule.Viewer.KIND:
        return f"{roles} of every {OrganisationKind(rule.viewer_kind).label.lower()} organisation"
    return f"{roles} of {rule.viewer_organisation}"


def whose_records(rule: SharingRule) -> str:
    if rule.owner_scope == SharingRule.Owner.OWN:
        return "their own organisation's"
    if rule.owner_scope == SharingRule.Owner.ANY:
        return "every organisation's"
    return f"{rule.owner_organisation}'s"


def fields_opened(rule: SharingRule) -> str:
    per_type = []
    for record_type, label in RECORD_TYPES:
        names = sorted(set().union(*(permissions.fields_of_group(g, record_type) for g in rule.field_groups)))
        if names:
            per_type.append(f"{label}: {', '.join(names).replace('_', ' ')}")
    return "; ".join(per_type) or "nothing"


def titled(field_name: str, title: str):
    """Django's choices filter under a title of our own (its default is the field's name)."""
    class Titled(admin.ChoicesFieldListFilter):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.title = title
    return (field_name, Titled)


class PlainForeignKeys:
    """No pencil, plus, cross and eye beside an organisation or an analyst: a rule or a
    grant is no place to make, change or delete people and organisations."""

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        field = super().formfield_for_dbfield(db_field, request, **kwargs)
        if field is not None and isinstance(field.widget, RelatedFieldWidgetWrapper):
            field.widget = field.widget.widget
        return field


class ViewerRoleFilter(admin.SimpleListFilter):
    title = "role that sees"
    parameter_name = "role"

    def lookups(self, request, model_admin):
        return [(role, ROLE_LABELS[role]) for role in RULE_ROLES]

    def queryset(self, request, queryset):
        if self.value() in RULE_ROLES:
            return queryset.filter(viewer_roles__contains=[self.value()])
        return queryset


class OrganisationFilter(admin.SimpleListFilter):
    """Rules naming an organisation, as viewer or as owner (the two foreign keys have no
    reverse name, so Django's own related filter cannot list them)."""

    title = "organisation named"
    parameter_name = "organisation"

    def lookups(self, request, model_admin):
        from .models import Organisation

        named = SharingRule.objects.filter(
            Q(viewer_organisation__isnull=False) | Q(owner_organisation__isnull=False))
        ids = {pk for pair in named.values_list("viewer_organisation", "owner_organisation") for pk in pair if pk}
        return [(str(org.pk), org.name) for org in Organisation.objects.filter(pk__in=ids).order_by("name")]

    def queryset(self, request, queryset):
        if self.value() and self.value().isdigit():
            pk = int(self.value())
            return queryset.filter(Q(viewer_organisation_id=pk) | Q(owner_organisation_id=pk))
        return queryset


@admin.register(SharingRule)
class SharingRuleAdmin(AdministratorsOnly, PlainForeignKeys, admin.ModelAdmin):
    """Who sees which fields of whose records: each row reads "<roles> of <organisations> see
    <fields> in <owner>'s records"."""

    form = SharingRuleForm
    radio_fields = {"viewer_scope": admin.VERTICAL, "owner_scope": admin.VERTICAL}
    list_display = ("name", "viewers", "owners", "opened", "updated_at")
    list_filter = (ViewerRoleFilter, titled("viewer_scope", "viewers"), titled("owner_scope", "owner of the records"),
                   OrganisationFilter)
    list_select_related = ("viewer_organisation", "owner_organisation")
    search_fields = ("key", "note")
    readonly_fields = ("summary", "created_at", "updated_at")
    fieldsets = (
        (None, {"fields": ("key", "summary", "note")}),
        ("Who sees", {
            "description": "Field staff and supervisors who may see the fields. Everyone still sees only "
                           "records they may see at all (their team's areas); a rule opens fields, not records.",
            "fields": ("viewer_scope", "viewer_kind", "viewer_organisation", "viewer_roles"),
        }),
        ("What, in whose records", {
            "description": "The fields opened, in records owned by these organisations, in every kind of record.",
            "fields": ("owner_scope", "owner_organisation", "field_groups"),
        }),
        ("History", {"fields": ("created_at", "updated_at")}),
    )

    @admin.display(description="who sees")
    def viewers(self, rule: SharingRule) -> str:
        return who_sees(rule)

    @admin.display(description="in records of")
    def owners(self, rule: SharingRule) -> str:
        return whose_records(rule)

    @admin.display(description="fields opened")
    def opened(self, rule: SharingRule) -> str:
        return fields_opened(rule)

    @admin.display(description="name", ordering="key")
    def name(self, rule: SharingRule) -> str:
        return rule.key

    @admin.display(description="in words")
    def summary(self, rule: SharingRule) -> str:
        if rule.pk is None:
            return "(shown once saved)"
        return f"{who_sees(rule)} see {fields_opened(rule)} in {whose_records(rule)} records."

    def get_readonly_fields(self, request: HttpRequest, obj: SharingRule | None = None):
        # The name is how seeding and the DPO find a clause again: fixed once made.
        return (*self.readonly_fields, "key") if obj else self.readonly_fields

    def has_delete_permission(self, request: HttpRequest, obj: SharingRule | None = None) -> bool:
        if obj is not None and obj.key in DEFAULT_KEYS:
            return False
        return super().has_delete_permission(request, obj)

    def save_model(self, request: HttpRequest, obj: SharingRule, form, change: bool) -> None:
        sharing_rule_save(rule=obj, by=request.user)

    def delete_model(self, request: HttpRequest, obj: SharingRule) -> None:
        sharing_rule_delete(rule=obj, by=request.user)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[SharingRule]) -> None:
        # Django's bulk delete refuses the whole selection if it holds a default clause
        # (has_delete_permission per object), so only deletable rules reach here.
        for rule in queryset:
            sharing_rule_delete(rule=rule, by=request.user)


# --- purpose grants --------------------------------------------------------------------------

PERSONAL_CHOICES = sorted({name for names in permissions.PERSONAL_FIELDS.values() for name in names})


class PurposeGrantForm(forms.ModelForm):
    """Issuing a grant; `granted_by` is whoever is signed in (set by the admin page)."""

    granted_by: User | None = None

    fields = forms.MultipleChoiceField(
        choices=[(name, name.replace("_", " ")) for name in PERSONAL_CHOICES], widget=forms.CheckboxSelectMultiple,
        label="Personal fields opened", help_text="Only what the purpose needs; other fields need no grant.",
    )
    valid_from = forms.SplitDateTimeField(
        widget=admin.widgets.AdminSplitDateTime, label="From", required=False,
        help_text="Leave empty to start now.")
    valid_until = forms.SplitDateTimeField(widget=admin.widgets.AdminSplitDateTime, label="Until")

    class Meta:
        model = PurposeGrant
        fields = ("user", "record_type", "fields", "purpose", "valid_from", "valid_until")
        labels = {"user": "Analyst", "record_type": "Kind of record"}
        help_texts = {"purpose": "Why the analyst needs these fields (a case, a study): every read under "
                                 "this grant is logged with it, for the DPO."}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "user" not in self.fields:
            return  # an issued grant's page: everything read-only
        analysts = User.objects.filter(is_active=True, groups__name=Role.ANALYST.value)
        if self.granted_by is not None:
            analysts = analysts.exclude(pk=self.granted_by.pk)
        self.fields["user"].queryset = analysts.order_by("username").distinct()
        self.fields["record_type"].choices = [
            (value, label) for value, label in RECORD_TYPES if permissions.PERSONAL_FIELDS.get(value)]

    def clean(self):
        data = super().clean()
        start: datetime = data.get("valid_from") or timezone.now()
        data["valid_from"] = start
        problems = purpose_grant_problems(
            granted_by=self.granted_by, user=data.get("user"), record_type=data.get("record_type") or "",
            fields=data.get("fields") or [], purpose=data.get("purpose") or "", valid_from=start,
            valid_until=data.get("valid_until"))
        _add_problems(self, {k: v for k, v in problems.items() if k not in self.errors})
        return data


class GrantStateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return [("active", "In force"), ("future", "Not started"), ("ended", "Ended"), ("revoked", "Revoked")]

    def queryset(self, request, queryset):
        now = timezone.now()
        live = Q(revoked_at__isnull=True)
        return {
            "active": queryset.filter(live, valid_from__lte=now, valid_until__gt=now),
            "future": queryset.filter(live, valid_from__gt=now),
            "ended": queryset.filter(live, valid_until__lte=now),
            "revoked": queryset.filter(revoked_at__isnull=False),
        }.get(self.value(), queryset)


def day(moment: datetime) -> str:
    return date_format(timezone.localtime(moment), "j M Y")


def grant_state(grant: PurposeGrant, now: datetime | None = None) -> str:
    now = now or timezone.now()
    if grant.revoked_at is not None:
        return f"Revoked {day(grant.revoked_at)}"
    if grant.valid_from > now:
        return "Not started"
    if grant.valid_until <= now:
        return "Ended"
    return "In force"


@admin.register(PurposeGrant)
class PurposeGrantAdmin(AdministratorsOnly, PlainForeignKeys, admin.ModelAdmin):
    form = PurposeGrantForm
    # Dates without times, the revocation inside "state": the whole row fits a laptop.
    list_display = ("analyst", "record_kind", "field_list", "purpose_short", "period", "state", "granted_by")
    list_filter = (GrantStateFilter, titled("record_type", "kind of record"))
    list_select_related = ("user", "granted_by", "revoked_by")
    search_fields = ("user__username", "user__first_name", "user__last_name", "purpose")
    actions = ["revoke_grants"]
    shown = ("user", "record_type", "fields", "purpose", "valid_from", "valid_until", "state", "granted_by",
             "granted_at", "revoked_at", "revoked_by")

    @admin.display(description="analyst", ordering="user__username")
    def analyst(self, grant: PurposeGrant) -> str:
        return grant.user.get_username()

    @admin.display(description="period", ordering="valid_from")
    def period(self, grant: PurposeGrant) -> str:
        return f"{day(grant.valid_from)} to {day(grant.valid_until)}"

    @admin.display(description="kind of record", ordering="record_type")
    def record_kind(self, grant: PurposeGrant) -> str:
        return RECORD_LABELS.get(grant.record_type, grant.record_type)

    @admin.display(description="fields")
    def field_list(self, grant: PurposeGrant) -> str:
        return ", ".join(grant.fields).replace("_", " ")

    @admin.display(description="purpose", ordering="purpose")
    def purpose_short(self, grant: PurposeGrant) -> str:
        return grant.purpose if len(grant.purpose) <= 60 else grant.purpose[:59] + "…"

    @admin.display(description="state")
    def state(self, grant: PurposeGrant) -> str:
        return grant_state(grant)

    def get_fields(self, request: HttpRequest, obj: PurposeGrant | None = None):
        if obj is None:
            return ("user", "record_type", "fields", "purpose", "valid_from", "valid_until")
        return self.shown

    def get_readonly_fields(self, request: HttpRequest, obj: PurposeGrant | None = None):
        return self.shown if obj is not None else ()

    def has_change_permission(self, request: HttpRequest, obj: PurposeGrant | None = None) -> bool:
        # An issued grant is a record: its page shows it; it ends by the revoke action.
        return obj is None and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False  # the access log names grants by id: they are revoked, never deleted

    def has_revoke_permission(self, request: HttpRequest) -> bool:
        return permissions.can_manage(request.user)

    def get_form(self, request: HttpRequest, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change, **kwargs)
        form.granted_by = request.user
        return form

    def save_model(self, request: HttpRequest, obj: PurposeGrant, form, change: bool) -> None:
        data = form.cleaned_data
        grant = purpose_grant_issue(
            granted_by=request.user, user=data["user"], record_type=data["record_type"], fields=data["fields"],
            purpose=data["purpose"], valid_from=data["valid_from"], valid_until=data["valid_until"])
        # The admin's own "added" message and history entry refer to the row the service made.
        obj.__dict__.update({name: value for name, value in grant.__dict__.items() if name != "_state"})
        obj._state.adding, obj._state.db = False, grant._state.db

    def save_related(self, request, form, formsets, change) -> None:
        pass  # nothing related is edited here

    @admin.action(description="Revoke selected grants (they stop opening fields at once)",
                  permissions=["revoke"])
    def revoke_grants(self, request: HttpRequest, queryset: QuerySet[PurposeGrant]) -> None:
        done = 0
        for grant in queryset.filter(revoked_at__isnull=True):
            try:
                purpose_grant_revoke(grant=grant, revoked_by=request.user)
                done += 1
            except (PermissionDenied, ValidationError) as exc:
                self.message_user(request, f"{grant}: not revoked ({exc})", messages.ERROR)
        self.message_user(request, f"{done} purpose grant(s) revoked.")
