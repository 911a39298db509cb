"""Partner organisations and the people who work for them."""
from django.contrib.auth.models import AbstractUser
from django.db import models

from ..choices import OrganisationKind, check_in


class Organisation(models.Model):
    """A partner of the community safety partnership: council, police, fire, housing…"""

    name = models.CharField(max_length=200, unique=True)
    slug = models.SlugField(max_length=60, unique=True)
    kind = models.CharField(max_length=20, choices=OrganisationKind.choices)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=check_in("kind", OrganisationKind), name="organisation_kind_valid"
            )
        ]

    def __str__(self) -> str:
        return self.name


class User(AbstractUser):
    """A member of staff. Roles are groups; the organisation decides what personal data
    they may see in other organisations' records (sharing rules)."""

    organisation = models.ForeignKey(
        Organisation, on_delete=models.PROTECT, null=True, blank=True, related_name="staff"
    )

    class Meta(AbstractUser.Meta):
        swappable = "AUTH_USER_MODEL"
