"""RDSRs built independently of radtriage's writer: XML written here by hand (the schema of dcmtk's dsr2xml)
is made into DICOM SR by dcmtk's ``xml2dsr``, checked clean by ``dsrdump``, and read back by
`radtriage.dose.rdsr` to the values written: several irradiation events, the 16 and the 32 cm phantoms, the
accumulated data after the events and the CT Dose items in another order than radtriage writes them, other
units (Gy.m2, Gy, mGy.cm), and a projection X-ray report."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from radtriage.dose.judge import examination_of
from radtriage.dose.registry import read_series
from tests.helpers import dcmtk

XML2DSR, DSRDUMP = dcmtk("xml2dsr"), dcmtk("dsrdump")
pytestmark = pytest.mark.skipif(XML2DSR is None or DSRDUMP is None, reason="dcmtk xml2dsr/dsrdump not available")
RDSR = "1.2.840.10008.5.1.4.1.1.88.67"


def concept(value: str, meaning: str, scheme: str = "DCM") -> str:
    return (f"<concept><value>{value}</value><scheme><designator>{scheme}</designator></scheme>"
            f"<meaning>{meaning}</meaning></concept>")


def coded(value: str, meaning: str, scheme: str) -> str:
    return f"<value>{value}</value><scheme><designator>{scheme}</designator></scheme><meaning>{meaning}</meaning>"


def item(kind: str, name: tuple[str, str], body: str, rel: str = "CONTAINS") -> str:
    return f"<{kind}><relationship>{rel}</relationship>{concept(*name)}{body}</{kind}>"


def num(name: tuple[str, str], value: str, unit: str, meaning: str | None = None) -> str:
    return item("num", name, f"<value>{value}</value><unit>{coded(unit, meaning or unit, 'UCUM')}</unit>")


def code(name: tuple[str, str], value: tuple[str, str, str], rel: str = "CONTAINS") -> str:
    return item("code", name, coded(*value), rel)


def container(name: tuple[str, str], *items: str, rel: str = "CONTAINS") -> str:
    return (f'<container flag="SEPARATE"><relationship>{rel}</relationship>{concept(*name)}'
            + "".join(items) + "</container>")


def document(uid: str, content: str, protocol: str) -> str:
    return f"""<?xml version="1.0" encoding="ISO-8859-1"?>
<report type="X-Ray Radiation Dose SR">
<sopclass uid="{RDSR}">XRayRadiationDoseSRStorage</sopclass>
<charset>ISO_IR 100</charset>
<modality>SR</modality>
<device><manufacturer>ACME MEDICAL</manufacturer><model>Tomo 9000</model><serial>XML0042</serial><version>ACME 4.2</version></device>
<patient><id>XMLTEST1</id><name><first>HAND</first><last>WRITTEN</last></name>
<birthday><date>1961-03-02</date></birthday><sex>M</sex><weight>81.5</weight></patient>
<study uid="{uid}.1"><id>X1</id><date>2026-05-04</date><time>10:20:30</time>
<accession><number>XMLACC1</number></accession><description>CT HEAD NECK CHEST</description></study>
<series uid="{uid}.2"><number>501</number><date>2026-05-04</date><time>10:20:30</time>
<protocol>{protocol}</protocol><description>Dose Info</description></series>
<instance uid="{uid}.3"><number>1</number></instance>
<document><completion flag="COMPLETE"></completion><verification flag="UNVERIFIED"></verification>
<content><date>2026-05-04</date><time>10:31:00</time>
<container flag="SEPARATE">{concept("113701", "X-Ray Radiation Dose Report")}{content}</container>
</content></document></report>
"""


LOCALIZER = ("113805", "Constant Angle Acquisition", "DCM")
SPIRAL = ("116152004", "Spiral Acquisition", "SCT")
SEQUENCED = ("113804", "Sequenced Acquisition", "DCM")
HEAD, CHEST, NECK = ("69536005", "Head", "SCT"), ("51185008", "Chest", "SCT"), ("45048000", "Neck", "SCT")
PHANTOM = {16: ("113690", "IEC Head Dosimetry Phantom", "DCM"), 32: ("113691", "IEC Body Dosimetry Phantom", "DCM")}
# protocol, region, acquisition type, phantom, CTDIvol mGy, DLP mGy.cm, length mm, kV, event UID
EVENTS = [("SCOUT AP", CHEST, LOCALIZER, None, None, None, 512.0, 120, "2.25.7001"),
          ("BRAIN SEQ", HEAD, SEQUENCED, 16, 47.25, 756.0, 160.0, 120, "2.25.7002"),
          ("NECK HELIX", NECK, SPIRAL, 32, 11.5, 189.75, 165.0, 100, "2.25.7003"),
          ("CHEST HELIX", CHEST, SPIRAL, 32, 8.75, 280.0, 320.0, 100, "2.25.7004")]


def ct_acquisition(protocol, region, kind, phantom, ctdi, dlp, length, kv, uid) -> str:
    dose = container(("113829", "CT Dose"), code(("113835", "CTDIw Phantom Type"), PHANTOM[phantom]),
                     num(("113838", "DLP"), str(dlp), "mGy.cm"), num(("113830", "Mean CTDIvol"), str(ctdi), "mGy")
                     ) if phantom else ""
    return container(
        ("113819", "CT Acquisition"),
        item("text", ("125203", "Acquisition Protocol"), f"<value>{protocol}</value>"),
        code(("123014", "Target Region"), region), code(("113820", "CT Acquisition Type"), kind),
        item("uidref", ("113769", "Irradiation Event UID"), f"<value>{uid}</value>"),
        container(("113822", "CT Acquisition Parameters"), num(("113825", "Scanning Length"), str(length), "mm"),
                  container(("113831", "CT X-Ray Source Parameters"), num(("113733", "KVP"), str(kv), "kV"))),
        dose)


def _built(tmp_path: Path, xml: str) -> Path:
    src, out = tmp_path / "report.xml", tmp_path / "report.dcm"
    src.write_text(xml, encoding="latin-1")
    made = subprocess.run([XML2DSR, str(src), str(out)], capture_output=True, text=True, timeout=60)
    assert made.returncode == 0 and out.exists(), made.stderr
    dump = subprocess.run([DSRDUMP, "-Ee", str(out)], capture_output=True, text=True, timeout=60)
    assert dump.returncode == 0 and not dump.stderr.strip(), dump.stderr  # no error, no warning
    return out


def _read(path: Path):
    outcome, reports = read_series([{"path": str(path), "sop_class_uid": RDSR, "is_localizer": False,
                                     "instance_number": 1}], "SR")
    assert outcome == "rdsr"
    return reports[0]


def test_ct_rdsr_from_xml2dsr_reads_back(tmp_path):
    content = "".join([
        code(("121058", "Procedure reported"), ("77477000", "Computed Tomography X-Ray", "SCT"), "HAS CONCEPT MOD"),
        *[ct_acquisition(*e) for e in EVENTS],  # the events first, the accumulated data after them
        container(("113811", "CT Accumulated Dose Data"), num(("113813", "CT Dose Length Product Total"),
                                                               "1225.75", "mGy.cm"),
                  num(("113812", "Total Number of Irradiation Events"), "4", "{events}", "events")),
        code(("113854", "Source of Dose Information"), ("113856", "Automated Data Collection", "DCM"))])
    got = _read(_built(tmp_path, document("2.25.99001", content, "HEAD NECK CHEST")))
    assert (got.modality, got.source, got.estimated) == ("CT", "rdsr", False)
    assert (got.study_uid, got.series_uid, got.sop_instance_uid) == ("2.25.99001.1", "2.25.99001.2", "2.25.99001.3")
    assert got.dlp_total == 1225.75 and got.protocol == "HEAD NECK CHEST"
    assert got.patient.sex == "M" and got.patient.weight_kg == 81.5 and 65 < got.patient.age_years < 65.3
    assert got.manufacturer == "ACME MEDICAL" and got.device_serial == "XML0042"
    assert len(got.events) == 4
    for (protocol, region, kind, phantom, ctdi, dlp, length, kv, uid), e in zip(EVENTS, got.events, strict=True):
        assert (e.protocol, e.target_region, e.acquisition_type, e.event_uid) == (protocol, region[1], kind[1], uid)
        assert (e.phantom_cm, e.ctdivol, e.dlp, e.scan_length_mm, e.kvp) == (phantom, ctdi, dlp, length, kv)
    assert got.events[0].is_localizer and not any(e.is_localizer for e in got.events[1:])
    exam = examination_of([got])
    assert exam.phantom_cm == 16 and exam.values == {"CTDIvol": 47.25, "DLP": 756.0}  # 16 cm carries most DLP


def test_projection_rdsr_from_xml2dsr_reads_back_in_registry_units(tmp_path):
    views = [("PA", "2.25.8001", "0.0000125", "0.00021", "410"), ("LAT", "2.25.8002", "0.0000275", "0.00046", "385")]
    events = [container(
        ("113706", "Irradiation Event X-Ray Data"),
        item("uidref", ("113769", "Irradiation Event UID"), f"<value>{uid}</value>"),
        code(("113721", "Irradiation Event Type"), ("113611", "Stationary Acquisition", "DCM")),
        item("text", ("125203", "Acquisition Protocol"), f"<value>CHEST {view}</value>"),
        code(("123014", "Target Region"), CHEST),
        num(("122130", "Dose Area Product"), dap, "Gy.m2"), num(("113738", "Dose (RP)"), rp, "Gy"),
        num(("113845", "Exposure Index"), ei, "1", "no units")) for view, uid, dap, rp, ei in views]
    content = "".join([
        code(("121058", "Procedure reported"), ("113704", "Projection X-Ray", "DCM"), "HAS CONCEPT MOD"),
        container(("113702", "Accumulated X-Ray Dose Data"), num(("113722", "Dose Area Product Total"), "0.00004",
                                                                 "Gy.m2"), num(("113725", "Dose (RP) Total"), "0.00067",
                                                                               "Gy")), *events])
    got = _read(_built(tmp_path, document("2.25.99002", content, "CHEST 2 VIEWS")))
    assert got.modality == "DX" and len(got.events) == 2
    assert got.dap_total == pytest.approx(0.4) and got.entrance_dose_total == pytest.approx(0.67)  # Gy.cm2, mGy
    assert [e.dap for e in got.events] == pytest.approx([0.125, 0.275])
    assert [e.entrance_dose for e in got.events] == pytest.approx([0.21, 0.46])
    assert [e.exposure_index for e in got.events] == [410.0, 385.0]
    assert [e.protocol for e in got.events] == ["CHEST PA", "CHEST LAT"]
