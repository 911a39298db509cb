"""The default form definitions (version 1 of each record type), built from the code lists.

Built from `choices` rather than written out, so the published version 1 and the code lists
in docs/domain.md cannot drift apart. Once a version is published it is never rewritten
(records are validated against the version they name), so changing a code list here only
affects installations that have not yet published version 1.
"""
from .choices import GRADED_ISSUE_TYPES, ActionTaken, IncidentType, IssueType, Qualifier

OBSERVATION = "observation"
STREET_AUDIT = "street_audit"

OBSERVATION_TITLE = "ASB observation"
STREET_AUDIT_TITLE = "Environmental visual audit"


def observation_definition() -> dict:
    """Codes an ASB observation may use: qualifiers, incident types and actions taken."""
    return {
        "incident_types": list(IncidentType.values),
        "qualifiers": list(Qualifier.values),
        "action_taken": list(ActionTaken.values),
    }


def street_audit_definition() -> dict:
    """The environmental visual audit checklist; only the Code of Practice four are graded."""
    return {
        "checklist": [
            {"code": code, "label": label, "graded": code in GRADED_ISSUE_TYPES}
            for code, label in IssueType.choices
        ]
    }


def default_forms() -> dict[str, tuple[str, dict]]:
    """Record type → (title, definition) of the version 1 every installation starts with."""
    return {
        OBSERVATION: (OBSERVATION_TITLE, observation_definition()),
        STREET_AUDIT: (STREET_AUDIT_TITLE, street_audit_definition()),
    }
