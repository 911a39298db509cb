"""The domain's tables, one module per part of the domain."""
from .access_log import AccessAction, AccessLogEntry, AccessLogSeal
from .api_tokens import ApiToken
from .areas import Area, AreaGroupObjectPermission, AreaUserObjectPermission, BoundarySet
from .basemaps import Basemap
from .escalation import Escalation, PartnerEndpoint
from .exports import Export
from .forms import FormDefinition
from .organisations import Organisation, User
from .purpose_requests import PurposeGrantRequest
from .records import AuditItem, Observation, StreetAudit
from .retention import RetentionPeriod
from .review import Review
from .sharing import FieldGroup, PurposeGrant, SharingRule
from .teams import Team, TeamGroupObjectPermission, TeamUserObjectPermission

__all__ = [
    "AccessAction",
    "AccessLogEntry",
    "AccessLogSeal",
    "ApiToken",
    "Area",
    "AreaGroupObjectPermission",
    "AreaUserObjectPermission",
    "AuditItem",
    "Basemap",
    "BoundarySet",
    "Escalation",
    "Export",
    "FieldGroup",
    "FormDefinition",
    "Observation",
    "Organisation",
    "PartnerEndpoint",
    "PurposeGrant",
    "PurposeGrantRequest",
    "RetentionPeriod",
    "Review",
    "SharingRule",
    "StreetAudit",
    "Team",
    "TeamGroupObjectPermission",
    "TeamUserObjectPermission",
    "User",
]
