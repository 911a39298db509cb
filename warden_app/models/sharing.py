"""The information sharing protocol as data: who sees which field groups of whose records.

`SharingRule` rows are clauses of the partnership's protocol for field staff and
supervisors; `PurposeGrant` rows open named personal fields to one analyst for a stated
purpose and a bounded time. Both only ever grant: what no row (and no relationship to the
record, see permissions.py) opens stays redacted.
"""
from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models import F, Q

from ..choices import OrganisationKind
from ..roles import Role
from .organisations import Organisation

# Roles a sharing rule may speak for. Analysts see personal fields only under a purpose
# grant, partner viewers never see records, admins and the DPO are decided in code.
RULE_ROLES = (Role.WARDEN.value, Role.PCSO.value, Role.SUPERVISOR.value)
# Record types that carry fields at all (the sync registrations).
RECORD_TYPES = [
    ("observation", "Observation"),
    ("street_audit", "Street audit"),
    ("audit_item", "Audit item"),
]


class FieldGroup(models.TextChoices):
    """Groups of fields a rule opens; permissions.fields_of_group maps them to fields."""

    PERSONAL = "personal", "Personal details (persons involved, descriptions of people, photos)"


class SharingRule(models.Model):
    """Staff of the viewer organisation(s), holding one of `viewer_roles`, see `field_groups`
    in records owned by the owner organisation(s).

    The default rule of the protocol (services.sharing.sharing_defaults_ensure): field
    staff of any organisation see personal details in their own organisation's records.
    """

    class Viewer(models.TextChoices):
        ANY = "any", "Any organisation"
        KIND = "kind", "Organisations of a kind"
        ORGANISATION = "organisation", "One organisation"

    class Owner(models.TextChoices):
        OWN = "own", "The viewer's own organisation"
        ORGANISATION = "organisation", "One organisation"
        ANY = "any", "Any organisation"

    # A stable name, so seeding and the admin find the same clause again.
    key = models.SlugField(max_length=80, unique=True)
    viewer_scope = models.CharField(max_length=12, choices=Viewer.choices)
    viewer_kind = models.CharField(max_length=20, choices=OrganisationKind.choices, blank=True)
    viewer_organisation = models.ForeignKey(
        Organisation, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    viewer_roles = ArrayField(models.CharField(max_length=20))
    owner_scope = models.CharField(max_length=12, choices=Owner.choices)
    owner_organisation = models.ForeignKey(
        Organisation, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    field_groups = ArrayField(models.CharField(max_length=20), default=list, blank=True)
    note = models.TextField(blank=True, help_text="The clause of the sharing protocol this implements")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["key"]
        constraints = [
            models.CheckConstraint(
                condition=(Q(viewer_scope="any") & Q(viewer_kind="") & Q(viewer_organisation__isnull=True))
                | (Q(viewer_scope="kind") & ~Q(viewer_kind="") & Q(viewer_organisation__isnull=True))
                | (Q(viewer_scope="organisation") & Q(viewer_kind="") & Q(viewer_organisation__isnull=False)),
                name="sharing_rule_viewer_consistent",
            ),
            models.CheckConstraint(
                condition=(Q(owner_scope__in=["own", "any"]) & Q(owner_organisation__isnull=True))
                | (Q(owner_scope="organisation") & Q(owner_organisation__isnull=False)),
                name="sharing_rule_owner_consistent",
            ),
            models.CheckConstraint(
                condition=Q(viewer_roles__len__gte=1) & Q(viewer_roles__contained_by=list(RULE_ROLES)),
                name="sharing_rule_roles_valid",
            ),
            models.CheckConstraint(
                condition=Q(field_groups__contained_by=FieldGroup.values),
                name="sharing_rule_field_groups_valid",
            ),
            models.CheckConstraint(
                condition=Q(viewer_kind="") | Q(viewer_kind__in=OrganisationKind.values),
                name="sharing_rule_viewer_kind_valid",
            ),
        ]

    def __str__(self) -> str:
        return self.key


class PurposeGrant(models.Model):
    """Opens `fields` (personal fields of `record_type`) to one analyst, for `purpose`,
    from `valid_from` until `valid_until` (or until revoked). Reads under it are logged
    with this purpose."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="purpose_grants")
    record_type = models.CharField(max_length=40, choices=RECORD_TYPES)
    fields = ArrayField(models.CharField(max_length=60))
    purpose = models.TextField()
    valid_from = models.DateTimeField()
    valid_until = models.DateTimeField()
    granted_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    granted_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["-valid_from"]
        constraints = [
            models.CheckConstraint(condition=Q(valid_until__gt=F("valid_from")), name="purpose_grant_period_valid"),
            models.CheckConstraint(condition=~Q(purpose=""), name="purpose_grant_has_purpose"),
            models.CheckConstraint(condition=Q(fields__len__gte=1), name="purpose_grant_names_fields"),
            # Nobody opens personal data to themselves.
            models.CheckConstraint(condition=~Q(granted_by=F("user")), name="purpose_grant_not_self_granted"),
            models.CheckConstraint(
                condition=Q(record_type__in=[value for value, _ in RECORD_TYPES]),
                name="purpose_grant_record_type_valid",
            ),
        ]
        indexes = [models.Index(fields=["user", "valid_until"], name="purpose_grant_user_until")]

    def __str__(self) -> str:
        # How the admin's messages and history name a grant: whose, which fields, of what.
        names = ", ".join(self.fields).replace("_", " ")
        return f"{self.user}: {names} of {self.get_record_type_display().lower()}s"
