// A study: header, AI results with key images, feedback per finding, claim / release / report.
"use strict";
(() => {
  const box = document.getElementById("study");
  if (!box) return;
  const uid = box.dataset.uid;
  const me = document.body.dataset.user;
  const openFolds = new Set();  // pipelines whose earlier results the reader unfolded

  async function act(path, body) {
    try { await RT.api("POST", "/api/v1/studies/" + uid + path, body); } catch (e) { alert(e.message); }
    load();
  }

  function feedbackButtons(result, finding) {
    const wrap = RT.text("div", "", "feedback");
    wrap.append(RT.text("span", "Was the AI right? "));
    [["agree", "Agree"], ["disagree", "Disagree"], ["unsure", "Not sure"]].forEach(([verdict, label]) => {
      const b = RT.text("button", label, "fb fb-" + verdict); b.type = "button";
      b.addEventListener("click", () => {
        const comment = prompt("Comment (optional)") || null;
        act("/feedback", { result_id: result.id, finding_code: finding.code, verdict, comment });
      });
      wrap.append(b);
    });
    return wrap;
  }

  function resultCard(r, latest) {
    const card = RT.text("article", "", "result " + (r.positive ? "positive" : "") + (latest ? "" : " superseded"));
    card.append(RT.badge(r.priority), RT.text("h3", r.task.toUpperCase() + (r.positive ? " - positive" : " - negative")),
                RT.text("p", "Model " + r.model_id + " " + r.model_version + " · pipeline " + r.pipeline_id + " " + r.pipeline_version +
                             " · " + new Date(r.created_at).toLocaleString(), "model"));
    const scores = Object.entries(r.scores).map(([k, v]) => k + " " + (+v).toFixed(3)).join(", ");
    card.append(RT.text("p", scores, "scores"));
    r.findings.forEach((f) => {
      const fd = RT.text("div", "", "finding");
      fd.append(RT.text("p", f.text + (f.probability != null ? " (p " + (+f.probability).toFixed(2) + ")" : ""), "finding-text"));
      if (f.key_image_url) { const img = document.createElement("img"); img.src = f.key_image_url; img.alt = "Key image: " + f.text; img.className = "key"; fd.append(img); }
      if (latest && RT.role === "radiologist" && !f.code.startsWith("series:")) fd.append(feedbackButtons(r, f));
      card.append(fd);
    });
    const t = Object.entries(r.timings_ms).map(([k, v]) => k + " " + Math.round(v) + " ms").join(", ");
    card.append(RT.text("p", "Stage times: " + t + (r.provider ? " (" + r.provider + ")" : ""), "timings"));
    return card;
  }

  function drawAlerts(alerts) {
    if (!alerts || !alerts.length) return null;
    const sec = RT.text("section", "", "alerts");
    sec.append(RT.text("h2", "Stroke alerts"));
    const ul = document.createElement("ul");
    alerts.forEach((a) => {
      const who = a.taken_by ? "taken by " + a.taken_by : a.state === "resolved" ? "resolved (" + (a.resolved_reason || "") + ")"
        : "level " + a.level + (a.level_name ? " - " + a.level_name : "") + (a.exhausted ? ", nobody answered" : ", waiting for acknowledgement");
      const sent = a.deliveries.map((x) => x.channel + " to " + x.member + ": " + x.state).join("; ");
      ul.append(RT.text("li", a.finding + " · " + who + (sent ? " · " + sent : "")));
    });
    sec.append(ul);
    return sec;
  }

  // AI results recorded at the edge gateway the study came from: said with their origin, apart from this
  // site's own (they do not set its priority); shadow ones reach admins only
  function drawEdgeResults(list) {
    if (!list || !list.length) return null;
    const sec = RT.text("section", "", "edge-results");
    sec.append(RT.text("h2", "AI at other sites"),
               RT.text("p", "Run at the sending site under its own governance; not counted for this priority.", "note"));
    const ul = document.createElement("ul");
    list.forEach((r) => ul.append(RT.text("li", r.said + " · model " + r.model_id + " " + r.model_version +
                                                " · " + new Date(r.recorded_at).toLocaleString(), "edge-result edge-" + r.state)));
    sec.append(ul);
    return sec;
  }

  function drawRecognition(rec) {
    if (!rec || !rec.from_other_site || !rec.verdicts.length) return null;
    const sec = RT.text("section", "", "recognition");
    sec.append(RT.text("h2", "Received from " + rec.site + ": recognised here?"),
               RT.text("p", rec.list.name + " (version " + rec.list.version + ")", "note"));
    const ul = document.createElement("ul");
    rec.verdicts.forEach((v) => ul.append(RT.text("li", v.words, v.recognised ? "recognised" : "not-recognised")));
    sec.append(ul);
    return sec;
  }

  function draw(d, alerts, exportsList, rec) {
    const e = d.entry;
    box.replaceChildren();
    const head = RT.text("div", "", "study-head");
    head.append(RT.badge(e.priority), RT.text("h1", e.study_description || "Study"),
                RT.text("p", [RT.patient(e), e.patient_sex, e.patient_birth_date, "Acc " + (e.accession_number || "-"),
                              (e.study_date || "") + " " + (e.study_time || ""), e.calling_ae].filter(Boolean).join(" · ")),
                RT.text("p", "Waiting " + RT.waited(e.waiting_min) + (e.overdue ? " - OVERDUE" : "") +
                             " · " + (e.status === "claimed" ? "claimed by " + e.claimed_by : e.status)));
    const actions = RT.text("div", "", "actions");
    const add = (label, path, cls) => { const b = RT.text("button", label, cls || ""); b.type = "button"; b.addEventListener("click", () => act(path)); actions.append(b); };
    if (RT.role === "radiologist") {
      if (e.status === "unread") add("Claim", "/claim", "claim");
      if (e.status === "claimed" && e.claimed_by === me) { add("Mark reported", "/report"); add("Release", "/release", "plain"); }
    }
    if (RT.role === "admin" && e.status === "claimed") add("Release", "/release", "plain");
    head.append(actions);
    box.append(head);
    const res = RT.text("section", "", "results");
    res.append(RT.text("h2", "AI results"), RT.text("p", "AI results are an aid, not a diagnosis.", "note"));
    if (!d.results.length) res.append(RT.text("p", e.ai_state === "pending" ? "AI running…" : (e.priority_reason || "No AI result")));
    // the latest result of each pipeline (the one that sets the priority); earlier ones (a study sent again
    // with changed images) folded under it
    const byPipeline = new Map();
    d.results.forEach((r) => { if (!byPipeline.has(r.pipeline_id)) byPipeline.set(r.pipeline_id, []); byPipeline.get(r.pipeline_id).push(r); });
    byPipeline.forEach((list) => {
      list.sort((a, b) => b.id - a.id);
      const [latest, ...earlier] = list;
      res.append(resultCard(latest, true));
      if (!earlier.length) return;
      const fold = RT.text("details", "", "earlier");
      fold.open = openFolds.has(latest.pipeline_id);  // stays open across live refreshes
      fold.addEventListener("toggle", () => { if (fold.open) openFolds.add(latest.pipeline_id); else openFolds.delete(latest.pipeline_id); });
      fold.append(RT.text("summary", earlier.length + (earlier.length > 1 ? " earlier results" : " earlier result") +
                                     " of " + latest.pipeline_id + " (superseded)"));
      earlier.forEach((r) => fold.append(resultCard(r, false)));
      res.append(fold);
    });
    box.append(res);
    const edge = drawEdgeResults(d.edge_results);
    if (edge) box.append(edge);
    if (d.feedback.length) {
      const fb = RT.text("section", "", "feedback-list");
      fb.append(RT.text("h2", "Feedback"));
      const ul = document.createElement("ul");
      d.feedback.forEach((f) => ul.append(RT.text("li", f.username + ": " + f.verdict + " (" + f.finding_code + ")" + (f.comment ? " - " + f.comment : ""))));
      fb.append(ul); box.append(fb);
    }
    if (exportsList && exportsList.length) {
      const ex = RT.text("section", "", "exports");
      ex.append(RT.text("h2", "Sent to"));
      const ul = document.createElement("ul");
      exportsList.forEach((x) => ul.append(RT.text("li", [x.destination + " (" + x.channel + ")", x.status + (x.revision ? " r" + x.revision : ""),
        x.state + (x.state === "retrying" || x.state === "refused" ? ": " + (x.error || "") : ""), ...(x.notes || [])].join(" · "))));
      ex.append(ul); box.append(ex);
    }
    const rc = drawRecognition(rec);
    if (rc) box.append(rc);
    const al = drawAlerts(alerts);
    if (al) box.append(al);
    const se = RT.text("section", "", "series");
    se.append(RT.text("h2", "Series"));
    const ul = document.createElement("ul");
    d.series.forEach((s) => ul.append(RT.text("li", [s.series_number, s.modality, s.series_description, s.state].filter((x) => x != null).join(" · "))));
    se.append(ul); box.append(se);
  }

  async function load() {
    const alerts = RT.api("GET", "/api/v1/alerts?study_uid=" + encodeURIComponent(uid)).catch(() => null);  // 503: alerting off
    const sent = RT.api("GET", "/api/v1/studies/" + uid + "/exports").catch(() => null);
    const rec = RT.api("GET", "/api/v1/studies/" + uid + "/recognition").catch(() => null);  // 404: no list
    try { draw(await RT.api("GET", "/api/v1/studies/" + uid), await alerts, await sent, await rec); }
    catch (e) { box.replaceChildren(RT.text("p", e.message, "error")); }
  }
  RT.live(load);
})();
