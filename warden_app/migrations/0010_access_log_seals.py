"""Access log seals: one INSERT-only row per sealing transaction, naming the chain head it
left (and written, in the same transaction, to the anchor outside the database). Its
trigger refuses UPDATE and DELETE whoever connects; the application's role gets only
SELECT and INSERT on it (warden_app/db_roles.py, applied after every migrate)."""

from django.db import migrations, models

APPEND_ONLY_SQL = """
CREATE OR REPLACE FUNCTION warden_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only (% refused)', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER access_log_seal_append_only
    BEFORE UPDATE OR DELETE ON warden_app_accesslogseal
    FOR EACH ROW EXECUTE FUNCTION warden_append_only();
"""

DROP_SQL = """
DROP TRIGGER IF EXISTS access_log_seal_append_only ON warden_app_accesslogseal;
DROP FUNCTION IF EXISTS warden_append_only();
"""


class Migration(migrations.Migration):

    dependencies = [
        ('warden_app', '0009_record_tables_vacuumed_sooner'),
    ]

    operations = [
        migrations.CreateModel(
            name='AccessLogSeal',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('at', models.DateTimeField(auto_now_add=True)),
                ('head_seq', models.BigIntegerField(editable=False, unique=True)),
                ('head_id', models.BigIntegerField(editable=False)),
                ('head_hash', models.CharField(editable=False, max_length=64)),
                ('rows', models.PositiveIntegerField(editable=False)),
            ],
            options={
                'verbose_name': 'access log seal',
                'ordering': ['id'],
            },
        ),
        migrations.RunSQL(APPEND_ONLY_SQL, DROP_SQL),
    ]
