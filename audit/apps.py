from django.apps import AppConfig


class AuditConfig(AppConfig):
    """The audit trail: it records what other apps tell it (audit.record), and decides nothing."""

    name = "audit"
    verbose_name = "Audit"
