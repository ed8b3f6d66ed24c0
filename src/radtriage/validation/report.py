"""``report.html``: one self-contained page of a validation (figures embedded as PNG data URIs).

Rendered from the ``metrics.json`` document alone (`radtriage.validation.run`),
so a report can be remade from a kept ``metrics.json``. Figures are drawn with
matplotlib's object API on the Agg canvas (no pyplot, no display).
"""

from __future__ import annotations

import base64
import io
import math
from pathlib import Path
from typing import Any

import jinja2
import markupsafe
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

METRIC_NAMES = {
    "auc": "AUC", "sensitivity": "Sensitivity", "specificity": "Specificity", "ppv": "PPV", "npv": "NPV",
    "side_accuracy": "Side accuracy (true positives)", "segment_accuracy": "Segment accuracy (true positives)",
    "subtype_accuracy": "Subtype accuracy (true positives)",
    "cpm": "CPM (mean sensitivity at 1/8-8 FP/scan)", "sensitivity_at_threshold": "Sensitivity at threshold",
    "fp_per_scan_at_threshold": "False positives per scan at threshold",
    "mae": "MAE (months)", "rmse": "RMSE (months)", "bias": "Bias (months)",
    "positives": "Positives", "nodules": "Nodules",
}
GROUP_NAMES = {"sex": "Sex", "age_band": "Age band", "manufacturer": "Manufacturer", "scanner": "Scanner model",
               "kernel": "Reconstruction kernel", "slice_thickness": "Slice thickness"}

METRICS_TABLE = """<table id="metrics">
<tr><th>Metric</th><th>Value</th><th>95% CI</th><th>Notes</th></tr>
{% for row in metric_rows %}<tr><td>{{ row[0] }}</td><td class="num">{{ row[1] }}</td>
<td class="num">{{ row[2] }}</td><td>{{ row[3] }}</td></tr>
{% endfor %}</table>"""
"""The main metrics table (`metric_rows`), also in the commissioning report (`radtriage.governance.report`)."""

TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Validation: {{ doc.model.id }} {{ doc.model.version }}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
.banner { background: #fff3cd; border: 1px solid #e0c060; padding: .6em 1em; font-weight: 600; }
table { border-collapse: collapse; margin: .5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: .25em .6em; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
th { background: #f2f2f2; }
dl { display: grid; grid-template-columns: max-content auto; gap: .2em 1em; }
dt { font-weight: 600; }
figure { display: inline-block; margin: 0 1em 1em 0; }
figcaption { font-size: .9em; color: #555; }
</style></head>
<body>
<h1>Validation of {{ doc.model.id }} {{ doc.model.version }} ({{ doc.task }})</h1>
<p class="banner">{{ doc.disclaimer }}</p>
<dl>
<dt>Model</dt><dd>{{ doc.model.id }} {{ doc.model.version }}: {{ doc.model.architecture }}</dd>
<dt>Model sha256</dt><dd><code>{{ doc.model.sha256 }}</code></dd>
<dt>Intended use</dt><dd>{{ doc.model.intended_use }}</dd>
{% if doc.model.not_for %}<dt>Not for</dt><dd>{{ doc.model.not_for | join("; ") }}</dd>{% endif %}
<dt>Dataset</dt><dd><code>{{ doc.dataset.path }}</code> (layout {{ doc.dataset.layout }})</dd>
<dt>Date</dt><dd>{{ doc.created }}</dd>
<dt>Cases</dt><dd>{{ doc.n }} evaluated{% if doc.n_failed %}, {{ doc.n_failed }} failed (listed below){% endif %}
{%- if doc.get("n_refused") %}, {{ doc.n_refused }} refused by the input guard (outside the validated range; listed below){% endif %}</dd>
<dt>Operating threshold</dt><dd>{{ fmt(doc.threshold, 4) }}</dd>
<dt>Confidence intervals</dt><dd>95%, percentile bootstrap over cases, {{ doc.bootstrap_rounds }} resamples</dd>
<dt>radtriage</dt><dd>{{ doc.radtriage_version }}</dd>
</dl>

<h2>Metrics</h2>
{{ metrics_table }}

<h2>Figures</h2>
{% for fig in figures %}<figure><img alt="{{ fig.title }}" src="data:image/png;base64,{{ fig.png }}" width="480">
<figcaption>{{ fig.title }}</figcaption></figure>
{% endfor %}

<h2>Subgroups</h2>
{% if not subgroup_tables %}<p>The dataset has no subgroup keys.</p>{% endif %}
{% for table in subgroup_tables %}<h3>{{ table.title }}</h3>
<table class="subgroup" id="subgroup-{{ table.key }}">
<tr>{% for h in table.header %}<th>{{ h }}</th>{% endfor %}</tr>
{% for row in table.rows %}<tr>{% for cell in row %}
<td{% if not loop.first %} class="num"{% endif %}>{{ cell }}</td>{% endfor %}</tr>
{% endfor %}</table>
{% endfor %}

<h2>Run time</h2>
{% if doc.timing.n %}<p>Prediction per case (after loading): mean {{ fmt(doc.timing.mean_s, 3) }} s,
median {{ fmt(doc.timing.median_s, 3) }} s,
95th percentile {{ fmt(doc.timing.p95_s, 3) }} s, total {{ fmt(doc.timing.total_s, 1) }} s.</p>{% endif %}
{% if doc.failed %}<h2>Failed cases</h2>
<table><tr><th>Case</th><th>Error</th></tr>
{% for f in doc.failed %}<tr><td>{{ f.id }}</td><td>{{ f.error }}</td></tr>{% endfor %}
</table>{% endif %}
{% if doc.get("refused") %}<h2>Refused by the input guard</h2>
<table><tr><th>Case</th><th>Reason</th></tr>
{% for f in doc.refused %}<tr><td>{{ f.id }}</td><td>{{ f.reason }}</td></tr>{% endfor %}
</table>{% endif %}
<p class="banner">{{ doc.disclaimer }}</p>
</body></html>
"""


def fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _digits(name: str) -> int:
    return 1 if name in ("mae", "rmse", "bias", "lower", "upper") else 3


def _value_ci(name: str, m: Any) -> tuple[str, str]:
    if isinstance(m, dict):
        ci = m.get("ci95") or [None, None]
        d = _digits(name)
        return fmt(m.get("value"), d), (f"{fmt(ci[0], d)} - {fmt(ci[1], d)}" if ci[0] is not None else "n/a")
    return fmt(m, _digits(name)), ""


def metric_rows(doc: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(name, value, CI, note) rows of the main metrics table."""
    task, m = doc["task"], doc["metrics"]
    rows: list[tuple[str, str, str, str]] = []
    if task in ("ich", "lvo"):
        c = m["counts"]
        notes = {"auc": "", "sensitivity": f"{c['tp']} of {c['tp'] + c['fn']}",
                 "specificity": f"{c['tn']} of {c['tn'] + c['fp']}", "ppv": f"{c['tp']} of {c['tp'] + c['fp']}",
                 "npv": f"{c['tn']} of {c['tn'] + c['fn']}"}
        rows.append(("Cases (positives)", f"{m['n']} ({m['positives']})", "", ""))
        for k in ("auc", "sensitivity", "specificity", "ppv", "npv"):
            rows.append((METRIC_NAMES[k], *_value_ci(k, m[k]), notes[k]))
        for k in ("subtype_accuracy", "side_accuracy", "segment_accuracy"):
            if k in m:
                rows.append((METRIC_NAMES[k], *_value_ci(k, m[k]), f"{m[k]['correct']} of {m[k]['n']}"))
    elif task == "nodule":
        rows.append(("Scans", str(m["n_scans"]), "", ""))
        rows.append((f"Nodules >= {fmt(m['min_diameter_mm'], 0)} mm", str(m["n_nodules"]), "",
                     f"{m['n_nodules_hit']} hit by any candidate"))
        rows.append((METRIC_NAMES["cpm"], *_value_ci("cpm", {"value": m["cpm"], "ci95": m.get("cpm_ci95")}), ""))
        for rate, v in m["sensitivity"].items():
            rows.append((f"Sensitivity at {rate} FP/scan", fmt(v), "", ""))
        for k in ("sensitivity_at_threshold", "fp_per_scan_at_threshold"):
            if k in m:
                rows.append((METRIC_NAMES[k], *_value_ci(k, m[k]), ""))
    else:
        rows.append(("Cases", str(m["n"]), "", ""))
        for k in ("mae", "rmse"):
            rows.append((METRIC_NAMES[k], *_value_ci(k, m[k]), ""))
        ba = m["bland_altman"]
        rows.append(("Bland-Altman bias (predicted - true, months)", fmt(ba["bias"], 1), "", ""))
        rows.append(("95% limits of agreement (months)", f"{fmt(ba['lower'], 1)} to {fmt(ba['upper'], 1)}", "", ""))
    return rows + site_rows(m)


def site_rows(m: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """The operating point chosen on these cases and the calibration's Brier score, as metric rows."""
    rows: list[tuple[str, str, str, str]] = []
    op = m.get("operating_point")
    if op:
        target = f"sensitivity >= {fmt(op['target_sensitivity'], 2)}"
        rows.append((f"Site operating point ({target}): threshold", fmt(op["threshold"], 4), "", ""))
        for k in ("sensitivity", "specificity", "fp_per_scan"):
            if k in op:
                rows.append((f"Site operating point: {k.replace('_', ' ')}", *_value_ci(k, op[k]), ""))
    if m.get("calibration"):
        rows.append(("Brier score (calibration)", fmt(m["calibration"]["brier"], 4), "", "lower is better"))
    return rows


def subgroup_tables(doc: dict[str, Any]) -> list[dict[str, Any]]:
    tables = []
    for key, values in doc["subgroups"].items():
        columns = [c for c in next(iter(values.values()), {}) if c != "n"]  # the same for every value
        rows = []
        for value, m in values.items():
            row = [value, str(m["n"])]
            for c in columns:
                v, ci = _value_ci(c, m.get(c))
                row.append(f"{v} ({ci})" if ci and ci != "n/a" else v)
            rows.append(row)
        first = next(iter(values.values()), {})
        header = [GROUP_NAMES.get(key, key), "n"] + [
            METRIC_NAMES.get(c, c) + (" (95% CI)" if isinstance(first.get(c), dict) else "") for c in columns]
        tables.append({"key": key, "title": GROUP_NAMES.get(key, key), "header": header, "rows": rows})
    return tables


# --------------------------------------------------------------------------- figures


def _png(fig: Figure) -> str:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def roc_figure(doc: dict[str, Any]) -> str:
    m = doc["metrics"]
    fig = Figure(figsize=(5, 5))
    ax = fig.subplots()
    roc = m["roc"]
    fpr = [v if v is not None else float("nan") for v in roc["fpr"]]
    tpr = [v if v is not None else float("nan") for v in roc["tpr"]]
    ax.plot(fpr, tpr, marker=".", label=f"AUC {fmt(m['auc']['value'])}")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    sens, spec = m["sensitivity"]["value"], m["specificity"]["value"]
    if sens is not None and spec is not None:
        ax.plot([1 - spec], [sens], "o", color="crimson", label=f"threshold {fmt(doc['threshold'], 3)}")
    ax.set(xlabel="1 - specificity", ylabel="sensitivity", xlim=(-0.02, 1.02), ylim=(-0.02, 1.02),
           title=f"ROC: {doc['task']} (n={m['n']})")
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    return _png(fig)


def froc_figure(doc: dict[str, Any]) -> str:
    m = doc["metrics"]
    curve = m["curve"]
    fig = Figure(figsize=(6, 4.5))
    ax = fig.subplots()
    low = 1 / 16  # the left edge: operating points with no false positive are drawn there
    fps = [max(f, low) for f in curve["fp_per_scan"][1:]]
    sens = list(curve["sensitivity"][1:])
    if fps:
        ax.step([low] + fps, [0.0] + sens, where="post", label=f"CPM {fmt(m['cpm'])}")
    rates = [float(r) for r in m["sensitivity"]]
    ax.plot(rates, [v if v is not None else float("nan") for v in m["sensitivity"].values()], "o", color="crimson",
            label="1/8 ... 8 FP/scan")
    ax.set_xscale("log", base=2)
    ax.set_xticks(rates, [{0.125: "1/8", 0.25: "1/4", 0.5: "1/2"}.get(r, f"{r:g}") for r in rates])
    ax.set(xlim=(low, 16), ylim=(-0.02, 1.02), xlabel="false positives per scan", ylabel="sensitivity",
           title=f"FROC: nodules >= {fmt(m['min_diameter_mm'], 0)} mm ({m['n_nodules']} in {m['n_scans']} scans)")
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3, which="both")
    return _png(fig)


def _bone_age_pairs(doc: dict[str, Any]) -> tuple[list[float], list[float]]:
    t, p = [], []
    for c in doc["cases"]:
        if c["label"].get("bone_age_months") is not None and c["prediction"].get("bone_age_months") is not None:
            t.append(float(c["label"]["bone_age_months"]))
            p.append(float(c["prediction"]["bone_age_months"]))
    return t, p


def bland_altman_figure(doc: dict[str, Any]) -> str:
    t, p = _bone_age_pairs(doc)
    ba = doc["metrics"]["bland_altman"]
    fig = Figure(figsize=(6, 4.5))
    ax = fig.subplots()
    ax.scatter([(a + b) / 2 for a, b in zip(t, p)], [b - a for a, b in zip(t, p)], s=14, alpha=0.7)
    for name, style in (("bias", "-"), ("lower", "--"), ("upper", "--")):
        if ba.get(name) is not None:
            ax.axhline(ba[name], color="crimson", linestyle=style, linewidth=1, label=f"{name} {fmt(ba[name], 1)}")
    ax.set(xlabel="mean of predicted and true (months)", ylabel="predicted - true (months)",
           title=f"Bland-Altman: bone age (n={len(t)})")
    ax.legend(loc="best", fontsize=8)
    ax.grid(alpha=0.3)
    return _png(fig)


def scatter_figure(doc: dict[str, Any]) -> str:
    t, p = _bone_age_pairs(doc)
    fig = Figure(figsize=(5, 5))
    ax = fig.subplots()
    ax.scatter(t, p, s=14, alpha=0.7)
    lo, hi = min(t + p + [0.0]), max(t + p + [1.0])
    ax.plot([lo, hi], [lo, hi], color="grey", linestyle=":", linewidth=1, label="identity")
    ax.set(xlabel="true bone age (months)", ylabel="predicted bone age (months)",
           title=f"Predicted vs true (MAE {fmt(doc['metrics']['mae']['value'], 1)} months)")
    ax.legend(loc="upper left")
    ax.grid(alpha=0.3)
    return _png(fig)


def calibration_figure(doc: dict[str, Any]) -> str:
    cal = doc["metrics"]["calibration"]
    fig = Figure(figsize=(5, 5))
    ax = fig.subplots()
    xs, ys = [b["mean_score"] for b in cal["bins"]], [b["observed"] for b in cal["bins"]]
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1, label="perfect calibration")
    ax.plot(xs, ys, marker="o", label=f"Brier {fmt(cal['brier'], 3)}")
    for x, y, b in zip(xs, ys, cal["bins"]):
        ax.annotate(str(b["n"]), (x, y), textcoords="offset points", xytext=(4, -10), fontsize=7)
    ax.set(xlabel="mean predicted score (bin)", ylabel="observed fraction positive", xlim=(-0.02, 1.02),
           ylim=(-0.02, 1.02), title=f"Calibration: {doc['task']} (cases per bin marked)")
    ax.legend(loc="upper left")
    ax.grid(alpha=0.3)
    return _png(fig)


FIGURES = {
    "ich": (("ROC curve", roc_figure), ("Calibration curve", calibration_figure)),
    "lvo": (("ROC curve", roc_figure), ("Calibration curve", calibration_figure)),
    "nodule": (("FROC curve", froc_figure),),
    "bone_age": (("Bland-Altman plot", bland_altman_figure), ("Predicted vs true bone age", scatter_figure)),
}


def metrics_table(doc: dict[str, Any]) -> markupsafe.Markup:
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    return markupsafe.Markup(env.from_string(METRICS_TABLE).render(metric_rows=metric_rows(doc)))


def render(doc: dict[str, Any]) -> str:
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    figures = [{"title": title, "png": draw(doc)} for title, draw in FIGURES[doc["task"]]
               if draw is not calibration_figure or doc["metrics"].get("calibration")]
    return env.from_string(TEMPLATE).render(doc=doc, fmt=fmt, metrics_table=metrics_table(doc), figures=figures,
                                            subgroup_tables=subgroup_tables(doc))


def write_report(path: Path, doc: dict[str, Any]) -> Path:
    path = Path(path)
    path.write_text(render(doc), encoding="utf-8")
    return path
