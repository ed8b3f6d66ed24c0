// Shared by the pages: API calls with the CSRF token, the live link, theme, log out, small formatters.
"use strict";
const RT = (() => {
  const csrf = document.body.dataset.csrf || "";
  const role = document.body.dataset.role || "";
  async function api(method, url, body) {
    const opts = { method, headers: { "Accept": "application/json" }, credentials: "same-origin" };
    if (method !== "GET") opts.headers["X-CSRF-Token"] = csrf;
    if (body !== undefined) { opts.headers["Content-Type"] = "application/json"; opts.body = JSON.stringify(body); }
    const r = await fetch(url, opts);
    if (r.status === 401) { location.href = "/login"; throw new Error("logged out"); }
    const data = r.status === 204 ? null : await r.json();
    if (!r.ok) { const e = new Error((data && (data.detail || data.title)) || r.statusText); e.status = r.status; e.problem = data; throw e; }
    return data;
  }
  function live(onChange) {
    const badge = document.getElementById("live");
    let es;
    const connect = () => {
      es = new EventSource("/api/v1/events");
      es.addEventListener("hello", () => { badge.textContent = "live"; badge.className = "live ok"; onChange(); });
      es.addEventListener("worklist", onChange);
      es.onerror = () => { badge.textContent = "live link lost - reconnecting"; badge.className = "live lost"; };
    };
    connect();
  }
  function text(tag, s, cls) { const e = document.createElement(tag); e.textContent = s == null ? "" : String(s); if (cls) e.className = cls; return e; }
  const WORD = { STAT: "STAT", URGENT: "URGENT", ROUTINE: "ROUTINE", PENDING_AI: "PENDING AI" };
  function badge(priority) { return text("span", WORD[priority] || priority, "badge p-" + priority); }
  function waited(minutes) {
    const m = Math.max(0, Math.floor(minutes));
    return m < 60 ? m + " min" : Math.floor(m / 60) + " h " + (m % 60) + " min";
  }
  function patient(row) {
    const name = (row.patient_name || "").replace(/\^+/g, " ").trim();
    return [name, row.patient_id].filter(Boolean).join(" · ");
  }
  document.addEventListener("DOMContentLoaded", () => {
    const out = document.getElementById("logout");
    if (out) out.addEventListener("click", async () => { await api("POST", "/logout"); location.href = "/login"; });
    const theme = document.getElementById("theme");
    const saved = localStorage.getItem("rt-theme");
    if (saved) document.documentElement.dataset.theme = saved;
    if (theme) theme.addEventListener("click", () => {
      const next = document.documentElement.dataset.theme === "dark" ? "light" : "dark";
      document.documentElement.dataset.theme = next; localStorage.setItem("rt-theme", next);
    });
  });
  return { api, live, text, badge, waited, patient, role };
})();
