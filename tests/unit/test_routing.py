"""Routing: the pipeline schema, the select operators, series choice and priority rules.

Series come from small synthetic studies (`radtriage.synth`, 128 matrix) and
from pydicom-data; their headers are built the way ingest builds them
(`parse_part10(...).series_header()`, localizers counted apart as the
assembler does).
"""

from __future__ import annotations

import json
import shutil
from collections import OrderedDict
from pathlib import Path
from typing import Any

import pydicom
import pytest
import yaml

from radtriage.domain import Priority
from radtriage.ingest.parse import header_of, parse_part10
from radtriage.inference.tasks import OPS
from radtriage.pipelines import PipelineConfigError, PipelineSpec, load_pipelines, parse_pipeline
from radtriage.routing import best_series, matches, near_misses, rank_series, route, why_not
from radtriage.rules import Select, parse_age
from radtriage.triage import result_priority as priority_for
from radtriage.synth import synthesize

REPO = Path(__file__).resolve().parents[2]
PIPELINES = REPO / "pipelines"
Series = tuple[str, dict[str, Any], int]


# --------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def specs() -> list[PipelineSpec]:
    return load_pipelines(PIPELINES)


def by_id(specs: list[PipelineSpec], pipeline_id: str) -> PipelineSpec:
    return next(s for s in specs if s.id == pipeline_id)


def read_series(folder: Path) -> list[tuple[str, dict[str, Any], int, int]]:
    """(series UID, header, instances without localizers, series number) per series, as ingest sees them."""
    series: OrderedDict[str, dict[str, Any]] = OrderedDict()
    for path in sorted(folder.glob("*.dcm")):
        _, h = parse_part10(path.read_bytes())
        s = series.setdefault(h.series_uid, {"header": h.series_header(), "n": 0, "localizers": 0})
        s["n"] += 1
        s["localizers"] += h.is_localizer
    out = []
    for uid, s in series.items():
        header = {**s["header"], "LocalizerCount": s["localizers"]}
        out.append((uid, header, s["n"] - s["localizers"], int(header["SeriesNumber"])))
    return out


def roles(truth: dict[str, Any]) -> dict[int, str]:
    """Series number -> role ("main", "localizer", "bone", "mip", "oblique", ...)."""
    main = truth["main_series_number"]
    return {s["number"]: "main" if s["number"] == main else s.get("role") or s.get("view") for s in truth["series"]}


STUDIES = {  # kind -> (synth options, seed, pipeline of its main series, roles the seed must give)
    "ct-head": ({"matrix": 128}, 3, "stroke_ich", {"localizer", "main", "bone"}),
    "cta-head": ({"matrix": 128}, 3, "stroke_lvo", {"localizer", "main", "thick", "mip"}),
    "ct-chest": ({"matrix": 128}, 3, "lung_nodule", {"localizer", "main", "thick-soft-tissue"}),
    "xr-hand": (None, 4, "bone_age", {"main", "oblique"}),
}


@pytest.fixture(scope="module")
def studies(tmp_path_factory) -> dict[str, tuple[list, dict[int, str]]]:
    out = {}
    root = tmp_path_factory.mktemp("synth")
    for kind, (options, seed, _, _) in STUDIES.items():
        folder = synthesize(kind, 1, seed, root, options)[0]
        truth = json.loads((folder / "truth.json").read_text())
        out[kind] = (read_series(folder), roles(truth))
    return out


def candidates(series) -> list[Series]:
    return [(uid, header, n) for uid, header, n, _ in series]


def dicom_header(name: str) -> dict[str, Any]:
    from pydicom.data import get_testdata_file

    path = get_testdata_file(name)
    assert path, f"pydicom-data lacks {name}"
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    return header_of(ds, str(ds.file_meta.TransferSyntaxUID)).series_header()


BASE = {
    "id": "probe",
    "version": "1.0",
    "task": "ich",
    "model": "ich-densenet2d",
    "select": {"rules": [{"keyword": "Modality", "equals": "CT"}]},
    "preprocess": [{"op": "ct_hu_volume"}, {"op": "ich_windows"}],
    "postprocess": [{"op": "ich_study_result"}],
}


def spec_with(*rules: dict[str, Any], **select: Any) -> PipelineSpec:
    return parse_pipeline({**BASE, "select": {"rules": list(rules), **select}}, "probe.yaml")


# --------------------------------------------------------------------------- the reference pipelines


def test_reference_pipelines_load(specs):
    assert {s.id: (s.task, s.model, s.alert) for s in specs} == {
        "stroke_ich": ("ich", "ich-densenet2d", "stroke"),
        "stroke_lvo": ("lvo", "lvo-densenet2d", "stroke"),
        "lung_nodule": ("nodule", "nodule-cnn3d", None),
        "bone_age": ("bone_age", "bone-age-resnet2d", None),
    }
    for s in specs:
        assert s.prefer and s.preprocess and s.postprocess
        assert {o.op for o in [*s.preprocess, *s.postprocess]} <= set(OPS)


@pytest.mark.parametrize("kind", list(STUDIES))
def test_each_study_routes_its_main_series_to_its_pipeline(kind, studies, specs):
    series, role_of = studies[kind]
    _, _, pipeline, expected_roles = STUDIES[kind]
    assert set(role_of.values()) == expected_roles  # the seed still gives the series this test is about
    for uid, header, n, number in series:
        routed = route(specs, header, n)
        if role_of[number] == "main":
            assert routed == [pipeline], (number, header.get("SeriesDescription"))
        else:  # localizer, bone-kernel twin, thick twin, MIP, oblique view: no pipeline at all
            assert routed == [], (role_of[number], routed, header.get("SeriesDescription"))
    main_uid = next(uid for uid, _, _, number in series if role_of[number] == "main")
    cands = candidates(series)
    assert best_series(by_id(specs, pipeline), cands) == main_uid
    assert best_series(by_id(specs, pipeline), cands[::-1]) == main_uid
    for other in specs:
        if other.id != pipeline:
            assert best_series(other, cands) is None


@pytest.mark.parametrize("kind", ["cta-head", "ct-chest", "xr-hand"])
def test_prefer_alone_puts_the_main_series_first(kind, studies, specs):
    """With a select that lets every series of the study through, ``prefer`` still picks the main one:
    the axial source over the MIP and the thick twin (CTA), the thin over the 5 mm series (chest),
    the PA over the oblique view (hand)."""
    series, role_of = studies[kind]
    spec = by_id(specs, STUDIES[kind][2])
    modality = series[0][1]["Modality"]
    loose = spec.model_copy(update={"select": Select(rules=[{"keyword": "Modality", "equals": modality}])})
    cands = candidates(series)[::-1]  # the main series is not first in the given order
    ranked = rank_series(loose, cands)
    assert len(ranked) == sum(1 for _, _, n, _ in series if n > 0) >= 2
    number_of = {uid: number for uid, _, _, number in series}
    assert role_of[number_of[ranked[0]]] == "main"
    assert role_of[number_of[ranked[-1]]] != "main"


def test_localizer_series_matches_nothing_even_when_counted_as_slices(studies, specs):
    series, role_of = studies["ct-head"]
    uid, header, n, number = next(s for s in series if role_of[s[3]] == "localizer")
    assert n == 0 and header["LocalizerCount"] == 1
    # were its instance counted (a sender without LOCALIZER handling), ImageType still keeps it out
    assert route(specs, header, 40) == []
    assert any("LOCALIZER" in r for r in why_not(by_id(specs, "stroke_ich"), header, 40))


def test_bone_kernel_twin_is_kept_from_ich_by_its_kernel(studies, specs):
    series, role_of = studies["ct-head"]
    ich = by_id(specs, "stroke_ich")
    main = next(s for s in series if role_of[s[3]] == "main")
    bone = next(s for s in series if role_of[s[3]] == "bone")
    assert not matches(ich, bone[1], bone[2])
    assert any("ConvolutionKernel" in r for r in why_not(ich, bone[1], bone[2]))
    for kernel in ("BONE", "BONEPLUS", "YC", "FC35", "H70h", "Hr64", "J70h"):
        assert not matches(ich, {**main[1], "ConvolutionKernel": kernel}, main[2]), kernel
    for kernel in ("STANDARD", "SOFT", "UB", "FC26", "H31s", "Hr38", ["Hr38", "3"], "J40s"):
        assert matches(ich, {**main[1], "ConvolutionKernel": kernel}, main[2]), kernel


def test_ct_chest_never_goes_to_ich(studies, specs):
    ich = by_id(specs, "stroke_ich")
    series, _ = studies["ct-chest"]
    for _, header, n, _ in series:
        assert not matches(ich, header, n)
        # not even as a soft-kernel 5 mm series
        assert not matches(ich, {**header, "ConvolutionKernel": "Br40", "SliceThickness": "5.0"}, n)


def test_head_ct_with_contrast_goes_to_lvo_not_ich(studies, specs):
    series, role_of = studies["ct-head"]
    _, header, n, _ = next(s for s in series if role_of[s[3]] == "main")
    cta_like = {**header, "ContrastBolusAgent": "IOHEXOL 350", "SliceThickness": "0.625"}
    assert route(specs, cta_like, 200) == ["stroke_lvo"]
    # contrast said only in the description still keeps it from ICH
    assert "stroke_ich" not in route(specs, {**header, "StudyDescription": "CT HEAD WITH CONTRAST"}, n)
    assert "stroke_ich" in route(specs, {**header, "StudyDescription": "CT HEAD WITHOUT CONTRAST"}, n)


@pytest.mark.parametrize(("age", "routed"), [
    ("045Y", False), ("019Y", False), ("018Y", True), ("030M", True), ("040W", True), ("200D", True),
    ("  012y ", True), ("abc", False), (None, False),
])
def test_bone_age_only_for_children(age, routed, studies, specs):
    series, role_of = studies["xr-hand"]
    _, header, n, _ = next(s for s in series if role_of[s[3]] == "main")
    header = {k: v for k, v in header.items() if k != "PatientAge"}
    if age is not None:
        header["PatientAge"] = age
    assert (route(specs, header, n) == ["bone_age"]) is routed


@pytest.mark.parametrize("name", ["RG1_UNCR.dcm", "RG3_UNCR.dcm", "CT_small.dcm", "MR_small.dcm"])
def test_pydicom_data_files_match_no_pipeline(name, specs):
    """A CR chest, a CR of the tibia, a contrast CT of unknown body part, an MR: "no AI applicable"."""
    header = dicom_header(name)
    assert route(specs, header, 1) == []
    assert route(specs, header, 200) == []  # not merely for want of slices


@pytest.mark.parametrize("kind, ratio, limit", [("ct-head", "338.7", 10), ("cta-head", "40", 10), ("ct-chest", "20", 15)])
def test_lossy_series_past_diagnostic_quality_is_not_read_and_the_miss_is_named(kind, ratio, limit, studies, specs):
    """A main series forwarded lossy-compressed past the pipeline's limit matches nothing, and
    `near_misses` names the pipeline and the rule; at a diagnostic ratio it still routes."""
    series, role_of = studies[kind]
    _, _, pipeline, _ = STUDIES[kind]
    _, header, n, _ = next(s for s in series if role_of[s[3]] == "main")
    lossy = {**header, "LossyImageCompression": "01", "LossyImageCompressionRatio": ratio}
    assert route(specs, lossy, n) == []
    assert near_misses(specs, lossy, n) == [f"{pipeline}: LossyImageCompressionRatio '{ratio}' is not <= {limit}"]
    assert route(specs, {**lossy, "LossyImageCompressionRatio": "8"}, n) == [pipeline]
    assert near_misses(specs, header, n) == []  # nothing to say of a series with no pipeline missed by one rule


def test_route_says_no_ai_applicable(studies, specs):
    assert route(specs, dicom_header("RG1_UNCR.dcm"), 1) == []  # a chest radiograph: no pipeline
    series, role_of = studies["ct-head"]
    _, header, n, _ = next(s for s in series if role_of[s[3]] == "main")
    assert route(specs, header, n) == ["stroke_ich"]


# --------------------------------------------------------------------------- operators


HEADER = {
    "Modality": "CT",
    "BodyPartExamined": "head ",
    "StudyDescription": "CT Head w/o Contrast",
    "ImageType": ["ORIGINAL", "PRIMARY", "AXIAL"],
    "SliceThickness": "5.0",
    "SeriesNumber": 2,
    "PatientAge": "067Y",
}

OPERATOR_CASES = [
    # (rule, header changes, expected)
    ({"keyword": "BodyPartExamined", "equals": "HEAD"}, {}, True),  # case and blanks forgiven
    ({"keyword": "BodyPartExamined", "equals": "CHEST"}, {}, False),
    ({"keyword": "SeriesNumber", "equals": "2"}, {}, True),  # number written as text or not
    ({"keyword": "SliceThickness", "equals": 5}, {}, True),
    ({"keyword": "SliceThickness", "equals": 3}, {}, False),
    ({"keyword": "Modality", "not_equals": "MR"}, {}, True),
    ({"keyword": "Modality", "not_equals": "ct"}, {}, False),
    ({"keyword": "StudyDescription", "regex": r"\bhead\b"}, {}, True),
    ({"keyword": "StudyDescription", "regex": r"^CTA"}, {}, False),
    ({"keyword": "StudyDescription", "regex": "HEAD"}, {"StudyDescription": None}, False),
    ({"keyword": "StudyDescription", "not_regex": "ANGIO"}, {}, True),
    ({"keyword": "StudyDescription", "not_regex": "contrast"}, {}, False),
    ({"keyword": "StudyDescription", "not_regex": "ANGIO"}, {"StudyDescription": None}, True),
    ({"keyword": "SliceThickness", "range": {"min": 2.5, "max": 5}}, {}, True),
    ({"keyword": "SliceThickness", "range": {"max": 2.5}}, {}, False),
    ({"keyword": "SliceThickness", "range": {"lt": 5}}, {}, False),  # exclusive bound
    ({"keyword": "SliceThickness", "range": {"max": 2.5}}, {"SliceThickness": 1.25}, True),
    ({"keyword": "SliceThickness", "range": {"max": 2.5}}, {"SliceThickness": "thin"}, False),
    ({"keyword": "SliceThickness", "range": {"max": 2.5}}, {"SliceThickness": None}, False),
    ({"keyword": "SliceThickness", "range": {"max": 2.5}, "if_missing": "match"}, {"SliceThickness": None}, True),
    ({"keyword": "BodyPartExamined", "in": ["BRAIN", "HEAD"]}, {}, True),
    ({"keyword": "BodyPartExamined", "in": ["CHEST", "THORAX"]}, {}, False),
    ({"keyword": "ImageType", "in": ["AXIAL"]}, {}, True),  # any value of a multi-valued element
    ({"keyword": "ImageType", "not_in": ["LOCALIZER", "MIP"]}, {}, True),
    ({"keyword": "ImageType", "not_in": ["LOCALIZER", "MIP"]}, {"ImageType": r"ORIGINAL\PRIMARY\LOCALIZER"}, False),
    ({"keyword": "ImageType", "not_in": ["MIP"]}, {"ImageType": ["DERIVED ", "SECONDARY", "mip"]}, False),
    ({"keyword": "ContrastBolusAgent", "present": False}, {}, True),
    ({"keyword": "ContrastBolusAgent", "present": False}, {"ContrastBolusAgent": "IOHEXOL 350"}, False),
    ({"keyword": "ContrastBolusAgent", "present": True}, {"ContrastBolusAgent": "IOHEXOL 350"}, True),
    ({"keyword": "ContrastBolusAgent", "present": True}, {"ContrastBolusAgent": " "}, False),  # blank is absent
    ({"keyword": "PatientAge", "range": {"min": 18}}, {}, True),
    ({"keyword": "PatientAge", "range": {"min": 18}}, {"PatientAge": "010Y"}, False),
    ({"keyword": "PatientAge", "range": {"lt": 2}}, {"PatientAge": "018M"}, True),
    ({"keyword": "PatientAge", "range": {"lt": 1}}, {"PatientAge": "018M"}, False),
    ({"keyword": "PatientAge", "range": {"max": 0.1}}, {"PatientAge": "003W"}, True),
    ({"keyword": "PatientAge", "range": {"min": 18}}, {"PatientAge": None}, False),
    ({"any": [{"keyword": "BodyPartExamined", "equals": "BRAIN"},
              {"keyword": "StudyDescription", "regex": "HEAD"}]}, {}, True),
    ({"any": [{"keyword": "BodyPartExamined", "equals": "BRAIN"},
              {"keyword": "StudyDescription", "regex": "NECK"}]}, {}, False),
]


@pytest.mark.parametrize(("rule", "changes", "expected"), OPERATOR_CASES)
def test_select_operator(rule, changes, expected):
    header = {k: v for k, v in {**HEADER, **changes}.items() if v is not None}
    spec = spec_with(rule)
    assert matches(spec, header, 30) is expected
    assert (why_not(spec, header, 30) == []) is expected


def test_min_and_max_slices_count_frames():
    spec = spec_with({"keyword": "Modality", "equals": "CT"}, min_slices=12, max_slices=600)
    assert matches(spec, HEADER, 12)
    assert not matches(spec, HEADER, 11)
    assert "11 slices, fewer than 12" in why_not(spec, HEADER, 11)
    assert matches(spec, {**HEADER, "NumberOfFrames": "300"}, 1)  # one enhanced multi-frame instance
    assert not matches(spec, {**HEADER, "NumberOfFrames": 301}, 2)


def test_disabled_pipeline_routes_nothing():
    spec = parse_pipeline({**BASE, "enabled": False}, "probe.yaml")
    assert route([spec], HEADER, 30) == []
    assert why_not(spec, HEADER, 30) == ["pipeline disabled"]


@pytest.mark.parametrize(("text", "years"), [
    ("067Y", 67.0), ("018M", 1.5), ("002W", 14 / 365.25), ("010D", 10 / 365.25), ("45", 45.0), (12, 12.0),
    ("", None), ("Y", None), ("-5Y", None), ("1000Y", None), (True, None), ([], None),
])
def test_parse_age(text, years):
    got = parse_age(text)
    assert got == pytest.approx(years) if years is not None else got is None


def test_prefer_ranks_tests_then_sort_keys_missing_last():
    spec = parse_pipeline({**BASE, "prefer": [
        {"keyword": "ImageType", "not_in": ["DERIVED"]},
        {"by": "SliceThickness", "order": "ascending"},
        {"by": "slices", "order": "descending"},
    ]}, "probe.yaml")
    ct = {"Modality": "CT"}
    cands = [
        ("derived-thin", {**ct, "ImageType": ["DERIVED", "SECONDARY"], "SliceThickness": 0.5}, 300),
        ("no-thickness", {**ct, "ImageType": ["ORIGINAL"]}, 400),
        ("thick", {**ct, "ImageType": ["ORIGINAL"], "SliceThickness": "5"}, 30),
        ("thin-few", {**ct, "ImageType": ["ORIGINAL"], "SliceThickness": "1.0"}, 100),
        ("thin-many", {**ct, "ImageType": ["ORIGINAL"], "SliceThickness": "1.0"}, 200),
        ("not-ct", {"Modality": "MR", "SliceThickness": "0.1"}, 500),
    ]
    assert rank_series(spec, cands) == ["thin-many", "thin-few", "thick", "no-thickness", "derived-thin"]
    assert best_series(spec, cands) == "thin-many"
    assert best_series(spec, cands[-1:]) is None


# --------------------------------------------------------------------------- priority


@pytest.mark.parametrize(("pipeline", "result", "expected"), [
    ("stroke_ich", {"positive": True, "score": 0.9}, Priority.STAT),
    ("stroke_ich", {"positive": False, "score": 0.1}, Priority.ROUTINE),
    ("stroke_lvo", {"positive": True}, Priority.STAT),
    ("stroke_lvo", {}, Priority.ROUTINE),
    ("lung_nodule", {"lung_rads": "4B"}, Priority.URGENT),
    ("lung_nodule", {"lung_rads": "4x"}, Priority.URGENT),
    ("lung_nodule", {"lung_rads": "4A"}, Priority.ROUTINE),
    ("lung_nodule", {"nodules": []}, Priority.ROUTINE),
    ("bone_age", {"bone_age_z": 2.3}, Priority.URGENT),
    ("bone_age", {"bone_age_z": -2.6}, Priority.URGENT),
    ("bone_age", {"bone_age_z": 2.0}, Priority.ROUTINE),
    ("bone_age", {"bone_age_z": -0.4}, Priority.ROUTINE),
])
def test_priority_rules_of_reference_pipelines(pipeline, result, expected, specs):
    priority, reason = priority_for(by_id(specs, pipeline), result)
    assert priority is expected
    assert (reason is None) is (expected is Priority.ROUTINE)


def test_priority_fields_may_be_nested_and_first_rule_wins():
    spec = parse_pipeline({**BASE, "priority": {"default": "ROUTINE", "rules": [
        {"priority": "STAT", "reason": "big", "when": [{"field": "largest.volume_ml", "range": {"min": 30}}]},
        {"priority": "URGENT", "when": [{"field": "positive", "equals": True},
                                        {"field": "largest.volume_ml", "range": {"min": 1}}]},
    ]}}, "probe.yaml")
    assert priority_for(spec, {"positive": True, "largest": {"volume_ml": 45}}) == (Priority.STAT, "big")
    assert priority_for(spec, {"positive": True, "largest": {"volume_ml": 5}}) == (Priority.URGENT, None)
    assert priority_for(spec, {"positive": False, "largest": {"volume_ml": 5}}) == (Priority.ROUTINE, None)


# --------------------------------------------------------------------------- bad files


def write_folder(tmp_path: Path, **docs: Any) -> Path:
    folder = tmp_path / "pipelines"
    folder.mkdir()
    for name, doc in docs.items():
        text = doc if isinstance(doc, str) else yaml.safe_dump(doc, sort_keys=False)
        (folder / f"{name}.yaml").write_text(text)
    return folder


def good() -> dict[str, Any]:
    return yaml.safe_load((PIPELINES / "stroke_ich.yaml").read_text())


def edited(path: tuple, value: Any) -> dict[str, Any]:
    doc = good()
    target = doc
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    return doc


BAD = [
    # (document, key the error must name, words the problem must hold)
    ({**good(), "colour": "red"}, "colour", "unknown key"),
    (edited(("select", "rules", 0), {"keyword": "Modality", "equal": "CT"}), "select.rules[0].equal", "unknown key"),
    (edited(("select", "min_slices"), "many"), "select.min_slices", "integer"),
    (edited(("version",), 1.0), "version", "string"),
    (edited(("task",), "pneumothorax"), "task", "ich"),
    (edited(("select", "rules", 0), {"keyword": "Modality", "regex": "(CT"}), "select.rules[0].regex",
     "bad regular expression"),
    (edited(("select", "rules", 0), {"keyword": "Modalty", "equals": "CT"}), "select.rules[0].keyword",
     "not a DICOM keyword"),
    (edited(("select", "rules", 0), {"keyword": "Modality", "equals": "CT", "regex": "CT"}), "select.rules[0]",
     "exactly one operator"),
    (edited(("select", "rules", 2, "any", 0), {"keyword": "BodyPartExamined", "in": []}),
     "select.rules[2].any[0].in", "at least 1"),
    (edited(("select", "rules", 0), {"keyword": "SliceThickness", "range": {"min": 5, "max": 1}}),
     "select.rules[0].range", "empty range"),
    (edited(("preprocess", 0), {"op": "sharpen_more", "params": {}}), "preprocess[0].op", "unknown op"),
    (edited(("preprocess", 0), {"op": "os.system", "params": {}}), "preprocess[0].op", "not an import path"),
    (edited(("postprocess", 0), {"op": "ich_study_result", "module": "evil"}), "postprocess[0].module",
     "unknown key"),
    (edited(("model",), "../../etc"), "model", "pattern"),
    (edited(("prefer", 2), {"by": "SliceThickness", "order": "up"}), "prefer[2].order", "ascending"),
    (edited(("priority", "rules", 0, "priority"), "PENDING_AI"), "priority.rules[0].priority", "STAT"),
    (edited(("thresholds",), {"any": "high"}), "thresholds.any", "number"),
    ({k: v for k, v in good().items() if k != "select"}, "select", "required key missing"),
]


@pytest.mark.parametrize(("doc", "key", "problem"), BAD, ids=[b[1] for b in BAD])
def test_bad_pipeline_file_names_file_key_and_problem(doc, key, problem, tmp_path):
    folder = write_folder(tmp_path, stroke_ich=doc)
    with pytest.raises(PipelineConfigError) as info:
        load_pipelines(folder, ops=OPS)
    err = info.value
    assert err.file.endswith("stroke_ich.yaml")
    assert key in [k for k, _ in err.errors], err.errors
    assert any(problem.lower() in p.lower() for k, p in err.errors if k == key), err.errors
    assert "stroke_ich.yaml" in str(err) and key in str(err)


def test_unedited_document_loads(tmp_path):
    assert [s.id for s in load_pipelines(write_folder(tmp_path, stroke_ich=good()))] == ["stroke_ich"]


def test_duplicate_pipeline_id_names_the_second_file(tmp_path):
    folder = write_folder(tmp_path, a_first=good(), b_second=good())
    with pytest.raises(PipelineConfigError) as info:
        load_pipelines(folder)
    assert info.value.file.endswith("b_second.yaml") and info.value.key == "id"
    assert "a_first.yaml" in info.value.problem


def test_key_given_twice_and_broken_yaml_are_refused(tmp_path):
    text = (PIPELINES / "stroke_ich.yaml").read_text() + "\nmodel: other-model\n"
    with pytest.raises(PipelineConfigError, match="given twice"):
        load_pipelines(write_folder(tmp_path, stroke_ich=text))
    shutil.rmtree(tmp_path / "pipelines")
    with pytest.raises(PipelineConfigError, match=r"stroke_ich\.yaml.*not valid YAML.*line") as info:
        load_pipelines(write_folder(tmp_path, stroke_ich="id: [unclosed\n"))
    assert info.value.file.endswith("stroke_ich.yaml")
    shutil.rmtree(tmp_path / "pipelines")
    with pytest.raises(PipelineConfigError, match="mapping"):
        load_pipelines(write_folder(tmp_path, stroke_ich="- just a list\n"))


def test_ops_models_and_alert_policies_are_checked_against_what_is_given(tmp_path):
    folder = write_folder(tmp_path, stroke_ich=good())
    ops = {"ct_hu_volume", "ich_windows", "ich_study_result", "ich_volume_ml"}
    assert load_pipelines(folder, ops=ops, models={"ich-densenet2d"}, alert_policies={"stroke"})
    with pytest.raises(PipelineConfigError, match="unknown op 'ich_volume_ml'") as info:
        load_pipelines(folder, ops=ops - {"ich_volume_ml"})
    assert info.value.key == "postprocess[1].op"
    with pytest.raises(PipelineConfigError, match="no model 'ich-densenet2d'") as info:
        load_pipelines(folder, models={"lvo-densenet2d"})
    assert info.value.key == "model"
    with pytest.raises(PipelineConfigError, match="unknown alert policy 'stroke'") as info:
        load_pipelines(folder, alert_policies={"oncology"})
    assert info.value.key == "alert"


def test_missing_folder_is_an_error_and_an_empty_one_routes_nothing(tmp_path):
    with pytest.raises(PipelineConfigError, match="not found"):
        load_pipelines(tmp_path / "nowhere")
    assert load_pipelines(tmp_path) == []
    assert route(load_pipelines(tmp_path), HEADER, 30) == []
