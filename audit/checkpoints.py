"""Checkpoints of the chain and the export that carries them (format in audit.chain).

A checkpoint is the chain head signed by the provider (idp signs: this leaf app knows no JOSE);
this module reads the head, stores signed checkpoints and streams the export, all in O(1) memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from audit import chain

if TYPE_CHECKING:
    from audit.models import AuditCheckpoint

EXPORT_CHUNK = 2000


@dataclass(frozen=True)
class ChainHead:
    count: int
    head: str
    last_event_id: int | None


def chain_head() -> ChainHead:
    """The sealed chain's length, last hash and last event id: the event at the highest position
    (positions run from 1 without gaps, so that position is the length). Unsealed events are not
    in the chain yet."""
    from audit.models import AuditEvent

    sealed = AuditEvent.objects.filter(position__isnull=False)
    last = sealed.order_by("-position").values_list("position", "hash", "id").first()
    if last is None:
        return ChainHead(count=0, head=chain.GENESIS, last_event_id=None)
    position, head, last_id = last
    return ChainHead(count=position, head=head, last_event_id=last_id)


def checkpoint_latest() -> AuditCheckpoint | None:
    from audit.models import AuditCheckpoint

    return AuditCheckpoint.objects.order_by("-event_count", "-id").first()


def checkpoint_store(*, head: ChainHead, jws: str, kid: str, created_at: datetime) -> AuditCheckpoint:
    """Store a signed checkpoint of `head`. Safe to call twice: a head is stored once (a unique
    hash), and the second caller gets the first one's row."""
    from audit.models import AuditCheckpoint

    if head.last_event_id is None:
        raise ValueError("An empty chain has nothing to checkpoint.")
    try:
        with transaction.atomic():
            return AuditCheckpoint.objects.create(
                created_at=created_at,
                event_count=head.count,
                head_hash=head.head,
                last_event_id=head.last_event_id,
                kid=kid,
                jws=jws,
            )
    except IntegrityError:
        return AuditCheckpoint.objects.get(head_hash=head.head)


def export_records(*, since: datetime | None = None) -> Iterator[dict[str, Any]]:
    """The export, record by record, in chain order (see audit.chain): a header, the sealed events
    from the first one recorded at or after `since` (all when None), and each checkpoint right
    after the event it covers. Streams both tables with server-side cursors (memory O(1)). Events
    not yet sealed are not in the chain and not in the export."""
    from audit.models import AuditCheckpoint, AuditEvent

    # Checkpoints that exist now sign only events that are committed now, so the events cursor
    # opened after this read holds every event they cover; later checkpoints are left out.
    checkpoint_bound = AuditCheckpoint.objects.order_by("-id").values_list("id", flat=True).first() or 0
    events = AuditEvent.objects.filter(position__isnull=False).order_by("position")
    position, previous = 0, None
    if since is not None:
        first = events.filter(created_at__gte=since).values_list("position", flat=True).first()
        if first is None:  # nothing recorded since: the export is the head and its checkpoints
            head = chain_head()
            position, events = head.count, events.none()
            previous = (head.last_event_id, head.head) if head.last_event_id is not None else None
        else:
            position = first - 1
            previous = events.filter(position=position).values_list("id", "hash").first()
            events = events.filter(position__gte=first)
    yield {
        "type": "header",
        "format": chain.EXPORT_FORMAT,
        "issuer": settings.ISSUER,
        "since": chain.timestamp(since) if since is not None else None,
        "exported_at": chain.timestamp(timezone.now()),
        "position": position,
        "prev_id": previous[0] if previous else None,
        "prev_hash": previous[1] if previous else chain.GENESIS,
    }
    checkpoints = (
        AuditCheckpoint.objects.filter(id__lte=checkpoint_bound, event_count__gte=position)
        .order_by("event_count", "id")
        .iterator(chunk_size=EXPORT_CHUNK)
    )
    pending = next(checkpoints, None)
    while pending is not None and pending.event_count <= position:
        yield pending.as_export_line()
        pending = next(checkpoints, None)
    for event in events.iterator(chunk_size=EXPORT_CHUNK):
        position += 1
        yield {"type": "event", **event.as_chain_event()}
        while pending is not None and pending.event_count <= position:
            yield pending.as_export_line()
            pending = next(checkpoints, None)
    # Checkpoints beyond the end sign events that are gone: the verifier reports them.
    while pending is not None:
        yield pending.as_export_line()
        pending = next(checkpoints, None)
