"""The op registry: what pipeline files may name, how their parameters and order are checked, and how ops run.

No model file is needed: a stand-in model records what it is given.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import yaml

from radtriage.imaging.volume import Volume
from radtriage.inference import ich
from radtriage.inference.ops import OpContext, Slot
from radtriage.inference.tasks import OPS, REFERENCE_CHAINS, predictor
from radtriage.pipelines import PipelineConfigError, load_pipelines

REPO = Path(__file__).resolve().parents[2]
PIPELINES = REPO / "pipelines"


class FakeModel:
    """Records each call; gives one logit row per input row (the value: ``logit``)."""

    def __init__(self, outputs: int = 6, logit: float = 3.0, card: Any = None) -> None:
        self.input_names, self.output_names = ["slices"], ["logits"]
        self.outputs, self.logit, self.calls = outputs, logit, []
        self.card = card or SimpleNamespace(id="fake", thresholds={}, preprocessing={})

    def run(self, **inputs: np.ndarray) -> dict[str, np.ndarray]:
        (x,) = inputs.values()
        self.calls.append(x.shape)
        return {"logits": np.full((len(x), self.outputs), self.logit, np.float32)}


def head(slices: int = 20, size: int = 64) -> Volume:
    hu = np.full((slices, size, size), 30.0, np.float32)
    hu[:, 20:30, 20:30] = 70.0  # blood density
    return Volume(hu, (5.0, 1.0, 1.0))


def ich_chain(pre: list[tuple[str, dict]] | None = None, post: list[tuple[str, dict]] | None = None):
    return OPS.chain("ich", pre or [("ct_hu_volume", {}), ("ich_windows", {})],
                     post or [("ich_study_result", {}), ("ich_volume_ml", {})])


def reference(name: str) -> dict[str, Any]:
    return yaml.safe_load((PIPELINES / f"{name}.yaml").read_text())


def write(tmp_path: Path, doc: dict[str, Any]) -> Path:
    folder = tmp_path / "pipelines"
    folder.mkdir(exist_ok=True)
    (folder / "stroke_ich.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return folder


# --------------------------------------------------------------------------- the registry and the reference files


def test_registry_holds_every_op_the_reference_pipelines_name_in_their_order():
    specs = load_pipelines(PIPELINES, ops=OPS)
    assert {s.task for s in specs} == set(REFERENCE_CHAINS)
    for s in specs:
        pre, post = [o.op for o in s.preprocess], [o.op for o in s.postprocess]
        assert set(pre + post) <= set(OPS)
        assert (tuple(pre), tuple(post)) == REFERENCE_CHAINS[s.task], s.id  # the predictors run the same chains
        assert all(OPS[n].stage == "preprocess" for n in pre) and all(OPS[n].stage == "postprocess" for n in post)
    assert all(OPS[n].doc for n in OPS)  # each op says what it does


# --------------------------------------------------------------------------- a bad file stops start-up


def edited(section: str, index: int, step: dict[str, Any]) -> dict[str, Any]:
    doc = reference("stroke_ich")
    doc[section][index] = step
    return doc


BAD = [
    # (document, key, words of the problem)
    (edited("preprocess", 1, {"op": "ich_windowz", "params": {}}), "preprocess[1].op", "unknown op 'ich_windowz'"),
    (edited("preprocess", 1, {"op": "ich_windows", "params": {"size": "big"}}), "preprocess[1].params.size",
     "integer"),
    (edited("preprocess", 1, {"op": "ich_windows", "params": {"size": 4}}), "preprocess[1].params.size",
     "greater than or equal to 16"),
    (edited("preprocess", 1, {"op": "ich_windows", "params": {"context_slices": 2}}),
     "preprocess[1].params.context_slices", "unknown key"),
    (edited("preprocess", 1, {"op": "ich_windows", "params": {"windows_hu": [[40, -80]]}}),
     "preprocess[1].params.windows_hu[0]", "positive width"),
    (edited("postprocess", 1, {"op": "ich_volume_ml", "params": {"blood_hu": [90, 50]}}),
     "postprocess[1].params.blood_hu", "low below high"),
    (edited("postprocess", 0, {"op": "ich_windows", "params": {}}), "postprocess[0].op", "is a preprocess op"),
    (edited("postprocess", 0, {"op": "bone_age_z", "params": {}}), "postprocess[0].op", "task bone_age, not ich"),
    ({**reference("stroke_ich"), "preprocess": []}, "preprocess", "no op gives the model inputs"),
    ({**reference("stroke_ich"), "postprocess": [{"op": "ich_volume_ml"}]}, "postprocess[0].op",
     "needs the prediction"),
]


@pytest.mark.parametrize(("doc", "key", "problem"), BAD, ids=[f"{b[1]}-{b[2][:16]}" for b in BAD])
def test_unknown_op_or_bad_params_stop_loading_with_file_key_and_problem(doc, key, problem, tmp_path):
    with pytest.raises(PipelineConfigError) as info:
        load_pipelines(write(tmp_path, doc), ops=OPS)
    err = info.value
    assert err.file.endswith("stroke_ich.yaml") and "stroke_ich.yaml" in str(err)
    assert any(k == key and problem.lower() in p.lower() for k, p in err.errors), err.errors
    assert key in str(err)


def test_reordering_ops_is_refused_where_an_op_would_come_before_what_it_needs(tmp_path):
    doc = reference("stroke_ich")
    doc["preprocess"].reverse()  # the windows before the volume is known to be CT
    with pytest.raises(PipelineConfigError) as info:
        load_pipelines(write(tmp_path, doc), ops=OPS)
    assert ("preprocess[0].op", f"ich_windows needs the {Slot.CT.value}, which no op before it gives") \
        in info.value.errors
    doc = reference("stroke_ich")
    doc["postprocess"].reverse()  # the finding before the study result it describes
    with pytest.raises(PipelineConfigError, match=r"postprocess\[0\]\.op: ich_volume_ml needs the prediction"):
        load_pipelines(write(tmp_path, doc), ops=OPS)


# --------------------------------------------------------------------------- ops run, in order, with their params


def test_changing_a_param_changes_what_the_model_is_given():
    for size in (64, 96):
        ctx = OpContext(head(), ["slices"])
        ich_chain([("ct_hu_volume", {}), ("ich_windows", {"size": size})]).run_preprocess(ctx)
        assert ctx.inputs["slices"].shape == (20, 5, size, size)
    bone_first = OpContext(head(), ["slices"])
    ich_chain([("ct_hu_volume", {}), ("ich_windows", {"windows_hu": [[600, 2800], [40, 80], [80, 200]]})]
              ).run_preprocess(bone_first)
    brain_first = OpContext(head(), ["slices"])
    ich_chain().run_preprocess(brain_first)
    # blood (70 HU) is bright in the brain window (level 40, width 80) and dark in the bone window
    blood = (0, 1, 62, 62)  # a pixel of the blood (rows and columns 20-30 of 64, 50-75 at 160)
    assert brain_first.inputs["slices"][blood] == pytest.approx(0.875) and bone_first.inputs["slices"][blood] < 0.35
    with pytest.raises(ValueError, match="20 slices, fewer than the 30"):
        ich_chain([("ct_hu_volume", {"min_slices": 30}), ("ich_windows", {})]).run_preprocess(OpContext(head()))


def test_a_chain_runs_pre_model_post_in_batches_and_the_threshold_decides():
    model = FakeModel(logit=1.0)  # sigmoid(1) = 0.731 on every slice
    chain = ich_chain([("ct_hu_volume", {}), ("ich_windows", {"size": 32, "batch": 8})])
    ctx = chain.run(model, head(), {"any": 0.7})
    assert model.calls == [(8, 5, 32, 32), (8, 5, 32, 32), (4, 5, 32, 32)]
    assert ctx.positive and ctx.scores["ich"] == pytest.approx(0.731, abs=1e-3) and ctx.scores["threshold"] == 0.7
    (finding,) = ctx.findings
    assert finding.text.startswith("ICH - ") and "mL" in finding.text and ctx.views[0].window == (40.0, 80.0)
    narrow = ich_chain(post=[("ich_study_result", {}), ("ich_volume_ml", {"blood_hu": [200, 300]})])
    assert narrow.run(FakeModel(logit=1.0), head(), {"any": 0.7}).findings[0].measurements[
        "estimated_volume_ml"] == 0.0  # no voxel of the head is 200-300 HU
    negative = chain.run(FakeModel(logit=1.0), head(), {"any": 0.9})
    assert not negative.positive and negative.findings == []
    without_volume = ich_chain(post=[("ich_study_result", {})]).run(FakeModel(logit=1.0), head(), {"any": 0.7})
    assert without_volume.positive and without_volume.findings == []  # no finding op: scores only


def test_a_chain_refuses_params_its_model_was_not_trained_with_and_a_predictor_takes_the_cards():
    card = SimpleNamespace(id="ich-x", thresholds={}, preprocessing={"size": 160, "windows_hu": [[40, 80]]})
    chain = ich_chain([("ct_hu_volume", {}), ("ich_windows", {"size": 128})])
    problems = chain.card_problems(card)
    assert len(problems) == 2 and "ich_windows size 128 is not the size 160 model ich-x was trained with" in problems
    assert ich_chain().card_problems(SimpleNamespace(id="ich-y", preprocessing={"size": 160.0})) == []
    model = FakeModel(card=SimpleNamespace(id="m", thresholds={"any": 0.99}, preprocessing={"size": 48}))
    pred = predictor("ich")(model, head())
    assert model.calls[0] == (16, 5, 48, 48) and pred["score"] == pytest.approx(0.9526, abs=1e-4)
    assert not pred["positive"]  # the card's operating point


def test_ops_that_need_ct_or_a_radiograph_refuse_the_other():
    with pytest.raises(ValueError, match="needs a CT volume"):
        ich_chain().run_preprocess(OpContext(Volume(np.zeros((64, 64), np.float32), (1.0, 1.0))))
    chain = OPS.chain("bone_age", [("radiograph", {}), ("bone_age_input", {})], [("bone_age_z", {})])
    with pytest.raises(ValueError, match="needs a radiograph"):
        chain.run_preprocess(OpContext(head()))
    assert ich.SIZE == OPS["ich_windows"].params().size  # the defaults are what training uses
