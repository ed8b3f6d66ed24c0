// The worklist: fetched from /api/v1/worklist, redrawn whenever the server says it changed.
"use strict";
(() => {
  const rows = document.getElementById("rows");
  const count = document.getElementById("count");
  const filters = ["priority", "status", "modality", "task"].map((k) => document.getElementById("f-" + k));
  let items = [], selected = 0, loading = null, again = false, fetchedAt = Date.now();

  function query() {
    const q = new URLSearchParams({ limit: "200" });
    const [priority, status, modality, task] = filters.map((f) => f.value);
    if (priority) q.append("priority", priority);
    if (status) status.split(",").forEach((s) => q.append("status", s));
    if (modality) q.append("modality", modality);
    if (task) q.append("task", task);
    return "/api/v1/worklist?" + q;
  }

  async function load() {
    if (loading) { again = true; return loading; }
    loading = (async () => {
      try {
        const page = await RT.api("GET", query());
        const uid = items[selected] && items[selected].study_uid;
        items = page.items; fetchedAt = Date.now();
        drawMonitor(page.monitor || []);
        const keep = items.findIndex((i) => i.study_uid === uid);
        selected = keep >= 0 ? keep : 0;
        draw(page.total);
      } catch (e) { count.textContent = "Could not load the worklist: " + e.message; }
      loading = null;
      if (again) { again = false; load(); }
    })();
    return loading;
  }

  function drawMonitor(notices) {  // the model monitor's warnings and demotions (radtriage.monitor)
    const box = document.getElementById("monitor");
    box.replaceChildren(...notices.map((n) => RT.text("p", "AI monitor: " + n.text, "monitor-" + n.level)));
    box.hidden = !notices.length;
  }

  function flagText(item) {
    const pos = item.flags.filter((f) => f.positive);
    if (pos.length) return pos.map((f) => f.text).join("; ");
    if (item.ai_state === "pending") return "AI running…";
    if (item.ai_state === "failed") return item.priority_reason || "AI failed";
    if (item.ai_state === "none") return "no AI applicable";
    if (item.ai_state === "off") return "AI off";
    return item.flags.map((f) => f.text).join("; ") || "no AI finding";
  }

  function draw(total) {
    rows.replaceChildren();
    items.forEach((it, i) => {
      const tr = document.createElement("tr");
      tr.dataset.uid = it.study_uid; tr.tabIndex = -1;
      tr.className = ["row", "p-" + it.priority, it.overdue ? "overdue" : "", i === selected ? "selected" : ""].join(" ");
      const pr = document.createElement("td"); pr.append(RT.badge(it.priority));
      if (it.overdue) pr.append(RT.text("span", "OVERDUE", "overdue-tag"));
      const wait = RT.text("td", RT.waited(it.waiting_min), "waiting");
      wait.dataset.minutes = it.waiting_min;
      const study = RT.text("td", it.study_description || it.accession_number || "");
      const reader = RT.text("td", it.status === "claimed" ? "claimed by " + it.claimed_by : it.status);
      const act = document.createElement("td");
      if (RT.role === "radiologist" && it.status === "unread") {
        const b = RT.text("button", "Claim", "claim"); b.type = "button";
        b.addEventListener("click", (ev) => { ev.stopPropagation(); claim(it.study_uid); });
        act.append(b);
      }
      const flag = RT.text("td", flagText(it), "flag");
      (it.edge_ai || []).forEach((said) => flag.append(RT.text("div", said, "edge-ai")));  // the edge's, not counted here
      tr.append(pr, flag, wait, RT.text("td", it.modalities.join(",")), study,
                RT.text("td", RT.patient(it)), RT.text("td", it.calling_ae || ""), reader, act);
      tr.addEventListener("click", () => open(it.study_uid));
      rows.append(tr);
    });
    if (!items.length) rows.append(Object.assign(document.createElement("tr"), { innerHTML: '<td colspan="9">Nothing to read.</td>' }));
    count.textContent = total + " studies";
  }

  function open(uid) { location.href = "/studies/" + encodeURIComponent(uid); }
  async function claim(uid) {
    try { await RT.api("POST", "/api/v1/studies/" + uid + "/claim"); } catch (e) { alert(e.message); }
    load();
  }
  function select(i) {
    if (!items.length) return;
    selected = Math.max(0, Math.min(items.length - 1, i));
    [...rows.children].forEach((tr, k) => tr.classList.toggle("selected", k === selected));
    rows.children[selected].scrollIntoView({ block: "nearest" });
  }
  document.addEventListener("keydown", (ev) => {
    if (ev.target.closest("select, input, button")) return;
    if (ev.key === "ArrowDown") { select(selected + 1); ev.preventDefault(); }
    else if (ev.key === "ArrowUp") { select(selected - 1); ev.preventDefault(); }
    else if (ev.key === "Enter" && items[selected]) open(items[selected].study_uid);
    else if (ev.key === "c" && items[selected] && RT.role === "radiologist") claim(items[selected].study_uid);
  });
  filters.forEach((f) => f.addEventListener("change", load));
  setInterval(() => {  // waiting times count up between fetches
    const extra = (Date.now() - fetchedAt) / 60000;
    document.querySelectorAll("td.waiting").forEach((td) => { td.textContent = RT.waited(+td.dataset.minutes + extra); });
  }, 15000);
  RT.live(load);
})();
