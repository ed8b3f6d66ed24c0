"""The Models page's API: ``GET /api/v1/models/{pipeline}/monitor`` and its SVG charts.

A seeded set of live stroke_ich results (scores, positives, scanner headers that change half-way, readers'
verdicts, refused and failed attempts): the API's values equal what the model monitor itself computes
(`watch.Monitor.evaluate`, the verdict it acts on, and the statistics recomputed by hand from the seeded
numbers); admins and commissioning readers read it, a radiologist is refused; the charts are SVG with the
expected band, the hard limit and the baseline drawn.
"""

from __future__ import annotations

import datetime as dt
import random
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from sqlalchemy import select, update

from radtriage.db.tables import feedback, jobs, results, users
from radtriage.triage import seed
from tests.integration.test_model_decisions import api  # noqa: F401 - the fixture: admin, commissioning, radiologist

REPO = Path(__file__).resolve().parents[2]
T0 = dt.datetime(2026, 12, 1, 8, 0, tzinfo=dt.UTC)
GE = {"Manufacturer": "GE MEDICAL SYSTEMS", "ManufacturerModelName": "Revolution", "ConvolutionKernel": "STANDARD",
      "SliceThickness": 5.0, "KVP": 120, "PixelSpacing": [0.45, 0.45]}
CANON = {**GE, "Manufacturer": "CANON", "ManufacturerModelName": "Aquilion", "ConvolutionKernel": "FC21"}
SVG = "{http://www.w3.org/2000/svg}"


def seed_ich(db, n: int = 160, positives_every: int = 8, rng_seed: int = 5) -> dict:
    """``n`` live stroke_ich results, one in ``positives_every`` positive with a high score, the rest low;
    the first half from a GE scanner, the second half from a Canon one; readers' verdicts on 12 of the last
    results (9 agree); 3 attempts refused by the input guard and 1 failed after the first result.
    Returns what was seeded."""
    rng = random.Random(rng_seed)
    seed.seed(db, 4 * n, pending_fraction=0.0, positive_fraction=0.0)  # every fourth study: a stroke_ich job
    with db.write() as conn:
        ich = conn.execute(select(results.c.id, results.c.job_id, results.c.result)
                           .where(results.c.pipeline_id == "stroke_ich").order_by(results.c.id)).all()
        assert len(ich) == n
        scores, positives = [], []
        for i, (rid, job, doc) in enumerate(ich):
            positive = i % positives_every == 0
            score = round(rng.uniform(0.9, 1.0) if positive else rng.uniform(0.0, 0.3), 4)
            scores.append(score)
            positives.append(positive)
            conn.execute(update(results).where(results.c.id == rid).values(
                positive=positive, priority="STAT" if positive else "ROUTINE", state="live",
                created_at=T0 + dt.timedelta(minutes=10 * i),
                result={**doc, "positive": positive, "scores": {"ich": score}}))
            conn.execute(update(jobs).where(jobs.c.id == job).values(
                case={"calling_ae": "CT_ED_1", "header": GE if i < n // 2 else CANON},
                updated_at=T0 + dt.timedelta(minutes=10 * i)))
        others = conn.execute(select(jobs.c.id).where(jobs.c.id.notin_([j for _, j, _ in ich]))
                              .order_by(jobs.c.id).limit(4)).scalars().all()
        late = T0 + dt.timedelta(minutes=10 * n)
        for k, job in enumerate(others):
            refused = k < 3
            conn.execute(update(jobs).where(jobs.c.id == job).values(
                state="no_ai" if refused else "failed", updated_at=late,
                last_error="stroke_ich: AI not applicable: outside the model's validated range" if refused
                else "stroke_ich: model error"))
        reader = conn.execute(select(users.c.id).where(users.c.username == "radiologist1")).scalar_one()
        last = conn.execute(select(results.c.id, results.c.study_uid).where(results.c.pipeline_id == "stroke_ich")
                            .order_by(results.c.id.desc()).limit(12)).all()
        for k, (rid, uid) in enumerate(last):
            conn.execute(feedback.insert().values(study_uid=uid, result_id=rid, finding_code="ich", user_id=reader,
                                                  verdict="agree" if k < 9 else "disagree", created_at=late))
    return {"scores": scores, "positives": positives}


def _monitor_verdict(services):
    """What the running monitor computes and acts on for stroke_ich now."""
    from radtriage.governance.decide import pipelines
    from radtriage.governance.state import StateBook
    from radtriage.monitor.watch import Monitor

    settings = services.settings
    specs = list(pipelines(settings).values())
    book = StateBook(services.db, specs, settings.inference.models_dir, settings.environment)
    monitor = Monitor(services.db, settings, specs, book)
    verdict = monitor.evaluate("stroke_ich")
    return {s.name: s for s in verdict.signals}, verdict, monitor


def test_the_monitor_api_gives_what_the_monitor_computes(api):
    from radtriage.monitor import stats
    from radtriage.monitor.baseline import reference
    from radtriage.monitor.defaults import monitor_for
    from radtriage.governance.decide import pipelines

    seeded = seed_ich(api.services.db)
    r = api.get("/api/v1/models/stroke_ich/monitor", headers=api.as_["admin"])
    assert r.status_code == 200, r.text
    m = r.json()
    signals, verdict, monitor = _monitor_verdict(api.services)

    # the window: the newest 100 live results (no decision yet: the demonstration runs live)
    assert (m["state"], m["judged"], m["window"], m["results"], m["since"]) == ("live", True, 100, 100, None)
    window_pos = seeded["positives"][-100:]
    pr = m["positive_rate"]
    assert pr["results"] == 100 and pr["positive"] == sum(window_pos) == 12
    assert pr["value"] == signals["positive_rate"].value == pytest.approx(12 / 100)
    assert pr["words"] == signals["positive_rate"].words == "positive rate 12% of the last 100 results (expected 3%-25%)"
    assert tuple(pr["ci95"]) == pytest.approx(stats.wilson(12, 100))
    assert (pr["expected"], pr["hard_max"], pr["hard_min_results"], pr["hard"]) == ([0.03, 0.25], 0.45, 40, None)
    # the history: blocks of 25 live results counted from the newest, every result once
    hist = pr["history"]
    assert [h["results"] for h in hist] == [10, 25, 25, 25, 25, 25, 25] and sum(h["positive"] for h in hist) == 20
    assert hist[-1]["positive"] == sum(seeded["positives"][-25:])
    assert hist[-1]["rate"] == pytest.approx(sum(seeded["positives"][-25:]) / 25)

    # scores against the shipped baseline (the demonstration has no promoting evidence)
    spec = pipelines(api.services.settings)["stroke_ich"]
    ref = reference(monitor_for(spec), "ich", None)
    counts = stats.histogram(seeded["scores"][-100:], ref.edges)
    s = m["scores"]
    assert s["counts"] == [int(c) for c in counts] and sum(s["counts"]) == 100
    assert s["baseline"] == pytest.approx(list(ref.shares)) and "validation heads" in s["baseline_source"]
    assert s["psi"] == pytest.approx(stats.psi(counts, ref.shares)) == pytest.approx(signals["score_psi"].value)
    assert s["ks"] == pytest.approx(stats.ks(counts, ref.shares)) == pytest.approx(signals["score_ks"].value)
    assert s["out"] == signals["score_psi"].out == "above"  # the seeded scores are far from the validation heads'

    # the input mix: the window is 20 GE then 80 Canon, the 60 before it GE
    kernel = next(i for i in m["inputs"] if i["keyword"] == "ConvolutionKernel")
    assert kernel["psi"] == pytest.approx(signals["input:ConvolutionKernel"].value)
    assert kernel["psi"] == pytest.approx(stats.categorical_psi({"STANDARD": 20, "FC21": 80}, {"STANDARD": 60}))
    assert {v["value"]: (v["window"], v["before"]) for v in kernel["values"]} == {"FC21": (0.8, 0.0),
                                                                                  "STANDARD": (0.2, 1.0)}
    assert kernel["out"] is None  # judged on 100 results before the window, only 60 here

    # readers, failures, refusals
    a = m["agreement"]
    assert (a["agree"], a["disagree"], a["value"]) == (9, 3, pytest.approx(signals["agreement"].value)) and a["value"] == 0.75
    assert (m["no_ai_rate"]["count"], m["no_ai_rate"]["attempts"]) == (3, 104)
    assert m["no_ai_rate"]["value"] == pytest.approx(signals["no_ai_rate"].value) == pytest.approx(3 / 104)
    assert m["failure_rate"]["value"] == pytest.approx(signals["failure_rate"].value) == pytest.approx(1 / 104)
    assert m["warnings"] == [w.words for w in verdict.warnings]
    gauge = monitor.metrics.registry.get_sample_value
    assert gauge("radtriage_monitor_score_psi", {"pipeline": "stroke_ich"}) == pytest.approx(s["psi"])
    assert gauge("radtriage_monitor_positive_rate", {"pipeline": "stroke_ich"}) == pytest.approx(pr["value"])

    # the same numbers for a commissioning reader; a radiologist is refused; a bad name is a problem
    # the page's view acts on nothing: the banner came only when the monitor itself evaluated (above)
    assert m["notice"] is None
    again = api.get("/api/v1/models/stroke_ich/monitor", headers=api.as_["commissioning"]).json()
    assert again["notice"]["level"] == "warning" and signals["score_psi"].words in again["notice"]["text"]
    assert {**again, "notice": None} == m
    for url in ("/api/v1/models/stroke_ich/monitor", "/api/v1/models/stroke_ich/monitor/scores.svg"):
        refused = api.get(url, headers=api.as_["radiologist"])
        assert refused.status_code == 403 and refused.headers["content-type"] == "application/problem+json"
    assert api.get("/api/v1/models/nothing_here/monitor", headers=api.as_["admin"]).status_code == 404
    assert api.get("/api/v1/models/stroke_ich/monitor/pie.svg", headers=api.as_["admin"]).status_code == 422


def _svg(api, name: str, role: str = "admin") -> ET.Element:
    r = api.get(f"/api/v1/models/stroke_ich/monitor/{name}.svg", headers=api.as_[role])
    assert r.status_code == 200 and r.headers["content-type"].startswith("image/svg+xml"), r.text
    return ET.fromstring(r.text)  # well-formed XML


def test_the_charts_are_svg_with_axes_the_expected_band_the_hard_limit_and_the_baseline(api):
    seed_ich(api.services.db)
    rate = _svg(api, "positive-rate")
    assert rate.tag == f"{SVG}svg" and rate.find(f"{SVG}title").text == "stroke_ich: positive rate over time"
    band = [e for e in rate.iter(f"{SVG}rect") if e.get("class") == "band"]
    assert len(band) == 1 and band[0].find(f"{SVG}title").text == "expected range 3%-25%"
    assert [e for e in rate.iter(f"{SVG}line") if e.get("class") == "hard-limit"]
    points = [e for e in rate.iter(f"{SVG}circle") if e.get("class", "").startswith("point")]
    assert len(points) == 7 and "positive" in points[-1].find(f"{SVG}title").text
    labels = " ".join(t.text or "" for t in rate.iter(f"{SVG}text"))
    assert "positive rate (%)" in labels and "blocks of 25 live results" in labels and "hard limit 45%" in labels
    # the band's edges sit where the axis puts 3% and 25%: the band is drawn to scale
    y3, y25 = float(band[0].get("y")) + float(band[0].get("height")), float(band[0].get("y"))
    ticks = {t.text: float(t.get("y")) - 4 for t in rate.iter(f"{SVG}text") if t.get("class") == "tick" and "%" in (t.text or "")}
    per_pct = (ticks["0%"] - ticks["20%"]) / 20
    assert y3 == pytest.approx(ticks["0%"] - 3 * per_pct, abs=0.2) and y25 == pytest.approx(ticks["0%"] - 25 * per_pct, abs=0.2)

    scores = _svg(api, "scores", "commissioning")
    assert [e for e in scores.iter(f"{SVG}path") if e.get("class") == "baseline"]
    assert len([e for e in scores.iter(f"{SVG}rect") if e.get("class") == "bar"]) == 10
    assert "PSI" in scores.find(f"{SVG}title").text
    rates = _svg(api, "rates")
    assert len([e for e in rates.iter(f"{SVG}rect") if e.get("class") == "band"]) == 3
    assert "readers' agreement" in " ".join(t.text or "" for t in rates.iter(f"{SVG}text"))


def test_the_models_page_is_for_admins_and_commissioning_readers(api):
    assert api.get("/admin/models", headers=api.as_["admin"]).status_code == 200
    page = api.get("/admin/models", headers=api.as_["commissioning"])
    assert page.status_code == 200 and "Read only" in page.text and "/static/models.js" in page.text
    assert api.get("/admin/models", headers=api.as_["radiologist"]).status_code == 403
    assert api.get("/admin/models", follow_redirects=False).status_code == 303
    worklist = api.get("/", headers=api.as_["admin"]).text
    assert 'href="/admin/models"' in worklist
    assert 'href="/admin/models"' not in api.get("/", headers=api.as_["radiologist"]).text
