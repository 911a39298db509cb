"""Field records: ASB observations, street audits and their items.

Ids are UUIDs chosen by the handheld; `version`, `area`, `author`, `organisation` and
the server times are the server's (sync protocol, principle 3).
"""
from django.conf import settings
from django.contrib.gis.db import models
from django.contrib.postgres.fields import ArrayField
from django.contrib.postgres.indexes import GinIndex
from django.db.models import Q

from ..choices import (
    GRADED_ISSUE_TYPES,
    FixSource,
    Grade,
    IncidentType,
    Qualifier,
    ReviewState,
    check_in,
)
from .areas import Area
from .forms import FormDefinition
from .organisations import Organisation


class FieldRecord(models.Model):
    """Provenance and location every record carries."""

    id = models.UUIDField(primary_key=True)
    version = models.PositiveIntegerField(default=1)
    # No single-column indexes on author and area: each type's (author, ...) and (area, ...)
    # indexes serve those lookups, and every index is paid for on each row a push writes.
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", db_index=False
    )
    organisation = models.ForeignKey(Organisation, on_delete=models.PROTECT, related_name="+")
    # No database foreign key on device and form. Pushes write them from rows they have
    # just read (the authenticated device, which the push also updates, so it is locked
    # until commit; the form version it names), and neither kind of row is ever deleted:
    # devices are revoked, published forms superseded (the admin offers no delete for
    # either). The deferred per-row check of each key cost a push of 500 about 2 ms at
    # commit and protected nothing more. Author, organisation and area keep theirs.
    device = models.ForeignKey(
        "sync.Device", on_delete=models.SET_NULL, null=True, blank=True, related_name="+", db_constraint=False
    )
    # Nothing looks records up by form: no index either.
    form = models.ForeignKey(
        FormDefinition, on_delete=models.PROTECT, related_name="+", db_constraint=False, db_index=False
    )
    client_time = models.DateTimeField(null=True, blank=True, help_text="Device clock: evidence only")
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()
    location = models.PointField(srid=4326)
    accuracy_m = models.FloatField(null=True, blank=True)
    fix_source = models.CharField(max_length=10, choices=FixSource.choices, default=FixSource.GPS)
    area = models.ForeignKey(
        Area, on_delete=models.SET_NULL, null=True, blank=True, related_name="+", db_index=False
    )
    photos = ArrayField(models.CharField(max_length=64), default=list, blank=True)
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        abstract = True

    @classmethod
    def provenance_constraints(cls, prefix: str) -> list[models.BaseConstraint]:
        return [
            models.CheckConstraint(
                condition=Q(accuracy_m__isnull=True) | Q(accuracy_m__gte=0),
                name=f"{prefix}_accuracy_not_negative",
            ),
            models.CheckConstraint(condition=check_in("fix_source", FixSource), name=f"{prefix}_fix_source_valid"),
            models.CheckConstraint(condition=Q(version__gte=1), name=f"{prefix}_version_positive"),
        ]


class Reviewable(models.Model):
    review_state = models.CharField(
        max_length=12, choices=ReviewState.choices, default=ReviewState.SUBMITTED
    )

    class Meta:
        abstract = True


class Observation(FieldRecord, Reviewable):
    """An anti-social behaviour incident seen in the street."""

    qualifier = models.CharField(max_length=15, choices=Qualifier.choices)
    incident_type = models.CharField(max_length=40, choices=IncidentType.choices)
    observed_at = models.DateTimeField()
    description = models.TextField(blank=True)
    action_taken = ArrayField(models.CharField(max_length=30), default=list, blank=True)
    # Personal data: [{"description": …, "name": …, "approx_age": …}, …]
    persons_involved = models.JSONField(default=list, blank=True)
    # Restricted processing (UK GDPR art. 18, DPA 2018 s.47): set by the DPO; the record is
    # kept but left out of analysis, exports and escalation. A database default, since
    # the sync engine writes rows with COPY and names only its own columns.
    processing_restricted = models.BooleanField(default=False, db_default=False)

    class Meta:
        ordering = ["-observed_at"]
        constraints = [
            *FieldRecord.provenance_constraints("observation"),
            models.CheckConstraint(condition=check_in("qualifier", Qualifier), name="observation_qualifier_valid"),
            models.CheckConstraint(
                condition=check_in("incident_type", IncidentType), name="observation_incident_type_valid"
            ),
            models.CheckConstraint(
                condition=check_in("review_state", ReviewState), name="observation_review_state_valid"
            ),
        ]
        indexes = [
            models.Index(fields=["area", "review_state"], name="observation_area_review"),
            models.Index(fields=["author", "review_state"], name="observation_author_review"),
            models.Index(fields=["observed_at"], name="observation_observed_at"),
            # Records naming a photo (fieldsync/sync/photo_access.py: HEAD, pushes naming one).
            GinIndex(fields=["photos"], name="observation_photos", fastupdate=False),
        ]

    def __str__(self) -> str:
        return f"{self.get_incident_type_display()} ({self.qualifier}) {self.id}"


class StreetAudit(FieldRecord, Reviewable):
    """An environmental visual audit of an area or route."""

    title = models.CharField(max_length=200, blank=True)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    route = models.LineStringField(srid=4326, null=True, blank=True)
    notes = models.TextField(blank=True)

    class Meta:
        ordering = ["-started_at"]
        constraints = [
            *FieldRecord.provenance_constraints("street_audit"),
            models.CheckConstraint(
                condition=Q(finished_at__isnull=True) | Q(finished_at__gte=models.F("started_at")),
                name="street_audit_finishes_after_start",
            ),
            models.CheckConstraint(
                condition=check_in("review_state", ReviewState), name="street_audit_review_state_valid"
            ),
        ]
        indexes = [
            models.Index(fields=["area", "review_state"], name="street_audit_area_review"),
            models.Index(fields=["author", "review_state"], name="street_audit_author_review"),
            GinIndex(fields=["photos"], name="street_audit_photos", fastupdate=False),
        ]

    def __str__(self) -> str:
        return self.title or f"Street audit {self.id}"


class AuditItem(FieldRecord):
    """One finding of a street audit; reviewed with its audit."""

    street_audit = models.ForeignKey(StreetAudit, on_delete=models.PROTECT, related_name="items")
    issue_type = models.CharField(max_length=40)
    grade = models.CharField(max_length=1, choices=Grade.choices, null=True, blank=True)
    responsible_agency = models.CharField(max_length=120, blank=True)
    notes = models.TextField(blank=True)

    class Meta:
        ordering = ["created_at"]
        constraints = [
            *FieldRecord.provenance_constraints("audit_item"),
            models.CheckConstraint(
                condition=Q(grade__isnull=True) | check_in("grade", Grade), name="audit_item_grade_valid"
            ),
            # Forms may add graded codes of their own; the national four are always graded.
            models.CheckConstraint(
                condition=~Q(issue_type__in=GRADED_ISSUE_TYPES) | Q(grade__isnull=False),
                name="audit_item_graded_types_have_grade",
            ),
        ]
        indexes = [
            models.Index(fields=["area", "issue_type"], name="audit_item_area_issue"),
            models.Index(fields=["author"], name="audit_item_author"),
            GinIndex(fields=["photos"], name="audit_item_photos", fastupdate=False),
        ]

    def __str__(self) -> str:
        return f"{self.issue_type} {self.grade or ''}".strip()
