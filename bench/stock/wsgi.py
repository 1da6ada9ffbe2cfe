"""The stock provider's WSGI entry point: `gunicorn bench.stock.wsgi` (bench/run.py starts it with
the Procfile's `web:` flags)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.stock.settings")

application = get_wsgi_application()
