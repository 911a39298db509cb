"""Role groups and the model-level permissions each role carries."""
from django.contrib.auth.models import Group, Permission
from django.db import transaction

from ..roles import Role

# Model-level rights per role. Object-level (area/team) rights come from team grants.
_ADMIN_MODELS = {
    "warden_app": [
        "organisation", "user", "boundaryset", "area", "team", "formdefinition", "partnerendpoint",
        "retentionperiod",
    ],
    "sync": ["device"],
    "auth": ["group"],
}
# View-only for the admin role: records and the engine's sync outcomes (admin pages).
_REVIEW_VIEW_MODELS = {
    "warden_app": ["observation", "streetaudit", "audititem", "review", "escalation"],
    "sync": ["receipt", "conflict", "quarantinedmutation"],
}


def _perms(app_models: dict[str, list[str]], actions: tuple[str, ...]) -> list[Permission]:
    codenames = []
    for app_label, models in app_models.items():
        for model in models:
            codenames += [(app_label, f"{action}_{model}") for action in actions]
    q = Permission.objects.none()
    for app_label, codename in codenames:
        q = q | Permission.objects.filter(content_type__app_label=app_label, codename=codename)
    return list(q)


@transaction.atomic
def role_groups_ensure() -> dict[Role, Group]:
    """Create the role groups and give each its model-level permissions (idempotent)."""
    groups = {role: Group.objects.get_or_create(name=role.value)[0] for role in Role}
    groups[Role.ADMIN].permissions.set(
        _perms(_ADMIN_MODELS, ("add", "change", "delete", "view"))
        + _perms(_REVIEW_VIEW_MODELS, ("view",))
    )
    groups[Role.ANALYST].permissions.set(
        list(
            Permission.objects.filter(content_type__app_label="warden_app", codename="analyse_area")
        )
    )
    return groups
