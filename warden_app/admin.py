"""Django admin for the partnership's administrators: people, organisations, boundaries,
areas, teams and forms, plus read-only views of the field records. The sharing protocol
(rules, purpose grants) is in admin_sharing.py, API tokens in admin_tokens.py.

Maps use django-leaflet with its bundled static files and tiles only from TILE_URL, never
Django's default GIS widget (OpenLayers from a CDN): the machines may have no internet.
Team areas and members change only through the team services, so guardian grants follow.
"""
from __future__ import annotations

from django import forms
from django.contrib import admin
from django.contrib.admin.widgets import FilteredSelectMultiple
from django.contrib.auth import forms as auth_forms
from django.contrib.auth.admin import GroupAdmin as DjangoGroupAdmin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.models import Group
from django.contrib.gis.db.models.functions import Area as AreaOf
from django.db import transaction
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest
from leaflet.admin import LeafletGeoAdmin

from .models import (
    Area,
    AuditItem,
    BoundarySet,
    FormDefinition,
    Observation,
    Organisation,
    Review,
    StreetAudit,
    Team,
    User,
)
from .permissions import PERSONAL_FIELDS
from .roles import FIELD_ROLES, Role
from .services.placement import area_delete
from .services.teams import team_add_member, team_get_or_create, team_remove_member, team_set_areas
from .sync_types import forms_changed
from .tasks import records_replace_soon

admin.site.site_header = "fieldsync administration"
admin.site.site_title = "fieldsync admin"
admin.site.index_title = "Partnership administration"

# Groups only a superuser may hand out: whoever holds DPO reads the access log, which the
# admin role must never see (product.md), so an admin cannot make anyone (themselves) DPO.
PROTECTED_ROLES = frozenset({Role.DPO.value})


def _is_protected_user(user: User) -> bool:
    return user.is_superuser or user.groups.filter(name__in=PROTECTED_ROLES).exists()


# --- organisations and people ------------------------------------------------------------

@admin.register(Organisation)
class OrganisationAdmin(admin.ModelAdmin):
    list_display = ("name", "kind", "slug", "staff_count")
    list_filter = ("kind",)
    search_fields = ("name", "slug")
    prepopulated_fields = {"slug": ("name",)}

    def get_queryset(self, request: HttpRequest) -> QuerySet[Organisation]:
        return super().get_queryset(request).annotate(staff_total=Count("staff"))

    @admin.display(description="staff", ordering="staff_total")
    def staff_count(self, organisation: Organisation) -> int:
        return organisation.staff_total


class UserChangeForm(auth_forms.UserChangeForm):
    class Meta(auth_forms.UserChangeForm.Meta):
        model = User


class UserCreationForm(auth_forms.AdminUserCreationForm):
    class Meta(auth_forms.AdminUserCreationForm.Meta):
        model = User
        fields = ("username", "organisation")


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    """Django's user admin plus the organisation, made safe for a non-superuser admin:
    no superuser flag, no per-user permissions, no protected roles, and no changing
    superusers or DPOs (their password included)."""

    form = UserChangeForm
    add_form = UserCreationForm
    list_display = ("username", "first_name", "last_name", "organisation", "is_active", "is_staff")
    list_filter = ("organisation", "groups", "is_active", "is_staff", "is_superuser")
    list_select_related = ("organisation",)
    search_fields = ("username", "first_name", "last_name", "email")
    fieldsets = (
        (None, {"fields": ("username", "password")}),
        ("Personal info", {"fields": ("first_name", "last_name", "email", "organisation")}),
        ("Roles and access", {
            "fields": ("is_active", "is_staff", "is_superuser", "groups", "user_permissions"),
        }),
        ("Important dates", {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = (
        (None, {
            "classes": ("wide",),
            "fields": ("username", "organisation", "usable_password", "password1", "password2"),
        }),
    )

    def get_fieldsets(self, request: HttpRequest, obj: User | None = None):
        fieldsets = super().get_fieldsets(request, obj)
        if request.user.is_superuser:
            return fieldsets
        hidden = {"is_superuser", "user_permissions"}
        return tuple(
            (name, {**opts, "fields": tuple(f for f in opts["fields"] if f not in hidden)})
            for name, opts in fieldsets
        )

    def formfield_for_manytomany(self, db_field, request: HttpRequest, **kwargs):
        if db_field.name == "groups" and not request.user.is_superuser:
            kwargs["queryset"] = Group.objects.exclude(name__in=PROTECTED_ROLES)
        return super().formfield_for_manytomany(db_field, request, **kwargs)

    def has_change_permission(self, request: HttpRequest, obj: User | None = None) -> bool:
        if obj is not None and not request.user.is_superuser and _is_protected_user(obj):
            return False
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: User | None = None) -> bool:
        if obj is not None and not request.user.is_superuser and _is_protected_user(obj):
            return False
        return super().has_delete_permission(request, obj)


admin.site.unregister(Group)


@admin.register(Group)
class GroupAdmin(DjangoGroupAdmin):
    """Role and team groups carry their rights from services (role_groups_ensure, the team
    services); an admin may look at them but only a superuser edits their permissions."""

    def get_readonly_fields(self, request: HttpRequest, obj: Group | None = None):
        if request.user.is_superuser:
            return super().get_readonly_fields(request, obj)
        return ("permissions",)

    def has_change_permission(self, request: HttpRequest, obj: Group | None = None) -> bool:
        if obj is not None and not request.user.is_superuser and _is_managed_group(obj):
            return False
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Group | None = None) -> bool:
        if obj is not None and _is_managed_group(obj):
            return False
        return super().has_delete_permission(request, obj)


def _is_managed_group(group: Group) -> bool:
    """Role groups and team groups: renaming or deleting them breaks roles or grants."""
    if group.name in {role.value for role in Role}:
        return True
    return Team.objects.filter(Q(field_group=group) | Q(supervisor_group=group)).exists()


# --- boundaries and areas ----------------------------------------------------------------

@admin.register(BoundarySet)
class BoundarySetAdmin(admin.ModelAdmin):
    list_display = ("name", "slug", "operational", "area_count", "imported_at")
    list_filter = ("operational",)
    search_fields = ("name", "slug")
    prepopulated_fields = {"slug": ("name",)}
    readonly_fields = ("imported_at",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[BoundarySet]:
        return super().get_queryset(request).annotate(area_total=Count("areas"))

    @admin.display(description="areas", ordering="area_total")
    def area_count(self, boundary_set: BoundarySet) -> int:
        return boundary_set.area_total


@admin.register(Area)
class AreaAdmin(LeafletGeoAdmin):
    """Draw or edit an area on a Leaflet map (base tiles from TILE_URL, if any)."""

    list_display = ("name", "code", "boundary_set", "size_km2")
    list_filter = ("boundary_set",)
    list_select_related = ("boundary_set",)
    search_fields = ("name", "code")
    fields = ("boundary_set", "name", "code", "geom", "size_km2")
    readonly_fields = ("size_km2",)

    class Media:
        js = ("admin_site/map-fit.js",)

    def formfield_for_dbfield(self, db_field, request: HttpRequest, **kwargs):
        field = super().formfield_for_dbfield(db_field, request, **kwargs)
        if db_field.name == "geom":
            field.label = "Outline"  # "Geom" says nothing to whoever draws it
        return field

    def get_queryset(self, request: HttpRequest) -> QuerySet[Area]:
        # geom_bng is metric (EPSG:27700), so its area is in square metres.
        return super().get_queryset(request).annotate(size_m2=AreaOf("geom_bng"))

    def save_model(self, request: HttpRequest, obj: Area, form, change: bool) -> None:
        super().save_model(request, obj, form, change)
        if obj.boundary_set.operational:
            records_replace_soon()  # records inside the new outline move to it

    def delete_model(self, request: HttpRequest, obj: Area) -> None:
        area_delete(area=obj, by=request.user)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Area]) -> None:
        for area in queryset:
            area_delete(area=area, by=request.user)

    @admin.display(description="size (km²)", ordering="size_m2")
    def size_km2(self, area: Area) -> str:
        size = getattr(area, "size_m2", None)
        return "-" if size is None else f"{size.sq_m / 1e6:.3f}"


# --- teams -------------------------------------------------------------------------------

def _members_field(label: str) -> forms.ModelMultipleChoiceField:
    return forms.ModelMultipleChoiceField(
        queryset=User.objects.none(),
        required=False,
        widget=FilteredSelectMultiple(label, is_stacked=False),
    )


class TeamForm(forms.ModelForm):
    field_staff = _members_field("field staff")
    supervisors = _members_field("supervisors")

    class Meta:
        model = Team
        fields = ("name", "areas")
        widgets = {"areas": FilteredSelectMultiple("areas", is_stacked=False)}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        team = self.instance if self.instance.pk else None
        in_field = Q(groups__name__in=[role.value for role in FIELD_ROLES])
        in_supervisors = Q(groups__name=Role.SUPERVISOR.value)
        if team:
            # Current members stay choosable even if their role changed since.
            in_field |= Q(groups=team.field_group)
            in_supervisors |= Q(groups=team.supervisor_group)
            self.initial.setdefault("field_staff", list(team.field_group.user_set.all()))
            self.initial.setdefault("supervisors", list(team.supervisor_group.user_set.all()))
        active = User.objects.filter(is_active=True)
        self.fields["field_staff"].queryset = active.filter(in_field).distinct()
        self.fields["supervisors"].queryset = active.filter(in_supervisors).distinct()
        # Only operational areas place records, so only they make sense as a team's areas.
        choosable = Q(boundary_set__operational=True)
        if team:
            choosable |= Q(teams=team)
        self.fields["areas"].queryset = Area.objects.filter(choosable).distinct()


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin):
    """A team's areas and members are saved through the team services, which keep the
    guardian grants on areas in step; the admin never writes the m2m or groups itself."""

    form = TeamForm
    list_display = ("name", "area_names", "field_staff_count", "supervisor_count")
    search_fields = ("name",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Team]:
        return (
            super().get_queryset(request)
            .prefetch_related("areas")
            .annotate(
                field_total=Count("field_group__user", distinct=True),
                supervisor_total=Count("supervisor_group__user", distinct=True),
            )
        )

    def get_readonly_fields(self, request: HttpRequest, obj: Team | None = None):
        # The team's groups are named after it, so the name is fixed once created.
        return ("name",) if obj else ()

    @admin.display(description="areas")
    def area_names(self, team: Team) -> str:
        return ", ".join(area.name for area in team.areas.all()) or "-"

    @admin.display(description="field staff", ordering="field_total")
    def field_staff_count(self, team: Team) -> int:
        return team.field_total

    @admin.display(description="supervisors", ordering="supervisor_total")
    def supervisor_count(self, team: Team) -> int:
        return team.supervisor_total

    def save_model(self, request: HttpRequest, obj: Team, form, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        # A new team needs its two groups and the supervise grant: the service makes them.
        team = team_get_or_create(name=obj.name)
        obj.pk = team.pk
        obj.field_group = team.field_group
        obj.supervisor_group = team.supervisor_group
        obj._state.adding = False
        obj._state.db = team._state.db

    def save_related(self, request: HttpRequest, form, formsets, change: bool) -> None:
        team = form.instance
        # Not form.save_m2m(): that would write team.areas directly and skip the grants.
        team_set_areas(team=team, areas=list(form.cleaned_data["areas"]))
        self._save_members(
            team,
            field_staff={user.pk for user in form.cleaned_data["field_staff"]},
            supervisors={user.pk for user in form.cleaned_data["supervisors"]},
        )
        for formset in formsets:
            self.save_formset(request, form, formset, change=change)

    @staticmethod
    def _save_members(team: Team, *, field_staff: set[int], supervisors: set[int]) -> None:
        had_field = set(team.field_group.user_set.values_list("pk", flat=True))
        had_supervisors = set(team.supervisor_group.user_set.values_list("pk", flat=True))
        changed = (field_staff ^ had_field) | (supervisors ^ had_supervisors)
        for user in User.objects.filter(pk__in=changed):
            team_remove_member(team=team, user=user)
            if user.pk in supervisors:
                team_add_member(team=team, user=user, supervisor=True)
            if user.pk in field_staff:
                team_add_member(team=team, user=user)

    def delete_model(self, request: HttpRequest, obj: Team) -> None:
        _team_delete(obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Team]) -> None:
        for team in queryset:
            _team_delete(team)


@transaction.atomic
def _team_delete(team: Team) -> None:
    """Withdraw the team's area grants before it goes, then drop its two groups, so no
    former member keeps rights through an orphaned group."""
    team_set_areas(team=team, areas=[])
    groups = [team.field_group, team.supervisor_group]
    team.delete()
    for group in groups:
        group.delete()


# --- forms -------------------------------------------------------------------------------

@admin.register(FormDefinition)
class FormDefinitionAdmin(admin.ModelAdmin):
    """A published version is fixed: records are validated against the version they were
    made with. To change a form, publish a new version."""

    list_display = ("record_type", "version", "title", "published_at", "published_by")
    list_filter = ("record_type",)
    list_select_related = ("published_by",)
    search_fields = ("title",)

    def get_fields(self, request: HttpRequest, obj: FormDefinition | None = None):
        if obj is None:
            return ("record_type", "version", "title", "definition")
        return ("record_type", "version", "title", "definition", "published_at", "published_by")

    def get_readonly_fields(self, request: HttpRequest, obj: FormDefinition | None = None):
        if obj is None:
            return ()
        return ("record_type", "version", "definition", "published_at", "published_by")

    def get_changeform_initial_data(self, request: HttpRequest) -> dict:
        initial = super().get_changeform_initial_data(request)
        record_type = initial.get("record_type")
        if record_type and "version" not in initial:
            latest = FormDefinition.objects.filter(record_type=record_type).order_by("-version")
            initial["version"] = (latest.values_list("version", flat=True).first() or 0) + 1
        return initial

    def save_model(self, request: HttpRequest, obj: FormDefinition, form, change: bool) -> None:
        if not change:
            obj.published_by = request.user
        super().save_model(request, obj, form, change)
        # The sync engine caches form versions per process; this one forgets them at once.
        transaction.on_commit(forms_changed)

    def delete_model(self, request: HttpRequest, obj: FormDefinition) -> None:
        super().delete_model(request, obj)
        transaction.on_commit(forms_changed)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[FormDefinition]) -> None:
        super().delete_queryset(request, queryset)
        transaction.on_commit(forms_changed)


# --- field records (read-only) -------------------------------------------------------------

class ReadOnlyAdminMixin:
    """Records change only through sync and review, never by hand in the admin."""

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


class ReviewInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = Review
    fields = ("created_at", "decision", "reviewer", "record_version", "note")
    readonly_fields = fields
    extra = 0
    can_delete = False


class AuditItemInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = AuditItem
    fk_name = "street_audit"
    fields = ("issue_type", "grade", "responsible_agency", "area", "created_at")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True


# Provenance every record shows; personal fields (PERSONAL_FIELDS) are left out on purpose:
# the admin pages write no consultation log, so personal details are read in the review
# and analysis views, whose selectors log each look (s.62).
_PROVENANCE = (
    "id", "version", "author", "organisation", "device", "form", "client_time", "created_at",
    "updated_at", "location", "accuracy_m", "fix_source", "area", "deleted_at",
)


def _without_personal(record_type: str, fields: tuple[str, ...]) -> tuple[str, ...]:
    personal = PERSONAL_FIELDS.get(record_type, frozenset())
    return tuple(name for name in fields if name not in personal)


class RecordAdmin(ReadOnlyAdminMixin, LeafletGeoAdmin):
    list_select_related = ("area", "organisation", "author")
    search_fields = ("author__username",)

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related(
            "area", "organisation", "author", "device", "form"
        )


@admin.register(Observation)
class ObservationAdmin(RecordAdmin):
    list_display = (
        "id", "incident_type", "qualifier", "observed_at", "area", "organisation", "review_state",
    )
    list_filter = (
        "review_state", "qualifier", "incident_type",
        ("organisation", admin.RelatedOnlyFieldListFilter),
        ("area", admin.RelatedOnlyFieldListFilter),
    )
    date_hierarchy = "observed_at"
    fields = _without_personal(
        "observation",
        ("qualifier", "incident_type", "observed_at", "action_taken", "review_state",
         "description", "persons_involved", "photos", *_PROVENANCE),
    )
    inlines = [ReviewInline]


@admin.register(StreetAudit)
class StreetAuditAdmin(RecordAdmin):
    list_display = ("__str__", "started_at", "finished_at", "area", "organisation", "review_state")
    list_filter = (
        "review_state", ("organisation", admin.RelatedOnlyFieldListFilter),
        ("area", admin.RelatedOnlyFieldListFilter),
    )
    date_hierarchy = "started_at"
    search_fields = ("title", "author__username")
    fields = _without_personal(
        "street_audit",
        ("title", "started_at", "finished_at", "route", "notes", "review_state", "photos",
         *_PROVENANCE),
    )
    inlines = [AuditItemInline, ReviewInline]


@admin.register(AuditItem)
class AuditItemAdmin(RecordAdmin):
    list_display = ("__str__", "street_audit", "issue_type", "grade", "area", "created_at")
    list_filter = ("issue_type", "grade", ("area", admin.RelatedOnlyFieldListFilter))
    fields = _without_personal(
        "audit_item",
        ("street_audit", "issue_type", "grade", "responsible_agency", "notes", "photos",
         *_PROVENANCE),
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related("street_audit")


# Access log, partner endpoints, retention periods, escalations.
from . import admin_sharing as _sharing_admin  # noqa: E402, F401  (sharing rules, purpose grants)
from . import admin_tokens as _tokens_admin  # noqa: E402, F401  (personal API tokens)
from .accountability import admin as _accountability_admin  # noqa: E402, F401
from .analysis_workspace import admin as _analysis_workspace_admin  # noqa: E402, F401  (purpose-grant requests)
