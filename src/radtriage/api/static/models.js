// Models (admins decide; commissioning readers read): each pipeline's state, evidence, the model monitor's
// view with its server-rendered SVG charts, and the decisions with their signed reports.
"use strict";
(() => {
  const root = document.getElementById("models");
  if (!root) return;
  const admin = RT.role === "admin";
  const T = RT.text;
  const cards = {};  // pipeline id -> {el, parts}: built once, so a form being filled survives a refresh
  const FLOORS = [["min_cases", "cases", "cases", ">="], ["min_positive", "positive", "positives", ">="],
    ["sensitivity_lower", "sensitivity_lower", "sensitivity 95% CI lower bound", ">="],
    ["specificity_lower", "specificity_lower", "specificity 95% CI lower bound", ">="],
    ["mae_upper_months", "mae_upper_months", "MAE 95% CI upper bound (months)", "<="],
    ["fp_per_scan_upper", "fp_per_scan_upper", "false positives per scan 95% CI upper bound", "<="]];
  const CHARTS = [["positive-rate", "Positive rate over time: each point a block of live results with its 95% " +
    "interval; the shaded band is the expected range, the dashed line the hard limit"],
    ["scores", "Scores of the window's results (bars) against the commissioning baseline (line)"],
    ["rates", "Readers' agreement, failures and 'AI not applicable' in the window, allowed ranges shaded"]];

  function pct(v) { return v == null ? "-" : (v * 100 >= 10 || v === 0 ? (v * 100).toFixed(0) : (v * 100).toFixed(1)) + "%"; }
  function num(v) { return v == null ? "-" : (Number.isInteger(v) ? String(v) : v.toFixed(3)); }
  function when(s) { return s ? new Date(s).toLocaleString() : "-"; }
  function el(tag, cls, ...kids) { const e = document.createElement(tag); if (cls) e.className = cls; e.append(...kids); return e; }
  function table(head, rows, cls) {
    const t = el("table", cls || "plain");
    t.append(el("thead", "", el("tr", "", ...head.map((h) => { const th = T("th", h); th.scope = "col"; return th; }))));
    t.append(el("tbody", "", ...rows.map((r) => el("tr", "", ...r.map((c) => c instanceof Node ? el("td", "", c) : T("td", c))))));
    return t;
  }

  async function svgOf(url) {  // our own server-rendered chart, parsed as SVG (never as HTML) and inlined
    const r = await fetch(url, { credentials: "same-origin" });
    if (!r.ok) throw new Error("chart: " + r.status);
    const svg = new DOMParser().parseFromString(await r.text(), "image/svg+xml").documentElement;
    if (svg.nodeName !== "svg") throw new Error("chart: not an SVG");
    return document.importNode(svg, true);
  }

  function evidence(p) {
    const promoted = [...p.decisions].reverse().find((d) => d.action === "promote" && d.evidence);
    const got = promoted ? promoted.evidence.measured || {} : {};
    const rows = FLOORS.filter(([f]) => p.floors[f] != null).map(([f, m, words, op]) => {
      const v = got[m];
      const met = v != null && (op === ">=" ? v >= p.floors[f] : v <= p.floors[f]);
      return [words, op + " " + p.floors[f], promoted ? num(v) : "-", promoted ? (met ? "met" : "not met") : "-"];
    });
    return el("section", "evidence",
      T("h3", "Evidence and floors"),
      T("p", promoted ? "Measured on the evidence of decision " + promoted.id + " (" + when(promoted.decided_at) + ")."
        : "No promotion on evidence yet: the floors a promotion must meet.", "note"),
      table(["floor", "needed", "measured", "met"], rows),
      p.floors.reason ? T("p", "Why: " + p.floors.reason, "note") : "");
  }

  function monitorText(m) {
    const box = el("div", "monitor-text");
    if (!m.enabled) { box.append(T("p", "The monitor is off for this pipeline (enabled: false).", "note")); return box; }
    box.append(T("p", m.results + " of " + m.window + " live results in the window, since " +
      (m.since ? "the last decision (" + when(m.since) + ")" : "the start") + ". " +
      (m.judged ? "The monitor judges this pipeline now." : "Not live: the monitor does not judge it now."), "note"));
    if (m.notice) box.append(T("p", "AI monitor: " + m.notice.text, "monitor-" + m.notice.level));
    if (m.warnings.length) box.append(el("ul", "warnings", ...m.warnings.map((w) => T("li", w))));
    const pr = m.positive_rate, s = m.scores;
    const lines = [pr.words + (pr.hard_max != null ? "; hard limit " + pct(pr.hard_max) + " over " + pr.hard_min_results + "+ results" : ""),
      s ? (s.psi == null ? "Scores: none in the window yet" : "Scores: PSI " + s.psi.toFixed(2) + " (warns above " + s.psi_max +
        "), KS " + s.ks.toFixed(2)) + " against " + s.baseline_source : "No score baseline.",
      m.agreement.words ? m.agreement.words + " (" + m.agreement.agree + " agree, " + m.agreement.disagree + " disagree, " +
        m.agreement.unsure + " unsure)" : "Readers' agreement: no verdicts on the window's results yet",
      m.failure_rate.words, m.no_ai_rate.words];
    box.append(el("ul", "signals", ...lines.map((l) => T("li", l))));
    return box;
  }

  function inputs(m) {
    if (!m.enabled) return "";
    const rows = m.inputs.map((i) => [i.name, i.psi == null ? "-" : i.psi.toFixed(2) + (i.out ? " (out)" : ""),
      i.values.map((v) => v.value + " " + pct(v.window) + " (before " + pct(v.before) + ")").join(", ") || "-"]);
    return el("details", "inputs", T("summary", "Input mix against the results before the window"),
      table(["input", "PSI", "values: share of the window (of the results before)"], rows));
  }

  async function monitor(p, box) {
    const base = "/api/v1/models/" + p.pipeline_id + "/monitor";
    const m = await RT.api("GET", base);
    const figs = el("div", "charts");
    box.replaceChildren(T("h3", "Model monitor"), monitorText(m), figs, inputs(m));
    if (!m.enabled) return;
    for (const [name, caption] of CHARTS) {
      const fig = el("figure", "chart-" + name, T("figcaption", caption));
      figs.append(fig);
      try { fig.prepend(await svgOf(base + "/" + name + ".svg")); } catch (e) { fig.append(T("p", e.message, "error")); }
    }
  }

  function decisions(p) {
    const rows = [...p.decisions].reverse().map((d) => {
      const a = T("a", "report");
      a.href = "/api/v1/models/" + p.pipeline_id + "/decisions/" + d.id + "/report"; a.target = "_blank"; a.rel = "noopener";
      return [when(d.decided_at), d.action, d.state, d.decided_by, d.reason, a];
    });
    return el("section", "decisions", T("h3", "Decisions"),
      rows.length ? table(["when", "action", "state", "by", "reason", "signed report"], rows, "plain decisions-table")
        : T("p", "No decision yet.", "note"));
  }

  function form(p, card) {
    const f = el("form", "decide");
    f.setAttribute("aria-label", "Decide on " + p.pipeline_id);
    const action = el("select", "");
    [["promote", "Promote to live"], ["demote", "Demote to shadow"], ["suspend", "Suspend"]].forEach(([v, w]) => {
      const o = T("option", w); o.value = v; action.append(o);
    });
    action.value = p.state === "live" ? "demote" : "promote";
    const reason = el("textarea", ""); reason.required = true; reason.maxLength = 2000; reason.rows = 2;
    const file = el("input", ""); file.type = "file"; file.accept = ".json,application/json";
    const radio = (v, checked) => { const r = el("input", ""); r.type = "radio"; r.name = "ev-" + p.pipeline_id; r.value = v; r.checked = checked; return r; };
    const fromFile = radio("file", true), fromTrial = radio("shadow", false);
    const carry = el("input", ""); carry.type = "checkbox";
    const ev = el("fieldset", "evidence-choice", T("legend", "Evidence"),
      el("label", "", fromFile, " metrics.json of radtriage validate ", file),
      el("label", "", fromTrial, " the silent trial's reads so far"),
      el("label", "", carry, " carry evidence of another model version or threshold over"));
    const out = el("div", "outcome"); out.setAttribute("role", "status");
    const show = () => { ev.hidden = action.value !== "promote"; };
    action.addEventListener("change", show); show();
    f.append(T("h3", "Decide"), el("label", "", "Action ", action), el("label", "reason", "Reason ", reason), ev,
      T("button", "Decide"), out);
    f.addEventListener("submit", async (e) => {
      e.preventDefault();
      out.replaceChildren(T("p", "Deciding…", "note"));
      const body = { reason: reason.value };
      try {
        if (action.value === "promote") {
          if (fromTrial.checked) body.evidence = "shadow";
          else if (file.files.length) body.evidence = JSON.parse(await file.files[0].text());
          body.carry_over = carry.checked;
        }
        const d = await RT.api("POST", "/api/v1/models/" + p.pipeline_id + "/" + action.value, body);
        out.replaceChildren(T("p", "Decision " + d.id + ": " + p.pipeline_id + " is now " + d.state + ".", "done"));
        reason.value = ""; file.value = "";
        load();
      } catch (err) {
        const pb = err.problem || {};
        const items = pb.problems || (pb.errors || []).map((x) => x.loc.slice(1).join(".") + ": " + x.msg);
        const box = el("div", "refusal", T("p", (pb.title || "Refused") + ": " + (items.length ? "" : err.message)),
          el("ul", "", ...items.map((x) => T("li", x))));
        box.setAttribute("role", "alert");
        out.replaceChildren(box);
      }
    });
    card.append(f);
  }

  function head(p) {
    return el("header", "model-head", T("h2", p.pipeline_id), T("span", p.state, "state state-" + p.state),
      T("span", p.source === "demonstration" ? "demonstration" : p.source === "decision" ? "by decision" : "default", "source"),
      T("p", p.reason, "reason"),
      T("p", "task " + p.task + " · model " + p.model_id + " " + p.model_version + " · thresholds " +
        (Object.entries(p.thresholds).map(([k, v]) => k + " " + v).join(", ") || "the card's"), "model"));
  }

  async function draw(p) {
    let c = cards[p.pipeline_id];
    if (!c) {
      const card = el("article", "model-card");
      card.id = "model-" + p.pipeline_id;
      c = cards[p.pipeline_id] = { card, head: el("div", ""), evidence: el("div", ""), monitor: el("section", "monitor"),
        decisions: el("div", "") };
      card.append(c.head, c.evidence, c.monitor, c.decisions);
      if (admin) form(p, card);
      root.append(card);
    }
    c.card.dataset.state = p.state;
    c.head.replaceChildren(head(p));
    c.evidence.replaceChildren(evidence(p));
    c.decisions.replaceChildren(decisions(p));
    try { await monitor(p, c.monitor); } catch (e) { c.monitor.replaceChildren(T("p", "Monitor: " + e.message, "error")); }
  }

  let loading = null, again = false;
  async function load() {
    if (loading) { again = true; return loading; }
    loading = (async () => {
      try {
        const list = await RT.api("GET", "/api/v1/models");
        if (!Object.keys(cards).length) root.replaceChildren();
        await Promise.all(list.map(draw));
      } catch (e) { root.replaceChildren(T("p", "Could not load the models: " + e.message, "error")); }
      loading = null;
      if (again) { again = false; load(); }
    })();
    return loading;
  }

  let timer = null;
  const soon = () => { if (!timer) timer = setTimeout(() => { timer = null; load(); }, 5000); };
  load();
  if (admin) RT.live(soon);  // new results change the monitor's view: redrawn at most every 5 s
  else {
    setInterval(load, 60000);
    const badge = document.getElementById("live"); if (badge) badge.textContent = "refreshed every minute";
  }
})();
