"""Permission questions of the accountability part, as plain functions like those in
warden_app/permissions.py (on which they build)."""
from __future__ import annotations

from django.db.models import Q

from .. import permissions
from ..roles import Role


def can_answer_subject_requests(user) -> bool:
    """Subject access, rectification, restriction and erasure: the DPO (product.md)."""
    return permissions.has_role(user, Role.DPO)


def can_escalate(user, record) -> bool:
    """A supervisor of the record's area (or of its out-of-area author), or an analyst of
    its area, may pass a record they can see to a partner's system."""
    if not permissions.can_view_record(user, record):
        return False
    if permissions.has_role(user, Role.SUPERVISOR):
        if record.area_id is not None and permissions.can_review(user, record.area_id):
            return True
        if record.area_id is None and record.author_id in permissions.supervised_user_ids(user):
            return True
    return record.area_id is not None and permissions.can_analyse(user, record.area_id)


def can_view_escalation(user, escalation, record) -> bool:
    """Whoever asked for it, whoever may escalate the record, and the DPO."""
    if escalation.requested_by_id == getattr(user, "pk", None):
        return True
    if permissions.has_role(user, Role.DPO):
        return True
    return record is not None and can_escalate(user, record)


def organisation_may_receive_personal(organisation, record, record_type: str) -> frozenset[str]:
    """The personal fields of `record` the sharing protocol opens to staff of
    `organisation`, whatever their role: a partner system stands for the organisation.
    Only SharingRule clauses open fields here (a purpose grant is one analyst's, not an
    organisation's)."""
    from ..models import SharingRule

    personal = permissions.PERSONAL_FIELDS.get(record_type, frozenset())
    if not personal:
        return frozenset()
    viewer = (
        Q(viewer_scope=SharingRule.Viewer.ANY)
        | Q(viewer_scope=SharingRule.Viewer.KIND, viewer_kind=organisation.kind)
        | Q(viewer_scope=SharingRule.Viewer.ORGANISATION, viewer_organisation=organisation)
    )
    owner = Q(owner_scope=SharingRule.Owner.ANY) | Q(
        owner_scope=SharingRule.Owner.ORGANISATION, owner_organisation_id=record.organisation_id
    )
    if record.organisation_id == organisation.pk:
        owner |= Q(owner_scope=SharingRule.Owner.OWN)
    opened: set[str] = set()
    for groups in SharingRule.objects.filter(viewer, owner).values_list("field_groups", flat=True):
        for group in groups:
            opened |= permissions.fields_of_group(group, record_type)
    return personal & frozenset(opened)
