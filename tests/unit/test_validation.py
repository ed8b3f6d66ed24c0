"""`radtriage validate`: metrics against hand-computed cases, subgroups, the two files, the command."""

from __future__ import annotations

import base64
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from radtriage.cli import main
from radtriage.inference.card import ModelCard, TensorSpec, file_sha256, write_card
from radtriage.validation import run as vrun
from radtriage.validation.evaluate import (
    attribute_accuracy, evaluate, nodule_metrics, roc_curve, split, subgroups, task_metrics,
)
from radtriage.validation.report import render, write_report

ROUNDS = 200

# --------------------------------------------------------------------------- hand-made binary cases
# y      1    1    1    0    0    0    0
# score .9   .8   .3   .6   .2   .1   .4     threshold .5
# TP 2 (.9 .8), FN 1 (.3), FP 1 (.6), TN 3 -> sens 2/3, spec 3/4, PPV 2/3, NPV 3/4
# AUC: .9 and .8 beat all 4 negatives (8), .3 beats .2 and .1 (2): 10 of 12 pairs
Y = [1, 1, 1, 0, 0, 0, 0]
S = [0.9, 0.8, 0.3, 0.6, 0.2, 0.1, 0.4]
SEX = ["M", "F", "F", "M", "M", "F", "F"]
GROUPS = [{"sex": s, "scanner": "A"} for s in SEX]
GROUPS[6] = {"sex": "F"}  # no scanner: "unknown"


def ich_cases():
    subtypes = [["subdural"], ["epidural", "subarachnoid"], ["subdural"], [], [], [], []]
    predicted = ["subdural", "intraparenchymal", "subdural", "subdural", "epidural", "subdural", "subdural"]
    labels = [{"positive": bool(y), "subtypes": st, "slice_labels": {}} for y, st in zip(Y, subtypes)]
    preds = [{"score": s, "positive": s >= 0.5, "subtype": p} for s, p in zip(S, predicted)]
    return labels, preds


def lvo_cases():
    sides = ["left", "right", "left", None, None, None, None]
    segments = ["M1", "ICA", "M2", None, None, None, None]
    labels = [{"positive": bool(y), "side": sd, "segment": sg} for y, sd, sg in zip(Y, sides, segments)]
    pred_sides = ["left", "left", "right", "left", "right", "left", "left"]
    pred_segments = ["M1", "ICA", "M1", "M1", "M1", "M1", "M1"]
    preds = [{"score": s, "positive": s >= 0.5, "side": a, "segment": b}
             for s, a, b in zip(S, pred_sides, pred_segments)]
    return labels, preds


def test_binary_metrics_match_hand_computed_values():
    labels, preds = ich_cases()
    m = task_metrics("ich", labels, preds, 0.5, ROUNDS)
    assert m["n"] == 7 and m["positives"] == 3
    assert m["auc"]["value"] == pytest.approx(10 / 12)
    assert m["sensitivity"]["value"] == pytest.approx(2 / 3)
    assert m["specificity"]["value"] == pytest.approx(3 / 4)
    assert m["ppv"]["value"] == pytest.approx(2 / 3)
    assert m["npv"]["value"] == pytest.approx(3 / 4)
    assert m["counts"] == {"tp": 2, "fp": 1, "tn": 3, "fn": 1}
    for k in ("auc", "sensitivity", "specificity", "ppv", "npv"):
        lo, hi = m[k]["ci95"]
        assert lo <= m[k]["value"] <= hi and hi - lo > 0  # seven cases: a wide interval
    # subtype: true positives 0 (subdural: right) and 1 (intraparenchymal, labelled epidural+SAH: wrong);
    # case 2 is a false negative and does not count, though its subtype is right
    acc = m["subtype_accuracy"]
    assert (acc["n"], acc["correct"]) == (2, 1) and acc["value"] == pytest.approx(0.5)


def test_binary_threshold_comes_from_the_caller():
    labels, preds = ich_cases()
    m = task_metrics("ich", labels, preds, 0.25, ROUNDS)  # now .3 is a TP and .4, .6 FPs
    assert m["counts"] == {"tp": 3, "fp": 2, "tn": 2, "fn": 0}
    assert m["sensitivity"]["value"] == 1.0 and m["specificity"]["value"] == pytest.approx(0.5)
    assert m["auc"]["value"] == pytest.approx(10 / 12)  # AUC does not depend on the threshold


def test_lvo_side_and_segment_accuracy_on_true_positives():
    labels, preds = lvo_cases()
    m = task_metrics("lvo", labels, preds, 0.5, ROUNDS)
    assert m["sensitivity"]["value"] == pytest.approx(2 / 3)
    assert (m["side_accuracy"]["n"], m["side_accuracy"]["correct"]) == (2, 1)
    assert m["side_accuracy"]["value"] == pytest.approx(0.5)
    assert m["segment_accuracy"]["value"] == 1.0  # the false negative's wrong segment (M2 vs M1) is not counted
    assert "subtype_accuracy" not in m


def test_roc_curve_points():
    roc = roc_curve([1, 0, 1, 0], [0.9, 0.7, 0.4, 0.1])
    assert roc["fpr"] == [0.0, 0.0, 0.5, 0.5, 1.0]
    assert roc["tpr"] == [0.0, 0.5, 0.5, 1.0, 1.0]
    assert math.isinf(roc["thresholds"][0])


def test_attribute_accuracy_accepts_any_of_several_and_skips_unlabelled():
    a = attribute_accuracy([["x", "y"], "z", None, []], ["y", "x", "x", "x"], rounds=50)
    assert (a["n"], a["correct"]) == (2, 1)


# --------------------------------------------------------------------------- bone age
# true 100 120 60 150; predicted 110 115 60 130: differences +10 -5 0 -20
# MAE 35/4 = 8.75; RMSE sqrt((100+25+0+400)/4) = sqrt(131.25); bias -3.75;
# SD (ddof 1): deviations 13.75 -1.25 3.75 -16.25 -> 468.75/3 = 156.25 -> 12.5; limits -3.75 -+ 24.5


def bone_age_cases():
    labels = [{"bone_age_months": t, "sex": s, "chronological_age_months": None}
              for t, s in zip([100, 120, 60, 150], "MFMF")]
    preds = [{"bone_age_months": p} for p in [110, 115, 60, 130]]
    return labels, preds


def test_bone_age_metrics_match_hand_computed_values():
    labels, preds = bone_age_cases()
    m = task_metrics("bone_age", labels, preds, None, ROUNDS)
    assert m["mae"]["value"] == pytest.approx(8.75)
    assert m["rmse"]["value"] == pytest.approx(math.sqrt(131.25))
    assert m["bland_altman"]["bias"] == pytest.approx(-3.75)
    assert m["bland_altman"]["lower"] == pytest.approx(-28.25)
    assert m["bland_altman"]["upper"] == pytest.approx(20.75)
    lo, hi = m["mae"]["ci95"]
    assert 0 <= lo <= 8.75 <= hi <= 20


# --------------------------------------------------------------------------- nodules
# Scan A: N1 (0,0,0) d 10, N2 (50,0,0) d 6, S (100,0,0) d 3 (< 4 mm: not counted).
#   candidates .9 and .5 hit N1 (counted once: its best .9); .8 hits only S (neither TP nor FP);
#   .7 far away (FP); .3 hits N2 (2 mm from its centre, radius 3).
# Scan B: no nodules; .6 and .2 are FPs.
# Two counted nodules, two scans. Operating points (threshold: sensitivity, FP/scan):
#   .9: 1/2, 0   .7: 1/2, 0.5   .6: 1/2, 1   .3: 1, 1   .2: 1, 1.5
# Sensitivity at 1/8 1/4 1/2 FP/scan: 1/2; at 1 2 4 8: 1 -> CPM (3 * 0.5 + 4 * 1) / 7 = 5.5 / 7
# At threshold .5: N1 found, N2 not; FPs .7 and .6 -> sensitivity 1/2, 1 FP per scan.


def nodule_cases():
    truth_a = [{"centre_mm": [0, 0, 0], "diameter_mm": 10.0, "type": "solid"},
               {"centre_mm": [50, 0, 0], "diameter_mm": 6.0, "type": "solid"},
               {"centre_mm": [100, 0, 0], "diameter_mm": 3.0, "type": "solid"}]

    def cand(c, s):
        return {"centre_mm": c, "diameter_mm": 5.0, "score": s}

    pred_a = [cand([1, 1, 0], 0.9), cand([0, 2, 0], 0.5), cand([100, 0.5, 0], 0.8), cand([200, 0, 0], 0.7),
              cand([52, 0, 0], 0.3)]
    pred_b = [cand([0, 0, 0], 0.6), cand([-80, 10, 5], 0.2)]
    return [{"nodules": truth_a}, {"nodules": []}], [{"nodules": pred_a}, {"nodules": pred_b}]


def test_nodule_froc_and_cpm_match_hand_computed_values():
    labels, preds = nodule_cases()
    m = nodule_metrics(labels, preds, 0.5, ROUNDS)
    assert (m["n_scans"], m["n_nodules"], m["n_false_positives"]) == (2, 2, 3)
    assert m["cpm"] == pytest.approx(5.5 / 7)
    assert [m["sensitivity"][k] for k in ("0.125", "0.25", "0.5", "1", "2", "4", "8")] == pytest.approx(
        [0.5, 0.5, 0.5, 1, 1, 1, 1])
    assert m["sensitivity_at_threshold"]["value"] == pytest.approx(0.5)
    assert m["fp_per_scan_at_threshold"]["value"] == pytest.approx(1.0)
    assert m["min_diameter_mm"] == 4.0
    # a threshold between the FP scores moves the operating point along the curve
    assert nodule_metrics(labels, preds, 0.65, 0)["fp_per_scan_at_threshold"]["value"] == pytest.approx(0.5)
    assert "sensitivity_at_threshold" not in nodule_metrics(labels, preds, None, 0)


# --------------------------------------------------------------------------- subgroups


def test_split_orders_groups_and_collects_missing_keys_as_unknown():
    groups = [{"age_band": "10-14"}, {"age_band": "5-9"}, {"age_band": "80+"}, {}, {"age_band": "18-39"}]
    s = split(groups)
    assert list(s) == ["age_band"]  # no case has sex, scanner or slice thickness
    assert list(s["age_band"]) == ["5-9", "10-14", "18-39", "80+", "unknown"]
    assert s["age_band"]["unknown"] == [3]
    th = split([{"slice_thickness": "5 mm"}, {"slice_thickness": "1.25 mm"}])["slice_thickness"]
    assert list(th) == ["1.25 mm", "5 mm"]


def test_subgroup_metrics_are_the_metrics_of_the_subset():
    labels, preds = ich_cases()
    sg = subgroups("ich", labels, preds, GROUPS, 0.5, ROUNDS)
    assert set(sg) == {"sex", "scanner"}
    # M: cases 0 3 4 -> y 1 0 0, scores .9 .6 .2: sens 1, spec 1/2, AUC 1
    m = sg["sex"]["M"]
    assert (m["n"], m["positives"]) == (3, 1)
    assert m["sensitivity"]["value"] == 1.0 and m["specificity"]["value"] == 0.5 and m["auc"]["value"] == 1.0
    # F: cases 1 2 5 6 -> y 1 1 0 0, scores .8 .3 .1 .4: sens 1/2, spec 1, PPV 1, NPV 2/3, AUC 3/4
    f = sg["sex"]["F"]
    assert f["sensitivity"]["value"] == 0.5 and f["specificity"]["value"] == 1.0
    assert f["ppv"]["value"] == 1.0 and f["npv"]["value"] == pytest.approx(2 / 3)
    assert f["auc"]["value"] == pytest.approx(0.75)
    assert sg["scanner"]["A"]["n"] == 6 and sg["scanner"]["unknown"]["n"] == 1
    # one case, one class: AUC undefined, not a crash
    assert math.isnan(sg["scanner"]["unknown"]["auc"]["value"])


def test_evaluate_checks_lengths_and_emptiness():
    labels, preds = bone_age_cases()
    with pytest.raises(ValueError):
        evaluate("bone_age", labels, preds[:-1])
    with pytest.raises(ValueError):
        evaluate("bone_age", [], [])
    with pytest.raises(ValueError):
        evaluate("ich", *ich_cases(), threshold=None)


# --------------------------------------------------------------------------- the two files


def fake_card(task: str, thresholds: dict[str, float] | None = None) -> ModelCard:
    return ModelCard(
        id=f"test-{task}", version="9.9.9", task=task, sha256="0" * 64, size_bytes=1, architecture="hand-made",
        inputs=[TensorSpec(name="x", shape=["batch", 1], description="x")],
        outputs=[TensorSpec(name="y", shape=["batch", 1], description="y")],
        preprocessing={}, thresholds=thresholds or {}, training_data={"synthetic": True},
        not_for=["clinical use"],
    )


CASES = {"ich": ich_cases, "lvo": lvo_cases, "nodule": nodule_cases, "bone_age": bone_age_cases}


def document(task: str, threshold: float | None):
    labels, preds = CASES[task]()
    groups = (GROUPS if len(labels) == 7 else [{"sex": s} for s in "MFMF"[: len(labels)]])
    results = [vrun.CaseResult(id=f"case-{i}", label=lab, groups=g, prediction=p, seconds=0.01 * (i + 1))
               for i, (lab, p, g) in enumerate(zip(labels, preds, groups))]
    results.append(vrun.CaseResult(id="broken", label=labels[0], groups={}, error="VolumeError: no pixels"))
    ev = evaluate(task, labels, preds, groups, threshold, ROUNDS)
    return vrun.build_document(fake_card(task), Path("models/x"), Path("/data/set"), None, threshold, ROUNDS,
                               results, ev)


def figures_of(html: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)]


@pytest.mark.parametrize("task,threshold,n_figures,words", [
    ("ich", 0.5, 2, ["ROC curve", "Calibration curve", "Subtype accuracy", "AUC", "Site operating point"]),
    ("lvo", 0.5, 2, ["ROC curve", "Calibration curve", "Side accuracy", "Segment accuracy"]),
    ("nodule", 0.5, 1, ["FROC curve", "CPM", "Sensitivity at 0.125 FP/scan"]),
    ("bone_age", None, 2, ["Bland-Altman plot", "Predicted vs true", "MAE (months)"]),
])
def test_report_and_metrics_json_are_written(task, threshold, n_figures, words, tmp_path):
    doc = document(task, threshold)
    text = json.dumps(doc, allow_nan=False)  # strict JSON: NaN written as null
    assert json.loads(text)["n"] == len(CASES[task]()[0]) and doc["n_failed"] == 1
    assert doc["failed"] == [{"id": "broken", "error": "VolumeError: no pixels"}]
    assert doc["model"]["id"] == f"test-{task}" and doc["threshold"] == threshold
    assert all(set(c) >= {"id", "label", "prediction", "groups"} for c in doc["cases"])
    path = write_report(tmp_path / "report.html", doc)
    html = path.read_text()
    figs = figures_of(html)
    assert len(figs) == n_figures and all(f.startswith(b"\x89PNG\r\n\x1a\n") and len(f) > 5000 for f in figs)
    for w in words + ["not for clinical use", "test-" + task, "9.9.9", "/data/set", 'id="subgroup-sex"', "broken"]:
        assert w in html, w
    assert "<script" not in html and "http://" not in html and "https://" not in html  # self-contained


def test_report_escapes_text():
    doc = document("bone_age", None)
    doc["dataset"]["path"] = "/data/<b>set</b>"
    html = render(doc)
    assert "&lt;b&gt;set" in html and "<b>set" not in html


def test_case_summaries_drop_per_slice_lists():
    s = vrun.prediction_summary("ich", {"score": np.float32(0.25), "positive": np.bool_(False), "subtype": "subdural",
                                        "slice_probs": [0.1] * 300})
    assert s == {"score": 0.25, "positive": False, "subtype": "subdural"}
    assert vrun.jsonable({"a": float("nan"), "b": np.int64(3), "c": (1.5, np.inf)}) == {
        "a": None, "b": 3, "c": [1.5, None]}


def test_operating_threshold_from_card():
    assert vrun.operating_threshold(fake_card("ich", {"any": 0.31})) == 0.31
    assert vrun.operating_threshold(fake_card("ich", {"any": 0.31}), 0.7) == 0.7
    assert vrun.operating_threshold(fake_card("lvo", {"occlusion": 0.4})) == 0.4
    assert vrun.operating_threshold(fake_card("bone_age")) is None


# --------------------------------------------------------------------------- the command


def identity_model(folder: Path, task: str = "bone_age") -> Path:
    """A loadable one-node ONNX model with a card (no training)."""
    import onnx
    from onnx import TensorProto, helper

    folder.mkdir(parents=True)
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "id",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)  # an IR this ORT reads
    onnx.save(model, folder / "model.onnx")
    card = fake_card(task).model_copy(update={"id": folder.name, "sha256": file_sha256(folder / "model.onnx"),
                                              "size_bytes": (folder / "model.onnx").stat().st_size})
    write_card(folder, card)
    return folder


def one_line_error(capsys, rc: int) -> str:
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


def test_command_errors_are_one_line(tmp_path, capsys):
    models = tmp_path / "models"
    identity_model(models / "tiny")
    (tmp_path / "empty").mkdir()
    heads = tmp_path / "heads"  # a synthetic dataset of another task's studies
    (heads / "ct-head-0").mkdir(parents=True)
    (heads / "ct-head-0" / "truth.json").write_text(json.dumps({"kind": "ct-head", "main_series_number": 2}))

    def validate(*args: str) -> str:
        return one_line_error(capsys, main(["validate", "--models-dir", str(models), *args]))

    err = validate("--model", "nope", "--dataset", str(heads))
    assert "unknown model 'nope'" in err and "tiny" in err
    assert "no bone_age cases" in validate("--model", "tiny", "--dataset", str(heads))
    assert "no known dataset layout" in validate("--model", "tiny", "--dataset", str(tmp_path / "empty"))
    assert "not found" in validate("--model", "tiny", "--dataset", str(tmp_path / "missing"))
    assert "luna16" in validate("--model", "tiny", "--dataset", str(heads), "--layout", "luna16")
    assert "unknown dataset layout" in validate("--model", "tiny", "--dataset", str(heads), "--layout", "dicomdir")

    with (models / "tiny" / "model.onnx").open("ab") as f:
        f.write(b"\0")
    assert "sha256" in validate("--model", str(models / "tiny"), "--dataset", str(heads))
    assert list(tmp_path.rglob("metrics.json")) == [] and list(tmp_path.rglob("validation-*")) == []


def test_a_case_that_fails_is_listed_and_the_rest_measured(tmp_path, capsys, monkeypatch):
    import pydicom

    models = tmp_path / "models"
    identity_model(models / "tiny")
    data = tmp_path / "hands"
    assert main(["synth", "xr-hand", "--n", "3", "--out", str(data)]) == 0
    ages = {p.parent.name: json.loads(p.read_text())["bone_age_months"] for p in data.glob("*/truth.json")}
    uid_of = {name: pydicom.dcmread(next((data / name).glob("*.dcm")), stop_before_pixels=True).StudyInstanceUID
              for name in ages}
    age_of_uid = {uid_of[name]: age for name, age in ages.items()}
    broken = sorted(ages)[1]

    def predict(model, volume):  # hand-made: the truth + 6 months, except one case that fails
        uid = volume.meta["StudyInstanceUID"]
        if uid == uid_of[broken]:
            raise ValueError("cannot find the hand")
        return {"bone_age_months": age_of_uid[uid] + 6.0}

    monkeypatch.setattr(vrun, "task_predictor", lambda task: predict)
    rc = main(["validate", "--model", "tiny", "--models-dir", str(models), "--dataset", str(data),
               "--bootstrap", "50", "--out", str(tmp_path / "v")])
    assert rc == 1  # written, but not clean
    doc = json.loads((tmp_path / "v" / "metrics.json").read_text())
    assert doc["n"] == 2 and doc["failed"] == [{"id": broken, "error": "ValueError: cannot find the hand"}]
    assert doc["metrics"]["mae"]["value"] == pytest.approx(6.0)
    assert doc["metrics"]["bland_altman"]["bias"] == pytest.approx(6.0)
    assert broken in (tmp_path / "v" / "report.html").read_text()


@pytest.fixture(scope="module")
def bone_age_model(tmp_path_factory) -> Path:
    from radtriage.training.bone_age import MODEL_ID, train

    out = tmp_path_factory.mktemp("models")
    train(out, smoke=True, log=lambda *_: None)
    return out / MODEL_ID


@pytest.mark.slow
def test_validate_command_end_to_end_on_synthetic_hands(bone_age_model, tmp_path, capsys):
    data = tmp_path / "hands"
    assert main(["synth", "xr-hand", "--n", "3", "--seed", "5", "--out", str(data)]) == 0
    capsys.readouterr()
    rc = main(["validate", "--model", bone_age_model.name, "--models-dir", str(bone_age_model.parent),
               "--dataset", str(data), "--bootstrap", "100"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    folder = data / f"validation-{bone_age_model.name}"
    assert sorted(p.name for p in folder.iterdir()) == ["metrics.json", "report.html"]
    doc = json.loads((folder / "metrics.json").read_text())
    assert doc["task"] == "bone_age" and doc["n"] == 3 and doc["n_failed"] == 0
    assert doc["model"]["id"] == bone_age_model.name and doc["threshold"] is None
    # labels are the generator's truth; metrics agree with the per-case predictions, by hand
    truth = {p.parent.name: json.loads(p.read_text())["bone_age_months"] for p in data.glob("*/truth.json")}
    assert {c["id"]: c["label"]["bone_age_months"] for c in doc["cases"]} == pytest.approx(truth)
    diffs = [c["prediction"]["bone_age_months"] - c["label"]["bone_age_months"] for c in doc["cases"]]
    assert doc["metrics"]["mae"]["value"] == pytest.approx(np.mean(np.abs(diffs)), abs=0.02)
    assert doc["metrics"]["rmse"]["value"] == pytest.approx(np.sqrt(np.mean(np.square(diffs))), abs=0.02)
    assert doc["metrics"]["bland_altman"]["bias"] == pytest.approx(np.mean(diffs), abs=0.02)
    assert "sex" in doc["subgroups"] and "scanner" in doc["subgroups"]
    assert sum(g["n"] for g in doc["subgroups"]["sex"].values()) == 3
    html = (folder / "report.html").read_text()
    assert len(figures_of(html)) == 2 and "not for clinical use" in html
    # --limit and --out
    rc = main(["validate", "--model", str(bone_age_model), "--dataset", str(data), "--limit", "2",
               "--out", str(tmp_path / "v2"), "--bootstrap", "0"])
    assert rc == 0 and json.loads((tmp_path / "v2" / "metrics.json").read_text())["n"] == 2
