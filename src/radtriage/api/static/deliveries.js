// Deliveries (admins): exports given up on or retrying after an error; send again now, or give up.
"use strict";
(() => {
  const rows = document.getElementById("rows");
  if (!rows) return;

  async function act(d, action) {
    if (!confirm(action === "retry" ? "Send it again now?" : "Give up on this delivery? It will not be sent.")) return;
    try { await RT.api("POST", "/api/v1/exports/" + d.id + "/" + action); } catch (e) { alert(e.message); }
    load();
  }

  function draw(items) {
    rows.replaceChildren();
    if (!items.length) { const tr = document.createElement("tr"); const td = RT.text("td", "Nothing waiting: every delivery left."); td.colSpan = 8; tr.append(td); rows.append(tr); return; }
    items.forEach((d) => {
      const tr = document.createElement("tr");
      tr.dataset.id = d.id;
      const study = document.createElement("td");
      if (d.study_uid) { const a = RT.text("a", d.study_uid); a.href = "/studies/" + encodeURIComponent(d.study_uid); study.append(a); }
      else study.textContent = "-";
      tr.append(RT.text("td", new Date(d.created_at).toLocaleString()), study,
                RT.text("td", (d.result_id ? "result " + d.result_id + (d.pipeline_id ? " (" + d.pipeline_id + ")" : "") : "report") +
                              " · " + d.status + (d.revision ? " r" + d.revision : "")),
                RT.text("td", d.target + " (" + d.channel + ")"),
                RT.text("td", d.state === "failed" ? "given up" : "retrying"), RT.text("td", d.attempts),
                RT.text("td", d.last_error || "-"));
      const td = document.createElement("td");
      if (d.state === "failed") { const b = RT.text("button", "Send again"); b.type = "button"; b.addEventListener("click", () => act(d, "retry")); td.append(b); }
      else { const b = RT.text("button", "Give up", "plain"); b.type = "button"; b.addEventListener("click", () => act(d, "give-up")); td.append(b); }
      tr.append(td);
      rows.append(tr);
    });
  }

  async function load() {
    try { draw(await RT.api("GET", "/api/v1/exports/failed")); }
    catch (e) { rows.replaceChildren(); const tr = document.createElement("tr"); const td = RT.text("td", e.message, "error"); td.colSpan = 8; tr.append(td); rows.append(tr); }
  }
  load();
})();
