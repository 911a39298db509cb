"""Records' device and form keys lose their database check (see FieldRecord: both rows are
read by the push that writes the key, and neither kind is ever deleted); form, looked up
by nothing, loses its index too."""
import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('sync', '0007_change_key_time_covers_xid'),
        ('warden_app', '0007_records_indexes_and_set_based_area'),
    ]

    operations = [
        migrations.AlterField(
            model_name='audititem',
            name='device',
            field=models.ForeignKey(blank=True, db_constraint=False, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='sync.device'),
        ),
        migrations.AlterField(
            model_name='audititem',
            name='form',
            field=models.ForeignKey(db_constraint=False, db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name='+', to='warden_app.formdefinition'),
        ),
        migrations.AlterField(
            model_name='observation',
            name='device',
            field=models.ForeignKey(blank=True, db_constraint=False, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='sync.device'),
        ),
        migrations.AlterField(
            model_name='observation',
            name='form',
            field=models.ForeignKey(db_constraint=False, db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name='+', to='warden_app.formdefinition'),
        ),
        migrations.AlterField(
            model_name='streetaudit',
            name='device',
            field=models.ForeignKey(blank=True, db_constraint=False, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='sync.device'),
        ),
        migrations.AlterField(
            model_name='streetaudit',
            name='form',
            field=models.ForeignKey(db_constraint=False, db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name='+', to='warden_app.formdefinition'),
        ),
    ]
