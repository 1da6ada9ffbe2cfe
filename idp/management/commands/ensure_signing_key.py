from typing import Any

from django.core.management.base import BaseCommand

import audit
from idp.keys.rotation import signing_keys_ensure
from idp.models import SigningKey


class Command(BaseCommand):
    help = (
        "Give every configured signing algorithm (IDP_SIGNING_ALGORITHMS) an active and a pre-published "
        "next key. Safe to run on every start: with the key chains complete it changes nothing."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        created = signing_keys_ensure(actor=audit.Actor.system("ensure_signing_key"))
        for key in created:
            self.stdout.write(f"Created {key.status} {key.algorithm} signing key {key.kid}")
        for kid, algorithm in SigningKey.objects.filter(status=SigningKey.Status.ACTIVE).values_list(
            "kid", "algorithm"
        ):
            self.stdout.write(f"Active {algorithm} signing key {kid}")
