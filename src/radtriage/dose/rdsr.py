"""Reading a Radiation Dose Structured Report (CT: TID 10011; projection X-ray: TID 10001) by concept codes.

The content tree (`radtriage.dose.srtree`: from pydicom, or straight from a file's bytes) is walked, each
value found by its concept name code (DCM 113813 CT Dose Length Product Total, 113830 Mean CTDIvol, 113838
DLP, 113835 CTDIw Phantom Type...) within its container, never by position, so that the order and nesting
scanners choose do not matter. Values are converted to
the registry's units (`radtriage.dose.model.to_unit`) from the units each item carries.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes

from radtriage.dose.header import PHANTOM_CODES, common_fields
from radtriage.dose.model import RDSR_CLASSES, DoseEvent, DoseReport, to_unit
from radtriage.dose.srtree import Item, from_dataset, read_file

DCM, SCT = codes.DCM, codes.SCT
CT_PROCEDURE = "77477000"  # SCT "Computed Tomography X-Ray" (P5-08000): Procedure reported of a CT RDSR
DOSE_REPORT = DCM.XRayRadiationDoseReport.value  # 113701


class NotADoseReport(ValueError):
    """The object is not an RDSR this reader knows (another SR, or no dose report root)."""


def is_rdsr(ds: Dataset) -> bool:
    return str(ds.get("SOPClassUID", "")) in RDSR_CLASSES


def _walk(container: Item) -> Iterator[Item]:
    """Every content item under ``container`` (depth first)."""
    for item in container.children:
        yield item
        yield from _walk(item)


def children(container: Item, code: str) -> list[Item]:
    """The direct children of ``container`` named by ``code``."""
    return [i for i in container.children if i.code == code]


Index = dict[str, Item]


def index(container: Item) -> Index:
    """Every concept code under ``container`` -> its first item (depth first), by one walk of the subtree."""
    out: Index = {}
    for item in _walk(container):
        if item.code is not None and item.code not in out:
            out[item.code] = item
    return out


def find(container: Item | Index, code: str) -> Item | None:
    """The first item named by ``code`` anywhere under ``container`` (or in its `index`)."""
    return (container if isinstance(container, dict) else index(container)).get(code)


def num(container: Item | Index, code: str, quantity: str | None = None) -> float | None:
    """A NUM item's value under ``container``; with ``quantity``, in the registry's unit for it."""
    item = find(container, code)
    if item is None or item.number is None:
        return None
    return item.number if quantity is None else to_unit(quantity, item.number, item.unit or "")


def code_of(container: Item | Index, code: str) -> tuple[str, str] | None:
    """A CODE item's (code value, code meaning) under ``container``."""
    item = find(container, code)
    return item.concept if item is not None else None


def text_of(container: Item | Index, code: str) -> str | None:
    item = find(container, code)
    if item is None or item.text is None:
        return None
    return " ".join(item.text.split())[:64] or None


def _meaning(container: Item | Index, code: str) -> str | None:
    got = code_of(container, code)
    return got[1] or None if got else None


def ct_event(acq: Item | Index) -> DoseEvent:
    """One CT Acquisition container (DCM 113819)."""
    acq = acq if isinstance(acq, dict) else index(acq)
    phantom = code_of(acq, DCM.CtdiwPhantomType.value)
    return DoseEvent(
        kind="ct", event_uid=text_of(acq, DCM.IrradiationEventUID.value),
        protocol=text_of(acq, DCM.AcquisitionProtocol.value), target_region=_meaning(acq, DCM.TargetRegion.value),
        acquisition_type=_meaning(acq, DCM.CTAcquisitionType.value),
        phantom_cm=PHANTOM_CODES.get(phantom[0]) if phantom else None,
        ctdivol=num(acq, DCM.MeanCtdivol.value, "CTDIvol"), dlp=num(acq, DCM.DLP.value, "DLP"),
        scan_length_mm=num(acq, DCM.ScanningLength.value), kvp=num(acq, DCM.KVP.value),
        tube_current_ma=num(acq, DCM.XRayTubeCurrent.value))


def projection_event(ev: Item | Index) -> DoseEvent:
    """One Irradiation Event X-Ray Data container (DCM 113706)."""
    ev = ev if isinstance(ev, dict) else index(ev)
    return DoseEvent(
        kind="projection", event_uid=text_of(ev, DCM.IrradiationEventUID.value),
        protocol=text_of(ev, DCM.AcquisitionProtocol.value), target_region=_meaning(ev, DCM.TargetRegion.value),
        acquisition_type=_meaning(ev, DCM.IrradiationEventType.value), kvp=num(ev, DCM.KVP.value),
        tube_current_ma=num(ev, DCM.XRayTubeCurrent.value), dap=num(ev, DCM.DoseAreaProduct.value, "DAP"),
        entrance_dose=num(ev, DCM.DoseRP.value, "EntranceDose"), exposure_index=num(ev, DCM.ExposureIndex.value),
        target_exposure_index=num(ev, DCM.TargetExposureIndex.value),
        deviation_index=num(ev, DCM.DeviationIndex.value))


def read_rdsr(ds: Dataset, tree: Item | None = None) -> DoseReport:
    """The `DoseReport` of an X-Ray Radiation Dose SR (CT or projection); `NotADoseReport` otherwise.
    ``tree``: its content tree where already read (`radtriage.dose.srtree.read_file`)."""
    tree = tree if tree is not None else from_dataset(ds)
    if not is_rdsr(ds) or tree.code != DOSE_REPORT:
        raise NotADoseReport("not an X-Ray Radiation Dose Report (DCM 113701)")
    fields = common_fields(ds)
    items = list(_walk(tree))
    root: Index = {}
    for item in items:
        if item.code is not None:
            root.setdefault(item.code, item)
    procedure = code_of(root, DCM.ProcedureReported.value)
    ct_acquisition = DCM.CTAcquisition.value
    cts = [i for i in items if i.code == ct_acquisition]
    if cts or (procedure and procedure[0] == CT_PROCEDURE):
        accumulated = find(root, DCM.CTAccumulatedDoseData.value)
        events = tuple(ct_event(a) for a in cts)
        total = num(accumulated, DCM.CTDoseLengthProductTotal.value, "DLP") if accumulated is not None else None
        if total is None:
            total = sum(e.dlp or 0.0 for e in events) if events else None
        return DoseReport(**{**fields, "protocol": _protocol(fields, events)}, modality="CT", source="rdsr", estimated=False,
                          events=events, dlp_total=total)
    xray_event = DCM.IrradiationEventXRayData.value
    events = tuple(projection_event(e) for e in items if e.code == xray_event)
    accumulated = find(root, DCM.AccumulatedXRayDoseData.value)
    dap_total = num(accumulated, DCM.DoseAreaProductTotal.value, "DAP") if accumulated is not None else None
    rp_total = num(accumulated, DCM.DoseRPTotal.value, "EntranceDose") if accumulated is not None else None
    if dap_total is None and any(e.dap is not None for e in events):
        dap_total = sum(e.dap or 0.0 for e in events)
    if rp_total is None and any(e.entrance_dose is not None for e in events):
        rp_total = sum(e.entrance_dose or 0.0 for e in events)
    modality = "XA" if procedure and procedure[0] != DCM.ProjectionXRay.value else "DX"
    return DoseReport(**{**fields, "protocol": _protocol(fields, events)}, modality=modality, source="rdsr", estimated=False,
                      events=events, dap_total=dap_total, entrance_dose_total=rp_total)


def read_rdsr_file(path: str | Path) -> DoseReport:
    """`read_rdsr` of a file, its content tree read straight from the bytes (`radtriage.dose.srtree`)."""
    ds, tree = read_file(path)
    return read_rdsr(ds, tree)


def _protocol(fields: dict, events: tuple[DoseEvent, ...]) -> str | None:
    """The report's protocol: the header's Protocol Name, else its first acquisition's (localizers aside)."""
    return fields["protocol"] or next((e.protocol for e in events if e.protocol and not e.is_localizer), None)
