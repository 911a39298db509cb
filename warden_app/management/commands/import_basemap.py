"""manage.py import_basemap: load an MBTiles or PMTiles base map that fieldsync serves itself."""
from django.core.management.base import BaseCommand, CommandError

from ...basemaps.archives import ArchiveError
from ...basemaps.store import basemap_import, basemap_use
from ...models import Basemap


def _mb(n: int) -> str:
    return f"{n / 1048576:.1f} MB"


class Command(BaseCommand):
    help = (
        "Import a base map (MBTiles or PMTiles v3; PNG, JPEG, WebP or vector MVT tiles), check it, "
        "keep a copy in BASEMAP_DIR and make it the base map of every map, the handheld's "
        "offline map included. --list shows the imported ones, --use VERSION or --use none "
        "chooses (none: TILE_URL if set, else outlines only)."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("file", nargs="?", help=".mbtiles or .pmtiles file")
        parser.add_argument("--name", default="", help="name shown to operators (default: the file's own)")
        parser.add_argument("--attribution", default="",
                            help="credit shown on every map, e.g. 'Contains OS data © Crown copyright'")
        parser.add_argument("--keep-current", action="store_true",
                            help="import without switching maps to it")
        parser.add_argument("--list", action="store_true", help="list imported base maps")
        parser.add_argument("--use", metavar="VERSION", help="use this imported base map ('none': no base map)")

    def handle(self, *args, **options) -> None:
        if options["list"]:
            for basemap in Basemap.objects.all():
                mark = "*" if basemap.active else " "
                self.stdout.write(f"{mark} {basemap.version}  {basemap}  {_mb(basemap.size_bytes)}  "
                                  f"imported {basemap.imported_at:%Y-%m-%d %H:%M}")
            return
        if options["use"]:
            if options["use"] == "none":
                basemap_use(basemap=None)
                self.stdout.write("No imported base map in use now.")
                return
            chosen = Basemap.objects.filter(sha256__startswith=options["use"].lower()).first() \
                if len(options["use"]) >= 6 else None
            if chosen is None:
                raise CommandError(f"No imported base map has version {options['use']!r} (see --list).")
            basemap_use(basemap=chosen)
            self.stdout.write(f"In use now: {chosen}.")
            return
        if not options["file"]:
            raise CommandError("Name the .mbtiles or .pmtiles file to import (or use --list / --use).")
        try:
            basemap = basemap_import(path=options["file"], name=options["name"], attribution=options["attribution"],
                                     activate=not options["keep_current"])
        except ArchiveError as exc:
            raise CommandError(f"Not imported: {options['file']}: {exc}.") from None
        except OSError as exc:
            raise CommandError(f"Not imported: {options['file']}: {exc.strerror or exc}.") from None
        west, south, east, north = basemap.bounds
        self.stdout.write(self.style.SUCCESS(
            f"Imported {basemap} as version {basemap.version} ({_mb(basemap.size_bytes)}), "
            f"bounds {west:.4f},{south:.4f},{east:.4f},{north:.4f}"
            f"{'; in use now' if basemap.active else '; not in use (--use ' + basemap.version + ')'}."))
        if not basemap.attribution:
            self.stdout.write(self.style.WARNING(
                "No attribution: most licences (OS, OpenStreetMap) require one; add --attribution."))
