from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("idp", "0006_signing_key_lifecycle_and_jwt_access_tokens"),
    ]

    operations = [
        migrations.AlterModelOptions(
            name="signingkey",
            options={
                "permissions": [
                    ("rotate_signingkey", "Can rotate signing keys now"),
                    ("view_activity", "Can view the activity overview"),
                ]
            },
        ),
    ]
