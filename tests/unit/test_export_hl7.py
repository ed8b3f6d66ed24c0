"""The HL7 v2.5.1 ORU^R01 of a result (exports/hl7.py): built for each task, parsed back, fields in place."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.parser import parse_message

from radtriage.domain import Finding, TaskResult
from radtriage.exports.hl7 import Hl7Options, build_oru, control_id_of, escape, oru_er7, parse_ack
from radtriage.exports.model import CORRECTED, WITHDRAWN, ExportedResult, Patient
from radtriage.outbox import SendError

SENT = datetime(2026, 12, 7, 12, 30, tzinfo=UTC)

TASKS = {
    "ich": TaskResult(
        task="ich", model_id="ich-ref", model_version="1.2.0", pipeline_version="1", positive=True,
        scores={"ich": 0.9731, "threshold": 0.5}, labels={"subtype": "intraparenchymal"},
        findings=(Finding(code="ich", text="ICH - intraparenchymal, ~12.4 mL", probability=0.9731,
                          measurements={"estimated_volume_ml": 12.4, "key_slice": 14.0,
                                        "slices_above_threshold": 6.0}),)),
    "lvo": TaskResult(
        task="lvo", model_id="lvo-ref", model_version="0.3.1", pipeline_version="2", positive=True,
        scores={"lvo": 0.88, "threshold": 0.4}, labels={"side": "left", "segment": "m1"},
        findings=(Finding(code="lvo", text="LVO - left M1", probability=0.88),)),
    "nodule": TaskResult(
        task="nodule", model_id="nodule-ref", model_version="1.0.0", pipeline_version="1", positive=True,
        scores={"nodule": 0.91, "nodules": 2.0}, labels={"lung_rads": "4B"},
        findings=tuple(Finding(code="nodule", text=f"Lung-RADS {c}, {d:.0f} mm", probability=p,
                               measurements={"longest_diameter_mm": d, "mean_diameter_mm": d - 1,
                                             "volume_mm3": v, "x_mm": 10.0, "y_mm": -20.0, "z_mm": -100.5})
                       for c, d, v, p in (("4B", 14.2, 1100.5, 0.91), ("2", 4.0, 30.0, 0.6)))),
    "bone_age": TaskResult(
        task="bone_age", model_id="bone-age-ref", model_version="2.0.0", pipeline_version="1", positive=True,
        scores={"bone_age_months": 150.0, "bone_age_z": 2.4}, labels={"sex": "M"},
        findings=(Finding(code="bone_age_flag", text="bone age +26 mo, z +2.4 (advanced)",
                          measurements={"bone_age_months": 150.0, "chronological_age_months": 124.0,
                                        "difference_months": 26.0, "z_score": 2.4}),)),
}


def exported(task: str, status: str = "preliminary", **changes) -> ExportedResult:
    """A result as the outbox sender hands it over; no source instances (the messages need none)."""
    r = ExportedResult(
        result_id=41, pipeline_id=f"{task}-pipeline", pipeline_version="1", pipeline_title=f"{task} triage",
        result=TASKS[task], priority="URGENT", created_at=datetime(2026, 12, 7, 12, 0, tzinfo=UTC),
        study_uid="1.2.826.0.1.3680043.8.498.1", accession="ACC-1001", study_description="CT HEAD WO",
        study_date="20261207", study_time="101500.25", patient=Patient("PAT-77", "HOSP-A", "Doe^Jane^Q^^Jr",
                                                                    "19600101", "F"),
        series_uid="1.2.826.0.1.3680043.8.498.2", series_number=3, series_version=1, modality="CT", header={},
        status=status)
    return dataclasses.replace(r, **changes)


def parsed(er7: str):
    return parse_message(er7, validation_level=VALIDATION_LEVEL.STRICT, find_groups=True)


def obx_rows(er7: str) -> list[list[str]]:
    return [s.split("|") for s in er7.split("\r") if s.startswith("OBX|")]


@pytest.mark.parametrize("task", list(TASKS))
def test_each_task_builds_a_valid_oru_that_parses_back(task: str) -> None:
    er7 = oru_er7(exported(task), "RT41-1", sent_at=SENT)
    msg = parsed(er7)
    assert msg.validate()
    assert msg.msh.msh_9.to_er7() == "ORU^R01^ORU_R01" and msg.msh.msh_12.to_er7() == "2.5.1"
    assert msg.msh.msh_10.to_er7() == "RT41-1" and msg.msh.msh_7.to_er7() == "20261207123000+0000"
    patient = msg.oru_r01_patient_result.oru_r01_patient
    pid3 = patient.pid.pid_3
    assert (pid3.cx_1.to_er7(), pid3.cx_4.to_er7(), pid3.cx_5.to_er7()) == ("PAT-77", "HOSP-A", "MR")
    assert patient.pid.pid_5.to_er7() == "Doe^Jane^Q^Jr"  # DICOM suffix (5th) is XPN's 4th
    assert patient.oru_r01_visit.pv1.pv1_2.to_er7() == "U"
    order = msg.oru_r01_patient_result.oru_r01_order_observation
    assert order.obr.obr_2.to_er7() == "ACC-1001" and order.obr.obr_3.to_er7() == "ACC-1001"
    assert order.obr.obr_25.to_er7() == "P" and order.obr.obr_4.to_er7() == "^CT HEAD WO"
    assert order.obr.obr_7.to_er7() == "20261207101500"
    assert "AI result - not for diagnosis" in order.nte.nte_3.to_er7()
    assert TASKS[task].model_id in order.nte.nte_3.to_er7()
    rows = obx_rows(er7)
    assert {r[11] for r in rows} == {"P"}
    assert [r[1] for r in rows] == [str(i) for i in range(1, len(rows) + 1)]
    # the study's presence first, then the algorithm, then each finding in its own OBX-4 group
    assert rows[0][2:6] == ["CWE", f"{task}^{rows[0][3].split('^')[1]}^99RTG", "41.0", "52101004^Present^SCT"]
    algorithm = next(r for r in rows if r[3].startswith("111001"))
    assert (algorithm[3], algorithm[5]) == ("111001^Algorithm Name^DCM", TASKS[task].model_id)
    assert {r[4] for r in rows} >= {"41.0", "41.1"}


def test_numbers_carry_ucum_units_and_codes_their_values() -> None:
    by_code = {}
    for task in TASKS:
        for r in obx_rows(oru_er7(exported(task), "C1", sent_at=SENT)):
            by_code.setdefault(r[3].split("^")[0], r)
    volume = by_code["ich.estimated_volume_ml"]
    assert (volume[2], volume[5], volume[6]) == ("NM", "12.4", "mL^mL^UCUM")
    assert by_code["nodule.longest_diameter_mm"][6] == "mm^mm^UCUM"
    assert by_code["nodule.volume_mm3"][6] == "mm3^mm3^UCUM"
    assert by_code["bone_age.bone_age_months"][5:7] == ["150", "mo^mo^UCUM"]
    assert by_code["lvo.side"][2] == "CWE" and by_code["lvo.side"][5] == "7771000^Left^SCT"
    assert by_code["ich.subtype"][5] == "intraparenchymal^intraparenchymal^99RTG"
    assert by_code["nodule.lung_rads"][5] == "4B^4B^99RTG"
    assert "ich.key_slice" not in by_code and "bone_age.sex" not in by_code  # not findings


def test_a_negative_study_says_absent() -> None:
    neg = TASKS["ich"].model_copy(update={"positive": False, "findings": ()})
    rows = obx_rows(oru_er7(exported("ich", result=neg), "C1", sent_at=SENT))
    assert rows[0][5] == "2667000^Absent^SCT" and rows[0][8] == ""
    assert {r[4] for r in rows} == {"41.0"}


def test_a_correction_is_C_and_a_withdrawal_is_W() -> None:
    first, corrected, withdrawn = (oru_er7(exported("lvo", s), f"C{i}", sent_at=SENT)
                                   for i, s in enumerate(("preliminary", CORRECTED, WITHDRAWN)))
    assert {r[11] for r in obx_rows(first)} == {"P"}
    assert {r[11] for r in obx_rows(corrected)} == {"C"}
    assert {r[11] for r in obx_rows(withdrawn)} == {"W"}
    obr25 = [parsed(m).oru_r01_patient_result.oru_r01_order_observation.obr.obr_25.to_er7()
             for m in (first, corrected, withdrawn)]
    assert obr25 == ["P", "C", "C"]
    assert "withdrawn" in withdrawn and "Corrected" in corrected
    # the same observations, in the same groups, so the RIS replaces exactly what it had
    assert [r[3:5] for r in obx_rows(first)] == [r[3:5] for r in obx_rows(withdrawn)]


def test_a_resend_is_the_same_message() -> None:
    assert oru_er7(exported("nodule"), "RT41-1", sent_at=SENT) == oru_er7(exported("nodule"), "RT41-1", sent_at=SENT)


def test_accession_goes_where_the_site_wants_it() -> None:
    def obr(where: str):
        m = parsed(oru_er7(exported("ich"), "C1", Hl7Options(accession_in=where), SENT))
        o = m.oru_r01_patient_result.oru_r01_order_observation.obr
        return o.obr_2.to_er7(), o.obr_3.to_er7()
    assert obr("filler") == ("", "ACC-1001")
    assert obr("placer") == ("ACC-1001", "")
    with pytest.raises(ValueError):
        obr("nowhere")


def test_site_options_fill_msh_and_pv1() -> None:
    opts = Hl7Options(sending_application="AI", sending_facility="SITE1", receiving_application="RIS",
                      receiving_facility="HOSP", processing_id="T", patient_class="E")
    m = build_oru(exported("ich"), "C9", opts, SENT)
    assert [m.msh.msh_3.to_er7(), m.msh.msh_4.to_er7(), m.msh.msh_5.to_er7(), m.msh.msh_6.to_er7()] == [
        "AI", "SITE1", "RIS", "HOSP"]
    assert m.msh.msh_11.to_er7() == "T"
    assert m.oru_r01_patient_result.oru_r01_patient.oru_r01_visit.pv1.pv1_2.to_er7() == "E"


def test_an_oid_issuer_is_a_universal_id_and_text_is_escaped() -> None:
    r = exported("ich", patient=Patient("A|B", "1.2.840.10008.99", "O'Neil^Ann", None, None),
                 accession="X^1", study_description="CT & CTA | head")
    er7 = oru_er7(r, "C1", sent_at=SENT)
    msg = parsed(er7)
    pid3 = msg.oru_r01_patient_result.oru_r01_patient.pid.pid_3
    assert pid3.cx_1.to_er7() == r"A\F\B"
    assert pid3.cx_4.to_er7() == "&1.2.840.10008.99&ISO"
    order = msg.oru_r01_patient_result.oru_r01_order_observation
    assert order.obr.obr_3.to_er7() == r"X\S\1" and order.obr.obr_4.to_er7() == r"^CT \T\ CTA \F\ head"
    assert escape("a\\b~c\rd") == r"a\E\b\R\c d"


def test_no_patient_id_is_a_permanent_refusal_and_control_ids_are_checked() -> None:
    with pytest.raises(SendError) as err:
        build_oru(exported("ich", patient=Patient(None, None, None, None, None)), "C1", sent_at=SENT)
    assert err.value.permanent
    for bad in ("", "x" * 21, "a|b"):
        with pytest.raises(ValueError):
            build_oru(exported("ich"), bad, sent_at=SENT)


def test_the_hl7_package_reads_it_too() -> None:  # a second, independent parser (python-hl7, a dev dependency)
    import hl7

    msg = hl7.parse(oru_er7(exported("nodule"), "RT41-1", sent_at=SENT))
    assert str(msg.segment("PID")[3][0][3]) == "HOSP-A"
    assert str(msg.segment("OBR")[25]) == "P"


# --------------------------------------------------------------------------- ACKs


def ack(code: str, control_id: str = "RT41-1", err: str = "") -> str:
    return "\r".join(["MSH|^~\\&|RIS|HOSP|RADTRIAGE||20261207||ACK^R01^ACK|A1|P|2.5.1",
                      f"MSA|{code}|{control_id}|text", *([err] if err else [])]) + "\r"


def test_acks_accept_retry_or_refuse() -> None:
    assert parse_ack(ack("AA"), "RT41-1").code == "AA"
    assert parse_ack(ack("CA"), "RT41-1").code == "CA"
    for code, permanent in (("AE", False), ("CE", False), ("AR", True), ("CR", True), ("ZZ", False)):
        with pytest.raises(SendError) as err:
            parse_ack(ack(code, err="ERR|||207^Application internal error^HL70357|E"), "RT41-1")
        assert err.value.permanent is permanent
    with pytest.raises(SendError) as err:
        parse_ack(ack("AA", "OTHER"), "RT41-1")
    assert not err.value.permanent and "MSA-2" in str(err.value)
    with pytest.raises(SendError):
        parse_ack("garbage", "RT41-1")
    assert control_id_of(oru_er7(exported("ich"), "RT41-1", sent_at=SENT)) == "RT41-1"
