"""Autovacuum visits the record tables after a fixed number of dead rows rather than a
fifth of the table (fieldsync/sync/migrations/0008 says why: edits rewrite records, most of
them not in place, since the edited columns are indexed)."""
from django.db import migrations

TABLES = ("warden_app_observation", "warden_app_streetaudit", "warden_app_audititem")
OPTIONS = "autovacuum_vacuum_scale_factor = 0.0, autovacuum_vacuum_threshold = 5000, " \
          "autovacuum_analyze_scale_factor = 0.02"
NAMES = "autovacuum_vacuum_scale_factor, autovacuum_vacuum_threshold, autovacuum_analyze_scale_factor"


class Migration(migrations.Migration):
    dependencies = [("warden_app", "0008_records_device_and_form_keys_unchecked")]

    operations = [
        migrations.RunSQL(f"ALTER TABLE {table} SET ({OPTIONS})", f"ALTER TABLE {table} RESET ({NAMES})")
        for table in TABLES
    ]
