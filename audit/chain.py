"""The hash chain that makes the audit trail tamper-evident. Standard library only, so an export
can be checked anywhere (export_audit writes these same fields).

    hash = SHA-256(previous hash + canonical JSON of the event)

The canonical JSON holds every recorded field except the row id and the hash itself, with sorted
keys, no whitespace, UTF-8 and the time as ISO 8601 UTC with microseconds. The first event's
previous hash is 64 zeros.

An export (``manage.py export_audit``) is JSON Lines in chain order:

    {"type": "header", "format": "idp-audit-export/1", "position": P, "prev_id": ..., "prev_hash": ...}
    {"type": "event", "id": ..., "time": ..., "action": ..., ..., "data": {...}, "hash": ...}
    {"type": "checkpoint", "count": N, "head": ..., "last_id": ..., "kid": ..., "jws": "<compact JWS>"}

The header says where the export starts: P events come before its first event, the last of them
being ``prev_id`` with hash ``prev_hash`` (0 and 64 zeros for a whole chain). A checkpoint line
follows the event that makes the chain N events long; only its JWS is trusted (its other members
must agree with the signed payload). ``verify_export`` checks such a stream in one pass.

A checkpoint signed by a key the provider has since withdrawn from its JWKS cannot be checked; it
is passed over when a later checkpoint verifies, since that one's head covers every event before
it. The latest checkpoint must always verify (the provider signs the head again whenever its
checkpoint key rotates, long before the old key is withdrawn).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

GENESIS = "0" * 64
EXPORT_FORMAT = "idp-audit-export/1"
# The fields the hash covers, in the export's vocabulary.
FIELDS = (
    "time",
    "action",
    "actor_type",
    "actor_id",
    "target_type",
    "target_id",
    "client_id",
    "outcome",
    "source_ip",
    "user_agent",
    "request_id",
    "data",
)
# The members of a checkpoint's signed payload that tie it to the chain.
CHECKPOINT_CLAIMS = ("count", "head", "last_id")


def timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def canonical(event: dict[str, Any]) -> bytes:
    return json.dumps(
        {name: event[name] for name in FIELDS}, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode("utf-8")


def link(previous_hash: str, event: dict[str, Any]) -> str:
    return hashlib.sha256(previous_hash.encode("ascii") + canonical(event)).hexdigest()


class KeyWithdrawn(ValueError):
    """Raised by a checkpoint verifier for a checkpoint signed by a key the JWKS no longer holds."""


@dataclass(frozen=True)
class Break:
    """The first link that does not hold: at chain `position` (1-based; for a checkpoint, the
    length of the chain where it stands), with the export's `line` when checking a file."""

    position: int
    event_id: Any
    reason: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"line {self.line}, " if self.line is not None else ""
        return f"{where}position {self.position}, event id {self.event_id}: {self.reason}"


@dataclass
class Walk:
    """The state of a walk along a chain: its length so far (`count`, counting the events before
    an export's start), the last hash, the first break, and what checkpoints vouched for."""

    count: int = 0
    head: str = GENESIS
    broken: Break | None = None
    last_id: Any = None
    checkpoints: int = 0
    # The length of the chain at the latest verified checkpoint: events after it are unsigned.
    signed_count: int = 0
    # Checkpoints passed over because their key was withdrawn, and the first one not yet covered
    # by a later verified checkpoint (a break if the walk ends there).
    withdrawn: int = 0
    uncovered: Break | None = None


def walk(events: Iterable[dict[str, Any]], *, start: str = GENESIS, position: int = 0) -> Iterator[Walk]:
    """Check events in chain order, one at a time (memory O(1)); yields the running state after
    each event, so a caller can compare checkpoints on the way. Stops at the first break."""
    state = Walk(count=position, head=start)
    for event in events:
        _step(state, event, line=None)
        yield state
        if state.broken is not None:
            return


def _step(state: Walk, event: dict[str, Any], *, line: int | None) -> None:
    """Append `event` to the walk, or record why it does not link."""
    try:
        expected = link(state.head, event)
    except KeyError as missing:
        reason = f"the event lacks the field {missing}"
    except (TypeError, ValueError, UnicodeEncodeError):
        reason = "the event is not valid JSON of the chain"
    else:
        if event.get("hash") == expected:
            state.count += 1
            state.head = expected
            state.last_id = event.get("id")
            return
        reason = "its hash does not match its content and the hash before it"
    state.broken = Break(position=state.count + 1, event_id=event.get("id"), reason=reason, line=line)


def _check_checkpoint(state: Walk, record: dict[str, Any], payload: dict[str, Any], *, line: int) -> str | None:
    """Why the signed checkpoint `payload` does not hold where it stands, or None."""
    count = payload["count"]
    if count > state.count:
        return (
            f"a checkpoint signs a chain of {count} events, but only {state.count} precede it: "
            "events are missing (rows deleted or the table truncated)"
        )
    if count < state.count:
        return f"a checkpoint signs a chain of {count} events but stands after event {state.count}"
    if payload["head"] != state.head:
        return f"the chain head after {count} events differs from the one its checkpoint signs"
    if state.last_id is not None and payload["last_id"] != state.last_id:
        return f"the event at position {count} is not the one its checkpoint signs (id {payload['last_id']})"
    for name in CHECKPOINT_CLAIMS:
        if name in record and record[name] != payload[name]:
            return f"the checkpoint line's {name} differs from its signed payload"
    return None


def verify_export(records: Iterable[dict[str, Any]], *, checkpoint_payload: Callable[[str], dict[str, Any]]) -> Walk:
    """Check an export's records (header, events, checkpoints, in order; line n is the n-th
    record) in one pass with memory O(1). `checkpoint_payload` returns a checkpoint JWS's verified
    payload (with int `count`, str `head`, `last_id`) or raises ValueError saying why it does not
    verify. Returns the final state; `broken` names the first failure."""
    state = Walk()
    lines = iter(enumerate(records, start=1))
    first = next(lines, None)
    if first is None:
        state.broken = Break(position=0, event_id=None, reason="the export is empty (no header line)", line=1)
        return state
    header = first[1]
    if not (
        isinstance(header, dict)
        and header.get("type") == "header"
        and header.get("format") == EXPORT_FORMAT
        and isinstance(header.get("position"), int)
        and isinstance(header.get("prev_hash"), str)
    ):
        state.broken = Break(
            position=0, event_id=None, reason=f"the first line is not an {EXPORT_FORMAT} header", line=1
        )
        return state
    state.count, state.head, state.last_id = header["position"], header["prev_hash"], header.get("prev_id")
    for line, record in lines:
        kind = record.get("type") if isinstance(record, dict) else None
        if kind == "event":
            _step(state, record, line=line)
        elif kind == "checkpoint":
            reason: str | None
            try:
                payload = checkpoint_payload(record.get("jws", ""))
            except KeyWithdrawn as error:
                state.withdrawn += 1
                if state.uncovered is None:
                    state.uncovered = Break(
                        position=state.count,
                        event_id=state.last_id,
                        reason=f"the latest checkpoint cannot be checked: {error}",
                        line=line,
                    )
                continue
            except ValueError as error:
                reason = f"the checkpoint does not verify: {error}"
            else:
                reason = _check_checkpoint(state, record, payload, line=line)
            if reason is None:
                state.checkpoints += 1
                state.signed_count = state.count
                state.uncovered = None
            else:
                state.broken = Break(position=state.count, event_id=state.last_id, reason=reason, line=line)
        else:
            state.broken = Break(
                position=state.count + 1, event_id=None, reason="not an event or checkpoint line", line=line
            )
        if state.broken is not None:
            return state
    state.broken = state.uncovered
    return state


def read_export(lines: Iterable[str | bytes]) -> Iterator[Any]:
    """Parse JSON Lines one at a time; a line that is not JSON yields None (verify_export then
    names it), so line numbers stay aligned."""
    for line in lines:
        try:
            yield json.loads(line)
        except ValueError:
            yield None
