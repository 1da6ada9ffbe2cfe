"""The sealer: links committed events into the hash chain, off the request path.

``audit.record`` only inserts; nothing on a request reads the chain head or takes a lock every
writer shares. The sealer, one at a time under an advisory lock, reads the head once and appends
the unsealed events after it, oldest id first, setting each one's `position` (1-based, no gaps)
and `hash` (audit.chain.link of the hash at position - 1 and the event's fields).

Order: the chain's order is the order of sealing, not of ids. Ids are allocated when a transaction
inserts, and a transaction holding a low id may commit after one holding a higher id was already
sealed; the queue is every unsealed row (a partial index keeps it small), so that event is taken
by the next pass and sealed at a later position. Nothing is skipped, nothing is sealed twice (one
sealer at a time; `position` and `hash` are unique), and on PostgreSQL the database itself refuses
a change to a sealed event, any change to an unsealed one but its seal, and a position without its
predecessor (migration 0005).
"""

from __future__ import annotations

from datetime import datetime

from django.db import connection, transaction

from audit import chain


def seal_batch(*, lock_key: int, batch: int) -> int:
    """Seal up to `batch` events in one transaction; how many were sealed, or -1 when another
    sealer holds the lock (it will take these events)."""
    from audit.models import AuditEvent

    with transaction.atomic():
        postgres = connection.vendor == "postgresql"
        if postgres:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [lock_key])
                if not cursor.fetchone()[0]:
                    return -1
        head = (
            AuditEvent.objects.filter(position__isnull=False)
            .order_by("-position")
            .values_list("position", "hash")
            .first()
        )
        position, previous = head if head is not None else (0, chain.GENESIS)
        pending = list(AuditEvent.objects.filter(position__isnull=True).order_by("id")[:batch])
        ids, positions, hashes = [], [], []
        for event in pending:
            position += 1
            previous = chain.link(previous, event.as_chain_event())
            ids.append(event.pk)
            positions.append(position)
            hashes.append(previous)
        if not ids:
            return 0
        table = connection.ops.quote_name(AuditEvent._meta.db_table)
        with connection.cursor() as cursor:
            if postgres:  # one statement for the batch
                cursor.execute(
                    f"UPDATE {table} AS event SET position = sealed.position, hash = sealed.hash "  # noqa: S608 - the model's own table name
                    "FROM unnest(%s::bigint[], %s::bigint[], %s::varchar[]) AS sealed(id, position, hash) "
                    "WHERE event.id = sealed.id AND event.position IS NULL",
                    [ids, positions, hashes],
                )
            else:
                cursor.executemany(
                    f"UPDATE {table} SET position = %s, hash = %s WHERE id = %s AND position IS NULL",  # noqa: S608
                    list(zip(positions, hashes, ids, strict=True)),
                )
        return len(ids)


def unsealed() -> tuple[int, datetime | None]:
    """How many committed events wait to be sealed, and when the oldest of them was recorded."""
    from django.db.models import Count, Min

    from audit.models import AuditEvent

    waiting = AuditEvent.objects.filter(position__isnull=True).aggregate(count=Count("id"), oldest=Min("created_at"))
    return waiting["count"], waiting["oldest"]
