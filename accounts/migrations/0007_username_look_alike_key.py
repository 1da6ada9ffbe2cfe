"""Usernames unique as they look, in any case (User.username_look_alike_key): look-alike letters of
the Latin script too ("aIice" beside "alice"), not only of other scripts.

An install whose users already hold two names that now count as one (alice and aIice) stops at the
unique index with an IntegrityError naming the key: rename one of them, then migrate again.
"""

from django.db import migrations, models

import accounts.models


def fill_look_alike_keys(apps, schema_editor):
    User = apps.get_model("accounts", "User")
    for user in User.objects.only("pk", "username").iterator():
        key = accounts.models.username_look_alike_key(user.username)
        User.objects.filter(pk=user.pk).update(username_look_alike_key=key)


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0006_usernames_and_emails"),
    ]

    operations = [
        migrations.AddField(
            model_name="user",
            name="username_look_alike_key",
            field=models.CharField(editable=False, max_length=600, null=True),
        ),
        migrations.RunPython(fill_look_alike_keys, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="user",
            name="username_look_alike_key",
            field=models.CharField(editable=False, max_length=600, unique=True),
        ),
    ]
