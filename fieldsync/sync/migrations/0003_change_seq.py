"""The change feed's sequence: numbers order changes within one writing transaction."""
from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("sync", "0002_initial")]

    operations = [
        migrations.RunSQL(
            "CREATE SEQUENCE IF NOT EXISTS sync_change_seq;",
            "DROP SEQUENCE IF EXISTS sync_change_seq;",
        ),
    ]
