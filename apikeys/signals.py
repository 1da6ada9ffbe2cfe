"""Signals API keys send. Receivers must not write: they run inside the sender's transaction."""

from django.dispatch import Signal

# Sent inside a rotation's transaction, after the successor row is written and before the old key
# is marked rotated and the audit row recorded: the middle of a rotation. Tests use it to kill a
# real worker there and prove the rotation is neither lost nor doubled on redelivery.
rotation_in_progress = Signal()
