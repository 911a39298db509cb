"""GIN indexes on each record type's `photos`: who may see or name a photo is decided from
the records naming it (fieldsync/sync/photo_access.py), on every HEAD of an attachment and
every push naming a new photo, and must not read a whole table to find them.

Built CONCURRENTLY (so not in a transaction): a push does not wait for the build."""
from django.contrib.postgres.indexes import GinIndex
from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations


class Migration(migrations.Migration):

    atomic = False

    dependencies = [
        ("warden_app", "0011_api_token_expiry_and_password"),
    ]

    operations = [
        AddIndexConcurrently(model_name="observation", index=GinIndex(fields=["photos"], name="observation_photos", fastupdate=False)),
        AddIndexConcurrently(model_name="streetaudit", index=GinIndex(fields=["photos"], name="street_audit_photos", fastupdate=False)),
        AddIndexConcurrently(model_name="audititem", index=GinIndex(fields=["photos"], name="audit_item_photos", fastupdate=False)),
    ]
