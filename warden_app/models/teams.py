"""Teams: field staff and their supervisors, working a set of areas."""
from django.contrib.auth.models import Group
from django.db import models
from guardian.models import GroupObjectPermissionBase, UserObjectPermissionBase

from .areas import Area


class Team(models.Model):
    """Membership lives in two groups so area rights can be granted to groups, not users."""

    name = models.CharField(max_length=120, unique=True)
    field_group = models.OneToOneField(
        Group, on_delete=models.PROTECT, related_name="team_as_field"
    )
    supervisor_group = models.OneToOneField(
        Group, on_delete=models.PROTECT, related_name="team_as_supervisors"
    )
    # The declared areas; services turn them into guardian grants on both groups.
    areas = models.ManyToManyField(Area, blank=True, related_name="teams")

    class Meta:
        ordering = ["name"]
        permissions = [("supervise_team", "Can supervise team")]

    def __str__(self) -> str:
        return self.name


class TeamUserObjectPermission(UserObjectPermissionBase):
    content_object = models.ForeignKey(Team, on_delete=models.CASCADE)


class TeamGroupObjectPermission(GroupObjectPermissionBase):
    content_object = models.ForeignKey(Team, on_delete=models.CASCADE)
