"""The DICOM results of one result (radtriage.exports.dicom): SR (TID 1500), key images (SC + KOS), SEG.

Each task's result is built by hand on a small synthetic source series (radtriage.synth), shaped as its
ops make it (radtriage.inference.findings); every object is written, read back with highdicom and
dumped by dcmtk's dsrdump/dcmdump, and its values compared with the result's.
"""

from __future__ import annotations

import shutil
import subprocess
from datetime import datetime
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.sr.codedict import codes

from radtriage.domain.case import TaskResult
from radtriage.exports.dicom import build
from radtriage.exports.dicom import codes as dcodes
from radtriage.exports.model import CORRECTED, WITHDRAWN, ExportedResult, Patient, SourceInstance, object_uid
from radtriage.imaging.keyimage import DISCLAIMER, render_key_image
from radtriage.imaging.series import load_series
from radtriage.inference import findings as fx

DSRDUMP = shutil.which("dsrdump")
CREATED = datetime(2026, 12, 7, 10, 30, 0)


def _series(folder: Path, number: int) -> list[Path]:
    paths = [p for p in sorted(Path(folder).rglob("*.dcm"))
             if int(pydicom.dcmread(p, stop_before_pixels=True).SeriesNumber) == number]
    return sorted(paths, key=lambda p: int(pydicom.dcmread(p, stop_before_pixels=True).InstanceNumber))


def exported(paths: list[Path], result: TaskResult, result_id: int, **kw) -> ExportedResult:
    first = pydicom.dcmread(paths[0], stop_before_pixels=True)
    instances = []
    for p in paths:
        ds = pydicom.dcmread(p, stop_before_pixels=True)
        instances.append(SourceInstance(ds.SOPClassUID, ds.SOPInstanceUID, int(ds.InstanceNumber), str(p)))
    return ExportedResult(
        result_id=result_id, pipeline_id=f"{result.task}-ref", pipeline_version="1", pipeline_title=result.task.upper(),
        result=result, priority="STAT", created_at=CREATED, study_uid=first.StudyInstanceUID,
        accession=first.get("AccessionNumber"), study_description=first.get("StudyDescription"),
        study_date=first.get("StudyDate"), study_time=first.get("StudyTime"),
        patient=Patient(str(first.PatientID), None, str(first.PatientName), first.get("PatientBirthDate"),
                        first.get("PatientSex")),
        series_uid=first.SeriesInstanceUID, series_number=int(first.SeriesNumber), series_version=1,
        modality=first.Modality, header={}, instances=tuple(instances),
        thresholds={"any" if result.task == "ich" else result.task: 0.5}, **kw)


def _result(task: str, found: list, **kw) -> TaskResult:
    return TaskResult(task=task, model_id=f"{task}-reference", model_version="1.2.0", pipeline_version="1",
                      positive=bool(found), findings=tuple(found), **kw)


def write_all(objects, folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, ds in [("sr", objects.sr), ("kos", objects.kos), ("seg", objects.seg),
                     *((f"sc{i}", d) for i, d in enumerate(objects.key_images))]:
        if ds is not None:
            out[name] = folder / f"{name}.dcm"
            ds.save_as(out[name], enforce_file_format=True)
    return out


def build_and_read(data: dict, result_id: int, folder: Path):
    """Build a task's objects, write them, and give them back with the SR as dsrdump and highdicom read it."""
    e = exported(data["paths"], data["result"], result_id)
    objects = build(e)
    files = write_all(objects, folder)
    return e, objects, files, dsrdump(files["sr"]), hd.sr.srread(files["sr"])


def dsrdump(path: Path) -> str:
    if DSRDUMP is None:
        pytest.skip("dcmtk's dsrdump is not installed")
    run = subprocess.run([DSRDUMP, "-Ec", str(path)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert "error" not in run.stderr.lower(), run.stderr
    return run.stdout


def dcmdump_ok(path: Path) -> None:
    if shutil.which("dcmdump") is None:
        return
    run = subprocess.run(["dcmdump", "-E", str(path)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and "error" not in run.stderr.lower(), run.stderr


def measurement(group, name) -> float:
    (m,) = group.get_measurements(name=name)
    return float(m.value)


def evaluation(group, name) -> hd.sr.CodedConcept:
    (q,) = group.get_qualitative_evaluations(name=name)
    return q.value


def texts(ds, name) -> list[str]:
    """The text values of the content items named ``name`` anywhere below ``ds``."""
    return [item.TextValue for item in _items(ds) if "TextValue" in item
            and item.ConceptNameCodeSequence[0].CodeValue == name.value]


def _items(ds):
    for item in ds.get("ContentSequence", []) if isinstance(ds, pydicom.Dataset) else ds:
        yield item
        yield from _items(item)


def used_codes(ds: pydicom.Dataset) -> set[tuple[str, str]]:
    """Every (scheme, value) coded in a data set's content, recursively."""
    found = set()
    for elem in ds.iterall():
        if elem.VR == "SQ":
            for item in elem.value:
                if "CodeValue" in item and "CodingSchemeDesignator" in item:
                    found.add((item.CodingSchemeDesignator, item.CodeValue))
    return found


def known_code(scheme: str, value: str) -> bool:
    if scheme == "RFC5646":
        return value == "en-US"  # the content's language, which highdicom states
    if scheme == dcodes.RADLEX_SCHEME:
        return value in dcodes.RADLEX
    if scheme == dcodes.LOCAL_SCHEME:
        return value in dcodes.LOCAL
    table = getattr(codes, scheme, None)
    return table is not None and any(getattr(table, n).value == value for n in dir(table))


# --------------------------------------------------------------------------- the four tasks' sources


@pytest.fixture(scope="module")
def head(tmp_path_factory) -> dict:
    from radtriage.synth import ct_head

    folder = tmp_path_factory.mktemp("head")
    ct_head.generate(np.random.default_rng([7, 1]), 1, folder, matrix=128, positive=True)
    paths = _series(folder, 2)
    volume = load_series(paths)
    key = 20
    png = render_key_image(volume, label="ICH - subdural", path=folder / "ich.png", slice_index=key)
    pred = {"positive": True, "slice_probs": [0.9 if 17 <= z <= 23 else 0.1 for z in range(volume.array.shape[0])],
            "subtype": "subdural", "score": 0.93, "key_slice": key}
    (f,) = fx.ich_findings(pred, volume, 0.5)
    f = f.model_copy(update={"key_image": str(png)})
    result = _result("ich", [f], scores={"ich": 0.93, "threshold": 0.5}, labels={"subtype": "subdural"})
    return {"paths": paths, "result": result, "volume": volume}


@pytest.fixture(scope="module")
def chest(tmp_path_factory) -> dict:
    from radtriage.synth import ct_chest

    folder = tmp_path_factory.mktemp("chest")
    truth = ct_chest.generate(np.random.default_rng(3), 3, folder, n_nodules=2, diameter_mm=(12.0, 18.0),
                              matrix=128, slice_spacing=2.5, n_slices=40)
    nodules = [{"centre_mm": n["centre_mm"], "diameter_mm": n["diameter_mm"], "mean_diameter_mm": n["diameter_mm"] - 1,
                "volume_mm3": n["volume_mm3"], "score": 0.9} for n in truth["nodules"]]
    found = fx.nodule_findings({"nodules": nodules}, 0.5)
    png = folder / "nodule.png"
    Image.fromarray(np.full((96, 128), 90, np.uint8), mode="L").save(png)  # a monochrome key image
    found = [found[0].model_copy(update={"key_image": str(png)}), *found[1:]]
    result = _result("nodule", found, scores={"nodule": 0.9, "nodules": float(len(found))},
                     labels={"lung_rads": fx.scan_lung_rads(found)})
    return {"paths": _series(folder, 2), "result": result, "truth": truth}


@pytest.fixture(scope="module")
def cta(tmp_path_factory) -> dict:
    from radtriage.synth import cta_head

    folder = tmp_path_factory.mktemp("cta")
    cta_head.generate(np.random.default_rng(5), 5, folder, lvo=True, matrix=128, slice_thickness=2.5,
                      slice_spacing=2.5, coverage_mm=40.0)
    found = fx.lvo_findings({"positive": True, "side": "left", "segment": "m1", "segment_label": "M1", "score": 0.88})
    result = _result("lvo", found, scores={"lvo": 0.88, "threshold": 0.5}, labels={"side": "left", "segment": "m1"})
    return {"paths": _series(folder, 3), "result": result}


@pytest.fixture(scope="module")
def hand(tmp_path_factory) -> dict:
    from radtriage.synth import xr_hand

    folder = tmp_path_factory.mktemp("hand")
    xr_hand.generate(np.random.default_rng([7, 0]), 0, folder)
    (f,) = fx.bone_age_findings({"bone_age_months": 150.0, "chronological_age_months": 120.0})
    png = folder / "hand.png"
    Image.fromarray(np.zeros((80, 64, 3), np.uint8), mode="RGB").save(png)
    f = f.model_copy(update={"key_image": str(png)})
    result = _result("bone_age", [f], scores={"bone_age_months": 150.0}, labels={"sex": "M"})
    return {"paths": _series(folder, 1), "result": result}


# --------------------------------------------------------------------------- tests


def test_ich_sr_says_subtype_volume_and_key_slice(head, tmp_path):
    e, objects, files, text, sr = build_and_read(head, 101, tmp_path)
    assert "Imaging Measurement Report" in text and "Intracranial hemorrhage" in text
    (group,) = sr.content.get_image_measurement_groups()
    f = head["result"].findings[0]
    assert measurement(group, codes.SCT.Volume) == pytest.approx(f.measurements["estimated_volume_ml"])
    assert evaluation(group, codes.SCT.IntracranialHemorrhage) == codes.SCT.Present
    site = group.finding_sites[0]
    assert site.value == codes.SCT.DuraMater and site.topographical_modifier == codes.SCT.Internal  # subdural
    assert group.tracking_uid == object_uid(101, "track-0")
    # the key slice: the source instance the volume shows as slice 20
    ordered = sorted((pydicom.dcmread(p, stop_before_pixels=True) for p in head["paths"]),
                     key=lambda d: float(np.dot(d.ImagePositionPatient, np.cross(d.ImageOrientationPatient[:3],
                                                                                  d.ImageOrientationPatient[3:]))))
    (source_image,) = group.source_images
    assert source_image.referenced_sop_instance_uid == ordered[20].SOPInstanceUID
    assert sr.PatientID == ordered[0].PatientID and sr.StudyInstanceUID == e.study_uid
    assert sr.CompletionFlag == "COMPLETE" and sr.VerificationFlag == "UNVERIFIED"
    evidence = {i.ReferencedSOPInstanceUID for s in sr.CurrentRequestedProcedureEvidenceSequence
                for se in s.ReferencedSeriesSequence for i in se.ReferencedSOPSequence}
    assert evidence == {i.sop_instance_uid for i in e.instances}
    # TID 4019: the model's id and version, the thresholds as parameters
    assert texts(group, codes.DCM.AlgorithmName) == ["ich-reference"]
    assert texts(group, codes.DCM.AlgorithmVersion) == ["1.2.0"]
    assert texts(group, codes.DCM.AlgorithmParameters) == ["any=0.5"]
    # no region in the ICH result: no SEG; its key image and the key slice in the KOS
    assert objects.seg is None and len(objects.key_images) == 1
    kos = pydicom.dcmread(files["kos"])
    named = {i.ReferencedSOPSequence[0].ReferencedSOPInstanceUID for i in kos.ContentSequence
             if "ReferencedSOPSequence" in i}
    assert named == {objects.key_images[0].SOPInstanceUID, ordered[20].SOPInstanceUID}
    dsrdump(files["kos"])


def test_key_image_has_the_disclaimer_burned_in_and_said(head, tmp_path):
    objects = build(exported(head["paths"], head["result"], 102))
    sc = pydicom.dcmread(write_all(objects, tmp_path)["sc0"])
    dcmdump_ok(tmp_path / "sc0.dcm")
    assert sc.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7" and sc.PhotometricInterpretation == "RGB"
    assert DISCLAIMER in sc.ImageComments and DISCLAIMER in sc.SeriesDescription and sc.BurnedInAnnotation == "YES"
    with Image.open(head["result"].findings[0].key_image) as png:
        assert sc.Rows > png.height and sc.Columns == png.width  # the band above the image
    band = sc.pixel_array[: sc.Rows - png.height]
    assert (band[..., 0] > 200).sum() > 50  # the disclaimer's yellow text
    source = pydicom.dcmread(head["paths"][0], stop_before_pixels=True)
    assert (sc.PatientID, sc.StudyInstanceUID, sc.AccessionNumber) == (
        source.PatientID, source.StudyInstanceUID, source.AccessionNumber)


def test_nodules_sr_and_seg(chest, tmp_path):
    _, objects, files, text, sr = build_and_read(chest, 201, tmp_path)
    assert "Lung-RADS" in text and "SCOORD3D" in text
    rois = sr.content.get_planar_roi_measurement_groups()
    found = chest["result"].findings
    assert len(rois) == len(found) == 2
    frame_of_reference = pydicom.dcmread(chest["paths"][0], stop_before_pixels=True).FrameOfReferenceUID
    for i, (group, f) in enumerate(zip(rois, found, strict=True)):
        m = f.measurements
        assert measurement(group, codes.SCT.LongAxis) == pytest.approx(m["longest_diameter_mm"])
        assert measurement(group, codes.SCT.Diameter) == pytest.approx(m["mean_diameter_mm"])
        assert measurement(group, codes.SCT.Volume) == pytest.approx(m["volume_mm3"])
        category = f.text.split()[1].rstrip(",")
        assert evaluation(group, dcodes.LUNG_RADS_ASSESSMENT).value == f"LR{category}"
        region = group.roi
        assert region.graphic_type == hd.sr.GraphicTypeValues3D.POINT
        assert region.frame_of_reference_uid == frame_of_reference
        assert np.allclose(region.value[0], [m["x_mm"], m["y_mm"], m["z_mm"]], atol=1e-3)
        assert group.tracking_uid == object_uid(201, f"track-{i}")
    (study,) = sr.content.get_image_measurement_groups()
    assert evaluation(study, dcodes.LUNG_RADS_ASSESSMENT).value == f"LR{chest['result'].labels['lung_rads']}"
    assert study.tracking_uid == object_uid(201, "track-study")

    seg = hd.seg.segread(files["seg"])
    assert seg.SegmentationType == "BINARY" and seg.number_of_segments == 2
    assert seg.get_segment_description(1).tracking_uid == object_uid(201, "track-0")
    volume = seg.get_volume(combine_segments=False)
    mask = volume.array[..., 0] if volume.array.ndim == 4 else volume.array
    # the sphere sits where the generator put the nodule
    zyx = np.argwhere(mask)
    centre_lps = volume.map_indices_to_reference(zyx.mean(axis=0)[None])[0]
    assert np.allclose(centre_lps, chest["truth"]["nodules"][0]["centre_mm"], atol=2.5)
    # the monochrome key image
    sc = pydicom.dcmread(files["sc0"])
    assert sc.PhotometricInterpretation == "MONOCHROME2" and sc.Rows > 96
    assert (sc.pixel_array[: sc.Rows - 96] > 100).sum() > 20  # the disclaimer, white on the black band


def test_lvo_sr_side_and_segment(cta, tmp_path):
    _, objects, _, _, sr = build_and_read(cta, 301, tmp_path)
    (group,) = sr.content.get_image_measurement_groups()
    assert evaluation(group, codes.SCT.Occlusion) == codes.SCT.Present
    site = group.finding_sites[0]
    assert site.value == codes.SCT.MiddleCerebralArteryM1Segment and site.laterality == codes.SCT.Left
    assert measurement(group, codes.DCM.Probability) == pytest.approx(0.88)
    assert objects.seg is None and objects.key_images == [] and objects.kos is None


def test_bone_age_sr_values(hand, tmp_path):
    _, objects, files, _, sr = build_and_read(hand, 401, tmp_path)
    (group,) = sr.content.get_image_measurement_groups()
    m = hand["result"].findings[0].measurements
    assert measurement(group, dcodes.BONE_AGE) == pytest.approx(150.0)
    assert measurement(group, codes.DCM.SubjectAge) == pytest.approx(120.0)
    assert measurement(group, dcodes.AGE_DIFFERENCE) == pytest.approx(m["difference_months"])
    assert measurement(group, codes.DCM.ZScore) == pytest.approx(m["z_score"])
    assert objects.seg is None and len(objects.key_images) == 1
    dsrdump(files["kos"])


def test_negative_results_say_absent(head, cta, tmp_path):
    for paths, task, score in ((head["paths"], "ich", "ich"), (cta["paths"], "lvo", "lvo")):
        e = exported(paths, _result(task, [], scores={score: 0.02, "threshold": 0.5}), 500)
        files = write_all(build(e), tmp_path / task)
        (group,) = hd.sr.srread(files["sr"]).content.get_image_measurement_groups()
        finding = codes.SCT.IntracranialHemorrhage if task == "ich" else codes.SCT.Occlusion
        assert evaluation(group, finding) == codes.SCT.Absent
        assert set(files) == {"sr"}


def test_two_builds_give_the_same_uids_and_a_site_key_others(chest):
    e = exported(chest["paths"], chest["result"], 202)
    a, b, other = build(e), build(e), build(e, site_key=b"site-b")
    uids = lambda o: [(d.SeriesInstanceUID, d.SOPInstanceUID) for d in o.all()]  # noqa: E731
    assert uids(a) == uids(b)
    assert len({u for pair in uids(a) for u in pair}) == 4 + len(a.all())  # 4 series, one UID per object
    assert not set(uids(a)) & set(uids(other))
    assert a.sr.SOPInstanceUID == object_uid(202, "sr")


def test_a_correction_names_its_predecessor_and_a_withdrawal_says_do_not_use(chest, tmp_path):
    first = exported(chest["paths"], chest["result"], 203)
    corrected = exported(chest["paths"], chest["result"], 203, status=CORRECTED, revision=1)
    withdrawn = exported(chest["paths"], chest["result"], 203, status=WITHDRAWN, revision=2,
                         notes={"reason": "pipeline demoted"})
    sr0, sr1 = build(first).sr, build(corrected).sr
    assert sr1.SOPInstanceUID != sr0.SOPInstanceUID and sr1.SeriesInstanceUID == sr0.SeriesInstanceUID
    (study,) = sr1.PredecessorDocumentsSequence
    assert study.StudyInstanceUID == first.study_uid
    ref = study.ReferencedSeriesSequence[0]
    assert ref.SeriesInstanceUID == sr0.SeriesInstanceUID
    assert ref.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == sr0.SOPInstanceUID

    gone = build(withdrawn)
    assert gone.key_images == [] and gone.kos is None and gone.seg is None
    files = write_all(gone, tmp_path)
    text = dsrdump(files["sr"])
    assert "WITHDRAWN" in text
    sr = pydicom.dcmread(files["sr"])
    assert sr.CompletionFlag == "PARTIAL" and sr.VerificationFlag == "UNVERIFIED"
    assert "must not be used" in sr.CompletionFlagDescription and "WITHDRAWN" in sr.SeriesDescription
    prev = sr.PredecessorDocumentsSequence[0].ReferencedSeriesSequence[0].ReferencedSOPSequence[0]
    assert prev.ReferencedSOPInstanceUID == sr1.SOPInstanceUID
    assert not hd.sr.srread(files["sr"]).content.get_planar_roi_measurement_groups()


def test_every_code_is_pydicoms_or_listed(head, chest, cta, hand):
    used = set()
    for data, rid in ((head, 1), (chest, 2), (cta, 3), (hand, 4)):
        objects = build(exported(data["paths"], data["result"], 600 + rid))
        for ds in [objects.sr, objects.kos, objects.seg]:
            if ds is not None:
                used |= used_codes(ds)
    unknown = {c for c in used if not known_code(*c)}
    assert not unknown, unknown
    assert ("RADLEX", "RID50134") in used and ("99RADTRIAGE", "BONEAGE") in used
