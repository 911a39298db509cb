"""Records lose the single-column author and area indexes (their (author, ...) and
(area, ...) indexes serve the same lookups; audit items gain an author index, having no
composite one), and the area rule becomes a set-returning function.

`warden_area_at(pt)` holds the rule (operational areas only, boundary counts, lowest id
wins). Being a one-statement SQL function returning a set, PostgreSQL inlines it where it
is joined: a push places its 500 points with `LATERAL warden_area_at(...)` as one plan,
in half the time of calling the scalar function 500 times. `warden_area_for_point` (the
row trigger's) now asks it, so the rule is written once.
"""

from importlib import import_module

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

AREA_AT = """
CREATE OR REPLACE FUNCTION warden_area_at(pt geometry) RETURNS SETOF bigint
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT a.id FROM warden_app_area a
    JOIN warden_app_boundaryset b ON b.id = a.boundary_set_id
    WHERE b.operational AND ST_Intersects(a.geom, pt)
    ORDER BY a.id LIMIT 1
$$;

CREATE OR REPLACE FUNCTION warden_area_for_point(pt geometry) RETURNS bigint
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT warden_area_at(pt)
$$;
"""

# Going back: 0002's scalar function, then the set-returning one goes.
PREVIOUS = import_module("warden_app.migrations.0002_area_assignment_trigger").FUNCTION.split(
    "CREATE OR REPLACE FUNCTION warden_set_area")[0] + "DROP FUNCTION IF EXISTS warden_area_at(geometry);"


class Migration(migrations.Migration):

    dependencies = [
        ('sync', '0007_change_key_time_covers_xid'),
        ('warden_app', '0006_area_trigger_trusts_engine_placement'),
    ]

    operations = [
        migrations.RunSQL(AREA_AT, PREVIOUS),
        migrations.AlterField(
            model_name='audititem',
            name='area',
            field=models.ForeignKey(blank=True, db_index=False, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='warden_app.area'),
        ),
        migrations.AlterField(
            model_name='audititem',
            name='author',
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name='+', to=settings.AUTH_USER_MODEL),
        ),
        migrations.AlterField(
            model_name='observation',
            name='area',
            field=models.ForeignKey(blank=True, db_index=False, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='warden_app.area'),
        ),
        migrations.AlterField(
            model_name='observation',
            name='author',
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name='+', to=settings.AUTH_USER_MODEL),
        ),
        migrations.AlterField(
            model_name='streetaudit',
            name='area',
            field=models.ForeignKey(blank=True, db_index=False, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='warden_app.area'),
        ),
        migrations.AlterField(
            model_name='streetaudit',
            name='author',
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name='+', to=settings.AUTH_USER_MODEL),
        ),
        migrations.AddIndex(
            model_name='audititem',
            index=models.Index(fields=['author'], name='audit_item_author'),
        ),
    ]
