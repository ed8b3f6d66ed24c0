"""The outbox: durable delivery for everything that leaves (alerts today; exports, forwards, shares later).

A message is a row, written with `enqueue` in the transaction that decided it,
so a crash loses nothing decided. An `OutboxWorker` sends the due rows of the
kinds it has a `Sender` for, with a lease (a sender that dies leaves it to run
out, and the row goes again with the same idempotency key), retries with
exponential backoff (`Retry`), and after the last attempt or a permanent
refusal marks it failed and lets the sender bypass it (an alert pages the next
channel or level). A new kind brings a `Sender`, a ``kind`` name and its
idempotency keys; the rows are `radtriage.db.outbox`, the table ``outbox``.
"""

from radtriage.db.outbox import CANCELLED, DELIVERED, FAILED, PENDING, SENDING
from radtriage.db.outbox import add as enqueue
from radtriage.db.outbox import cancel, of_subjects
from radtriage.outbox.worker import GIVEN_UP, RETRY, Attempt, OutboxWorker, Retry, Sender, SendError

__all__ = ["CANCELLED", "DELIVERED", "FAILED", "GIVEN_UP", "PENDING", "RETRY", "SENDING", "Attempt", "OutboxWorker",
           "Retry", "SendError", "Sender", "cancel", "enqueue", "of_subjects"]
