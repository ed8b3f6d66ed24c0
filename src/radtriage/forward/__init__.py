"""Edge gateways: a radtriage at a community or partner site forwards every stored instance to a hub.

`worker.Forwarding` (started by the runtime when ``forward:`` is configured) queues one outbox row of kind
``forward`` per stored instance (`worker.ForwardSweep`) and sends it (`sender.ForwardSender`, by C-STORE or
STOW-RS: `transport`), with this site's Issuer of Patient ID added to the copy that leaves where the
scanner left it empty (`copy`). After each series closes, a series check asks the hub which instances it
lacks and queues them again. The hub's side is `radtriage.api.forward` (the check, a study's site of
origin). docs/forwarding.md describes it for operators.
"""

from radtriage.db.forward import KIND

__all__ = ["KIND"]
