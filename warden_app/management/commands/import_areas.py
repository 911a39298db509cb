"""manage.py import_areas: load areas from a GeoJSON, GeoPackage or Shapefile into a boundary set."""
from django.core.management.base import BaseCommand, CommandError

from ...services.boundaries import BoundaryImportError, boundary_set_import


class Command(BaseCommand):
    help = (
        "Import areas from a GeoJSON, GeoPackage or Shapefile (or a .zip of one) into a "
        "boundary set, reprojected to EPSG:4326. Checks every feature first and imports all "
        "or nothing; importing the same codes again updates them."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("file", help="GeoJSON, GeoPackage, Shapefile (.shp with its .prj) or .zip")
        parser.add_argument(
            "--set", dest="set_name", help="boundary set to import into (default: the layer's name)"
        )
        parser.add_argument(
            "--operational",
            action="store_true",
            help="the set's areas decide the area of new records (never unset by an import)",
        )
        parser.add_argument("--layer", help="layer to read when the file holds several")
        parser.add_argument("--name-field", help="field holding the area name (default: detected)")
        parser.add_argument("--code-field", help="field holding the area code (default: detected)")
        parser.add_argument(
            "--make-valid",
            action="store_true",
            help="repair invalid outlines with MakeValid instead of refusing the file",
        )

    def handle(self, *args, **options) -> None:
        try:
            result = boundary_set_import(
                path=options["file"],
                set_name=options["set_name"],
                operational=options["operational"],
                layer=options["layer"],
                name_field=options["name_field"],
                code_field=options["code_field"],
                make_valid=options["make_valid"],
            )
        except BoundaryImportError as error:
            raise CommandError(str(error)) from error

        source, boundary_set = result.source, result.boundary_set
        kind = "operational" if boundary_set.operational else "for analysis"
        self.stdout.write(
            f"Read {len(source.features)} areas from layer {source.layer!r} ({source.driver}, "
            f"{source.srs_name} → WGS 84), name field {source.name_field!r}, "
            f"code field {source.code_field!r}."
        )
        if source.made_valid:
            self.stdout.write(
                self.style.WARNING(f"{source.made_valid} invalid outlines were repaired with MakeValid.")
            )
        if result.not_in_file:
            self.stdout.write(
                f"{result.not_in_file} areas already in the set are not in this file; "
                "they were left as they are."
            )
        self.stdout.write(
            self.style.SUCCESS(
                f"Boundary set {boundary_set.name!r} ({'new, ' if result.set_created else ''}{kind}): "
                f"{result.created} areas created, {result.updated} updated."
            )
        )
