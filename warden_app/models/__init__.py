"""The domain's tables, one module per part of the domain."""
from .access_log import AccessAction, AccessLogEntry
from .areas import Area, AreaGroupObjectPermission, AreaUserObjectPermission, BoundarySet
from .forms import FormDefinition
from .organisations import Organisation, User
from .records import AuditItem, Observation, StreetAudit
from .review import Review
from .teams import Team, TeamGroupObjectPermission, TeamUserObjectPermission

__all__ = [
    "AccessAction",
    "AccessLogEntry",
    "Area",
    "AreaGroupObjectPermission",
    "AreaUserObjectPermission",
    "AuditItem",
    "BoundarySet",
    "FormDefinition",
    "Observation",
    "Organisation",
    "Review",
    "StreetAudit",
    "Team",
    "TeamGroupObjectPermission",
    "TeamUserObjectPermission",
    "User",
]
