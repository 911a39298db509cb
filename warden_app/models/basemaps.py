"""Base maps imported with `manage.py import_basemap`: one tile archive each, one in use."""
from django.db import models


class Basemap(models.Model):
    """A checked MBTiles or PMTiles file kept in BASEMAP_DIR under its content hash.

    The hash is the version in every tile URL (/tiles/<version>/…), so a tile's bytes never
    change under a URL and browsers and the handheld may keep them for good.
    """

    FORMATS = [("mbtiles", "MBTiles"), ("pmtiles", "PMTiles")]
    TILE_TYPES = [("png", "PNG"), ("jpg", "JPEG"), ("webp", "WebP"), ("pbf", "Vector (MVT)")]

    name = models.CharField(max_length=200)
    attribution = models.CharField(max_length=500, blank=True)
    format = models.CharField(max_length=10, choices=FORMATS)
    tile_type = models.CharField(max_length=10, choices=TILE_TYPES)
    min_zoom = models.PositiveSmallIntegerField()
    max_zoom = models.PositiveSmallIntegerField()
    # west, south, east, north and lon, lat, zoom, in degrees (EPSG:4326)
    bounds = models.JSONField()
    center = models.JSONField()
    vector_layers = models.JSONField(default=list, blank=True)
    sha256 = models.CharField(max_length=64, unique=True)
    size_bytes = models.BigIntegerField()
    file_name = models.CharField(max_length=100)
    active = models.BooleanField(default=False)
    imported_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-imported_at"]
        constraints = [
            models.UniqueConstraint(fields=["active"], condition=models.Q(active=True), name="one_active_basemap"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.format}, {self.tile_type}, z{self.min_zoom}-{self.max_zoom})"

    @property
    def version(self) -> str:
        return self.sha256[:16]

    @property
    def kind(self) -> str:
        return "vector" if self.tile_type == "pbf" else "raster"
