"""Receipts kept before this release may hold the record view of a conflict answer; a
duplicate is answered from the receipt, so an old mutation id would replay a record's values
as they were, to a sender who may have lost the right to see them since. The outcome stays;
the view goes (docs/sync.md, Push). Not reversible in data: the views are not kept anywhere."""
from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("sync", "0008_churning_tables_vacuumed_sooner")]

    operations = [
        migrations.RunSQL("UPDATE sync_receipt SET result = result - 'record' WHERE result ? 'record'",
                          migrations.RunSQL.noop),
    ]
