"""A record's area is derived by PostgreSQL from its location, whoever writes the row.

Point-in-polygon against operational areas only; ST_Intersects counts the boundary, so a
point on a shared edge matches both areas and the lowest id wins (product.md). A point
outside every area leaves `area_id` empty and the record is still stored.
"""
from django.db import migrations

TABLES = ["warden_app_observation", "warden_app_streetaudit", "warden_app_audititem"]

FUNCTION = """
CREATE OR REPLACE FUNCTION warden_area_for_point(pt geometry) RETURNS bigint
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT a.id FROM warden_app_area a
    JOIN warden_app_boundaryset b ON b.id = a.boundary_set_id
    WHERE b.operational AND ST_Intersects(a.geom, pt)
    ORDER BY a.id LIMIT 1
$$;

CREATE OR REPLACE FUNCTION warden_set_area() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.area_id := warden_area_for_point(NEW.location);
    RETURN NEW;
END $$;
"""

DROP_FUNCTION = """
DROP FUNCTION IF EXISTS warden_set_area();
DROP FUNCTION IF EXISTS warden_area_for_point(geometry);
"""


def trigger_sql(table: str) -> str:
    return (
        f"CREATE TRIGGER {table}_area BEFORE INSERT OR UPDATE OF location ON {table} "
        f"FOR EACH ROW EXECUTE FUNCTION warden_set_area();"
    )


class Migration(migrations.Migration):
    dependencies = [("warden_app", "0001_initial")]

    operations = [
        migrations.RunSQL(FUNCTION, DROP_FUNCTION),
        *[
            migrations.RunSQL(trigger_sql(t), f"DROP TRIGGER IF EXISTS {t}_area ON {t};")
            for t in TABLES
        ],
    ]
