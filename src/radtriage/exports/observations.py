"""What a result says, as coded observations: the one list the HL7 v2 and FHIR builders both render.

A result becomes groups of items. Group 0 is the study as a whole (is the finding present, the model's
probability, the categorical labels: subtype, side, segment, Lung-RADS); group
``n`` >= 1 is the ``n``-th finding (a haemorrhage, an occlusion, one nodule, the bone age) with its words,
probability and measurements in UCUM units, and, where the finding has a place, its site and tracking
identifiers (DICOM 112039/112040, FHIR BodyStructure).

Codes: SNOMED CT only for the few values that are standard and unambiguous (present/absent, left/right,
brain, lung); everything the model itself names (its tasks, labels and measurements) is a local code of
the ``99RTG`` system (HL7's range for local coding systems; FHIR system ``LOCAL.uri``), mapped by the
receiving site if it wants a standard terminology.
"""

from __future__ import annotations

from dataclasses import dataclass

from radtriage.domain import Finding
from radtriage.exports.model import ExportedResult, object_uid


@dataclass(frozen=True)
class System:
    hl7: str  # HL7 v2 table 0396 name (CWE.3)
    uri: str  # FHIR Coding.system


SCT = System("SCT", "http://snomed.info/sct")
DCM = System("DCM", "http://dicom.nema.org/resources/ontology/DCM")
LOCAL = System("99RTG", "urn:radtriage:code")
UCUM_URI = "http://unitsofmeasure.org"


@dataclass(frozen=True)
class Code:
    code: str
    display: str
    system: System = LOCAL


PRESENT = Code("52101004", "Present", SCT)
ABSENT = Code("2667000", "Absent", SCT)
SIDES = {"left": Code("7771000", "Left", SCT), "right": Code("24028007", "Right", SCT)}
ALGORITHM_NAME = Code("111001", "Algorithm Name", DCM)
ALGORITHM_VERSION = Code("111003", "Algorithm Version", DCM)
TRACKING_ID = Code("112039", "Tracking Identifier", DCM)
TRACKING_UID = Code("112040", "Tracking Unique Identifier", DCM)
FINDING = Code("121071", "Finding", DCM)
DISCLAIMER = "AI result - not for diagnosis"

# What each task looks for (group 0's presence and each finding's concept), by task and by finding code.
CONCEPTS = {
    "ich": "Intracranial haemorrhage",
    "lvo": "Large vessel occlusion",
    "nodule": "Pulmonary nodule",
    "bone_age": "Bone age more than 2 SD from chronological age",
    "bone_age_flag": "Bone age more than 2 SD from chronological age",
}
SITES = {"ich": Code("12738006", "Brain structure", SCT), "nodule": Code("39607008", "Lung structure", SCT)}
LABELS_LEFT_OUT = {"sex"}  # bone age's input, not something it found
MEASUREMENTS_LEFT_OUT = {"key_slice", "slices_above_threshold"}  # where the key image is, not the finding
UNIT_SUFFIXES = (("_mm3", "mm3"), ("_ml", "mL"), ("_mm", "mm"), ("_months", "mo"))
NAMES = {"x_mm": "Centre x (patient LPS)", "y_mm": "Centre y (patient LPS)", "z_mm": "Centre z (patient LPS)",
         "z_score": "Bone age z-score", "bone_age_z": "Bone age z-score", "lung_rads": "Lung-RADS category"}
SPECIAL_UNITS = {"z_score": "{z-score}", "bone_age_z": "{z-score}"}


@dataclass(frozen=True)
class Item:
    """One observation: OBX, FHIR Observation."""

    what: Code
    value: Code | float | str
    unit: str | None = None  # UCUM, for a number
    abnormal: bool = False


@dataclass(frozen=True)
class Site:
    location: Code
    laterality: Code | None
    tracking_id: str  # DICOM 112039: readable, unique in the result ("nodule-2")
    tracking_uid: str  # DICOM 112040: the same for every revision of the result


@dataclass(frozen=True)
class Group:
    number: int  # 0: the study; n: the n-th finding
    concept: Code
    items: tuple[Item, ...]
    site: Site | None = None
    text: str | None = None  # the finding in words, as the worklist shows it


def _name(key: str) -> tuple[str, str]:
    """A measurement or score name to its words and UCUM unit ("estimated_volume_ml" -> "Estimated volume", "mL")."""
    unit, base = SPECIAL_UNITS.get(key, "1"), key
    for suffix, ucum in UNIT_SUFFIXES:
        if key.endswith(suffix):
            unit, base = ucum, key[: -len(suffix)]
            break
    return NAMES.get(key, base.replace("_", " ").capitalize()), unit


def _number(task: str, key: str, value: float) -> Item:
    words, unit = _name(key)
    return Item(Code(f"{task}.{key}", words), float(value), unit)


def _label(task: str, key: str, value: str) -> Item:
    if key == "side" and value.lower() in SIDES:
        return Item(Code(f"{task}.side", "Side"), SIDES[value.lower()])
    return Item(Code(f"{task}.{key}", NAMES.get(key, key.replace("_", " ").capitalize())), Code(value, value))


def concept(code: str) -> Code:
    return Code(code, CONCEPTS.get(code, code.replace("_", " ").capitalize()))


def study_group(r: ExportedResult) -> Group:
    """Group 0: present or absent, the model's probability, its labels (series flags stay in radtriage, as in
    the DICOM exports: `radtriage.exports.dicom.sr.clinical`)."""
    res, task = r.result, r.task
    items = [Item(concept(task), PRESENT if res.positive else ABSENT, abnormal=res.positive)]
    if task in res.scores:
        items.append(Item(Code(f"{task}.probability", "AI probability"), float(res.scores[task]), "1"))
    items += [_label(task, k, v) for k, v in sorted(res.labels.items()) if k not in LABELS_LEFT_OUT]
    return Group(0, concept(task), tuple(items))


def _site(r: ExportedResult, n: int, site_key: bytes) -> Site | None:
    labels = r.result.labels
    if r.task == "lvo" and labels.get("segment"):
        location, laterality = Code(labels["segment"], f"Occluded segment {labels['segment'].upper()}"), \
            SIDES.get(labels.get("side", "").lower())
    elif r.task in SITES:
        location, laterality = SITES[r.task], None
    else:
        return None
    return Site(location, laterality, f"{r.task}-{n}", str(tracking_uid(r, n, site_key)))


def clinical(findings: tuple[Finding, ...]) -> list[Finding]:
    """The findings an export carries: series flags ("series:motion") stay in radtriage, as in the DICOM SR."""
    return [f for f in findings if not f.code.startswith("series:")]


def tracking_uid(r: ExportedResult, n: int, site_key: bytes = b"") -> str:
    """The ``n``-th finding's tracking UID, the same in every revision; the DICOM SR's and SEG's for the same
    finding (`radtriage.exports.dicom.uids.Uids.tracking` counts from 0)."""
    return str(object_uid(r.result_id, f"track-{n - 1}", 0, site_key))


def finding_group(r: ExportedResult, n: int, f: Finding, site_key: bytes = b"") -> Group:
    """Group ``n``: one finding, with its probability and measurements."""
    items = [Item(concept(f.code), PRESENT, abnormal=True), Item(FINDING, f.text)]
    if f.probability is not None:
        items.append(Item(Code(f"{r.task}.probability", "AI probability"), float(f.probability), "1"))
    items += [_number(r.task, k, v) for k, v in f.measurements.items() if k not in MEASUREMENTS_LEFT_OUT]
    return Group(n, concept(f.code), tuple(items), _site(r, n, site_key), f.text)


def groups(r: ExportedResult, site_key: bytes = b"") -> list[Group]:
    """Everything a result says, study first, then one group per finding (`clinical`: series flags left out).
    ``site_key`` as for `object_uid`: a finding's tracking UID is the one its DICOM SR and SEG carry."""
    found = clinical(r.result.findings)
    return [study_group(r), *(finding_group(r, n, f, site_key) for n, f in enumerate(found, start=1))]


def summary(r: ExportedResult) -> str:
    """The result in one line of words, with the disclaimer and the model (HL7 NTE, FHIR conclusion)."""
    res = r.result
    words = "; ".join(f.text for f in clinical(res.findings)) or (
        f"{CONCEPTS.get(r.task, r.task)}: {'present' if res.positive else 'not detected'}")
    return f"{DISCLAIMER}. {r.pipeline_title}: {words}. Model {res.model_id} {res.model_version}."
