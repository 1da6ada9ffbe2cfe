"""A stock django-oauth-toolkit provider, the yardstick of `make bench` (docs/performance.md):
the pinned DOT with its default settings, Django's default project layout and middleware, served
by the same gunicorn command as the idp, on the same PostgreSQL. Nothing here imports the idp."""
