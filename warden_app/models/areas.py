"""Boundaries: the partnership's operational areas and imported analysis geographies."""
from django.contrib.gis.db import models
from django.contrib.gis.db.models.functions import Transform
from guardian.models import GroupObjectPermissionBase, UserObjectPermissionBase

BNG_SRID = 27700


class BoundarySet(models.Model):
    """A family of boundaries imported together (the partnership's areas, LSOAs, wards…).

    Only operational sets decide a record's area; the others are for aggregation.
    """

    name = models.CharField(max_length=120, unique=True)
    slug = models.SlugField(max_length=60, unique=True)
    operational = models.BooleanField(default=False)
    imported_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Area(models.Model):
    boundary_set = models.ForeignKey(BoundarySet, on_delete=models.PROTECT, related_name="areas")
    name = models.CharField(max_length=200)
    code = models.CharField(max_length=60)
    geom = models.MultiPolygonField(srid=4326)
    # Metric copy kept by PostgreSQL itself, so grids, buffers and distances never use degrees.
    geom_bng = models.GeneratedField(
        expression=Transform("geom", BNG_SRID),
        output_field=models.MultiPolygonField(srid=BNG_SRID),
        db_persist=True,
    )

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["boundary_set", "code"], name="area_code_unique_in_set")
        ]
        permissions = [
            ("record_in_area", "Can record in area"),
            ("review_area", "Can review records in area"),
            ("analyse_area", "Can analyse records in area"),
        ]

    def __str__(self) -> str:
        return self.name


class AreaUserObjectPermission(UserObjectPermissionBase):
    """guardian's direct foreign-key table: fast joins instead of generic object ids."""

    content_object = models.ForeignKey(Area, on_delete=models.CASCADE)


class AreaGroupObjectPermission(GroupObjectPermissionBase):
    content_object = models.ForeignKey(Area, on_delete=models.CASCADE)
