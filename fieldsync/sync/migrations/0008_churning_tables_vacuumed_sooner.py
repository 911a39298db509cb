"""Autovacuum visits the engine's churning tables sooner than its defaults would.

Every change of a record rewrites its feed rows, and never in place: `xid` and `seq` are
indexed, so each rewrite leaves a dead row and a dead entry in every feed index. A device
row is rewritten on every push and pull. By default autovacuum waits for a fifth of a table
to be dead; until then pulls and pushes step over the dead versions (in bench/load.py's
steady shift without vacuum, PostgreSQL's CPU doubled and push p95 went from about 80 ms to
600). These thresholds count rows, not a share of a table that grows for years.
"""
from django.db import migrations

SETTINGS = {
    "sync_change": "autovacuum_vacuum_scale_factor = 0.0, autovacuum_vacuum_threshold = 5000, "
                   "autovacuum_analyze_scale_factor = 0.01",
    "sync_device": "autovacuum_vacuum_scale_factor = 0.0, autovacuum_vacuum_threshold = 1000",
}
NAMES = "autovacuum_vacuum_scale_factor, autovacuum_vacuum_threshold, autovacuum_analyze_scale_factor"


class Migration(migrations.Migration):
    dependencies = [("sync", "0007_change_key_time_covers_xid")]

    operations = [
        migrations.RunSQL(f"ALTER TABLE {table} SET ({options})", f"ALTER TABLE {table} RESET ({NAMES})")
        for table, options in SETTINGS.items()
    ]
