"""How a forward row reaches the hub: C-STORE of one instance (the association code of
`radtriage.exports.send_dicom`), STOW-RS of one instance, and the series check: a radtriage hub's
``/api/v1/forward/check`` or a PACS's Storage Commitment (N-ACTION, answered by N-EVENT-REPORT on the same
association), and a JSON POST to a radtriage hub's API (the series check, an edge's AI result).

Each raises `SendError` when the hub did not take it: retried with backoff, unless nothing can change the
answer (the hub refused the instance itself: a conflicting patient, an unacceptable SOP class).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

import httpx
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid
from pynetdicom import build_context, evt
from pynetdicom.sop_class import StorageCommitmentPushModel

from radtriage.config.forward import HubDicom
from radtriage.exports.send_dicom import associate, c_store
from radtriage.forward.copy import Copy
from radtriage.outbox import SendError

STORAGE_COMMITMENT_INSTANCE = "1.2.840.10008.1.20.1.1"  # the well-known Storage Commitment Push Model SOP Instance
_UNCOMPRESSED = (ExplicitVRLittleEndian, ImplicitVRLittleEndian)


def cstore(hub: HubDicom, calling_ae: str, copy: Copy, sop_class: str, transfer_syntax: str) -> None:
    """C-STORE one instance on its own association, in its stored transfer syntax (an edited copy may also
    go in the other uncompressed one)."""
    syntaxes = [transfer_syntax] + ([s for s in _UNCOMPRESSED if s != transfer_syntax]
                                    if copy.dataset is not None and transfer_syntax in _UNCOMPRESSED else [])
    assoc = associate(hub, calling_ae, [sop_class], contexts=[build_context(sop_class, syntaxes)])
    try:
        c_store(assoc, hub.name, copy.dataset if copy.dataset is not None else str(copy.path), "forwarded instance")
    except (ValueError, AttributeError) as exc:  # no accepted context for its transfer syntax
        raise SendError(f"{hub.name}: does not accept this instance's SOP class or transfer syntax "
                        f"({type(exc).__name__})", permanent=True) from None
    finally:
        if assoc.is_established:
            assoc.release()


def _headers(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def _refused(name: str, r: httpx.Response) -> SendError:
    # 409: the hub refused the instance itself (a conflicting patient or UID: held there for an administrator);
    # 4xx other than auth and throttling cannot change by trying again; 401/403: a token an operator can fix
    permanent = r.status_code == 409 or (400 <= r.status_code < 500 and r.status_code not in (401, 403, 408, 429))
    return SendError(f"{name}: HTTP {r.status_code}", permanent=permanent)


def stow(client: httpx.Client, url: str, token: str | None, copy: Copy) -> None:
    """STOW-RS one instance (a multipart/related body of one application/dicom part)."""
    boundary = "radtriage-forward-" + generate_uid(prefix=None).replace(".", "")[:24]
    body = (f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + copy.part10()
            + f"\r\n--{boundary}--\r\n".encode())
    headers = {**_headers(token), "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
               "Accept": "application/dicom+json"}
    try:
        r = client.post(url, content=body, headers=headers)
    except httpx.HTTPError as exc:
        raise SendError(f"hub: STOW-RS: {type(exc).__name__}") from None
    if r.status_code != 200:
        raise _refused("hub", r)


def check_api(client: httpx.Client, url: str, token: str | None, site: str, study_uid: str, series_uid: str,
              sop_instance_uids: list[str]) -> list[str]:
    """Ask a radtriage hub which of a series' instances it lacks (and tell it the study's site)."""
    body = {"site": site, "study_uid": study_uid, "series_uid": series_uid, "sop_instance_uids": sop_instance_uids}
    return [str(u) for u in post_json(client, url, token, body, "series check")["missing"]]


def post_json(client: httpx.Client, url: str, token: str | None, body: dict[str, Any], what: str) -> dict[str, Any]:
    """POST ``body`` to a radtriage hub's API with the service token; its JSON answer (`SendError` otherwise)."""
    try:
        r = client.post(url, json=body, headers=_headers(token))
    except httpx.HTTPError as exc:
        raise SendError(f"hub: {what}: {type(exc).__name__}") from None
    if r.status_code != 200:
        raise _refused("hub", r)
    return r.json()


def commitment(hub: HubDicom, calling_ae: str, refs: Iterable[tuple[str, str]], wait_s: float) -> list[str] | None:
    """Storage Commitment of ``refs`` ((SOP Class UID, SOP Instance UID)): the UIDs the PACS does not commit to
    hold, or None when it does not offer Storage Commitment. The answer is awaited on this association for
    ``wait_s`` seconds (a PACS that answers on a new association only is not supported: `SendError`)."""
    refs = list(refs)
    answered, failed = threading.Event(), []

    def on_report(event: Any) -> tuple[int, None]:
        failed.extend(str(i.ReferencedSOPInstanceUID) for i in event.event_information.get("FailedSOPSequence", []))
        answered.set()
        return 0x0000, None

    cx = build_context(StorageCommitmentPushModel, list(_UNCOMPRESSED))
    try:
        assoc = associate(hub, calling_ae, [], contexts=[cx], handlers=[(evt.EVT_N_EVENT_REPORT, on_report)])
    except SendError as exc:
        if exc.permanent:  # it accepts no Storage Commitment context (or refuses us for good)
            return None
        raise
    try:
        if not any(c.abstract_syntax == StorageCommitmentPushModel for c in assoc.accepted_contexts):
            return None
        ds = Dataset()
        ds.TransactionUID = generate_uid()
        ds.ReferencedSOPSequence = [_ref(cls, uid) for cls, uid in refs]
        status, _ = assoc.send_n_action(ds, 1, StorageCommitmentPushModel, STORAGE_COMMITMENT_INSTANCE)
        code = getattr(status, "Status", None)
        if code is None or code != 0x0000:
            raise SendError(f"{hub.name}: Storage Commitment N-ACTION status {code}")
        if not answered.wait(wait_s):
            raise SendError(f"{hub.name}: no Storage Commitment report on the association in {wait_s:g} s")
        return failed
    finally:
        if assoc.is_established:
            assoc.release()


def _ref(sop_class: str, sop_instance: str) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = sop_class
    item.ReferencedSOPInstanceUID = sop_instance
    return item
