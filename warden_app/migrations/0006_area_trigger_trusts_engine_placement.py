"""The area trigger skips rows the sync engine has just placed itself.

A push locates all its points in one set-based call of `warden_area_for_point` (it must,
to decide area permissions before writing), then writes the rows. Placing every row a
second time in the trigger cost a push more than storing the rows did. The engine marks
those writes with the transaction-local setting `fieldsync.engine_placed`; every other
writer (ORM, admin, imports, psql) still has its rows placed by the trigger.
"""
from importlib import import_module

from django.db import migrations

FUNCTION = """
CREATE OR REPLACE FUNCTION warden_set_area() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF coalesce(current_setting('fieldsync.engine_placed', true), '') = 'on' THEN
        RETURN NEW;
    END IF;
    NEW.area_id := warden_area_for_point(NEW.location);
    RETURN NEW;
END $$;
"""

# Going back restores 0002's functions as they were.
PREVIOUS = import_module("warden_app.migrations.0002_area_assignment_trigger").FUNCTION


class Migration(migrations.Migration):
    dependencies = [("warden_app", "0005_accountability")]

    operations = [migrations.RunSQL(FUNCTION, PREVIOUS)]
