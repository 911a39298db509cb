"""The (scope_key, changed_at) index also carries xid, so a first sync finds where a windowed
key starts (min(xid) of the rows still in the window) with an index-only scan instead of a
heap visit per row in the window."""
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("sync", "0006_receipt_rejected_create_index"),
    ]

    operations = [
        migrations.RemoveIndex(
            model_name="change",
            name="change_key_time",
        ),
        migrations.AddIndex(
            model_name="change",
            index=models.Index(fields=["scope_key", "changed_at"], include=("xid",), name="change_key_time"),
        ),
    ]
