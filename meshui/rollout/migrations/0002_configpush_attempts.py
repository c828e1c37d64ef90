from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('rollout', '0001_initial'),
    ]

    operations = [
        migrations.AddField(
            model_name='configpush',
            name='attempts',
            field=models.PositiveSmallIntegerField(default=1, help_text='Calls made: retries of transport failures count.'),
        ),
    ]
