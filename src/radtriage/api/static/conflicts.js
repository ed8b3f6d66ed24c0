// Conflicts (admins): refused instances that contradict what is stored; accept as a correction or keep refused.
"use strict";
(() => {
  const rows = document.getElementById("rows");
  const state = document.getElementById("state");
  if (!rows) return;
  const KIND = { patient_mismatch: "patient mismatch", sop_elsewhere: "SOP Instance UID stored elsewhere",
                 series_elsewhere: "Series Instance UID stored in another study" };

  function who(p) {
    if (!p) return "-";
    return [RT.patient(p), p.patient_id_issuer && "issuer " + p.patient_id_issuer, p.patient_sex, p.patient_birth_date,
            p.accession_number && "Acc " + p.accession_number].filter(Boolean).join(" · ");
  }

  async function act(c, action) {
    const question = action === "accept"
      ? "Correct the stored patient to the instance's demographics and store the held instances?"
      : "Keep this instance refused? Its held copy is removed.";
    if (!confirm(question)) return;
    try {
      const r = await RT.api("POST", "/api/v1/conflicts/" + c.id + "/" + action);
      if (action === "accept") alert(r.stored_instances + " instance(s) stored" + (r.still_refused.length ? ", " + r.still_refused.length + " refused again" : ""));
    } catch (e) { alert(e.message); }
    load();
  }

  function draw(items) {
    rows.replaceChildren();
    if (!items.length) { const tr = document.createElement("tr"); const td = RT.text("td", "No conflicts."); td.colSpan = 9; tr.append(td); rows.append(tr); return; }
    items.forEach((c) => {
      const tr = document.createElement("tr");
      const where = [c.study_uid, c.series_uid, c.sop_instance_uid].join(" / ") +
        (c.existing_series_uid ? " (stored in " + c.existing_study_uid + " / " + c.existing_series_uid + ")" : "");
      [new Date(c.last_seen_at).toLocaleString() + (c.attempts > 1 ? " (" + c.attempts + "x)" : ""), KIND[c.kind] || c.kind,
       where, who(c.stored), who(c.incoming), c.mismatch.join(", ") || "-", (c.calling_ae || "-") + " via " + c.source,
       c.state + (c.resolved_by ? " by " + c.resolved_by : "")].forEach((v) => tr.append(RT.text("td", v)));
      const td = document.createElement("td");
      c.actions.forEach((a) => {
        const b = RT.text("button", a === "accept" ? "Accept as correction" : "Keep refused", a === "accept" ? "" : "plain");
        b.type = "button"; b.addEventListener("click", () => act(c, a)); td.append(b);
      });
      tr.append(td); rows.append(tr);
    });
  }

  async function load() {
    try { draw((await RT.api("GET", "/api/v1/conflicts?state=" + encodeURIComponent(state.value))).items); }
    catch (e) { rows.replaceChildren(RT.text("tr", e.message, "error")); }
  }
  state.addEventListener("change", load);
  load();
})();
