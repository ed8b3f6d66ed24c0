// The stroke team's page: active alerts, live (polling), one big "I'm taking it" button each.
"use strict";
(function () {
  const body = document.body;
  const csrf = body.dataset.csrf || "";
  const pollMs = Math.max(1, Number(body.dataset.pollS || 3)) * 1000;
  const list = document.getElementById("alerts");
  const empty = document.getElementById("empty");
  const live = document.getElementById("live");
  const card = document.getElementById("card");
  let alerts = [];
  let last = "";

  function minutesSince(iso) {
    return Math.max(0, Math.floor((Date.now() - Date.parse(iso)) / 60000));
  }

  function statusText(a) {
    if (a.state === "acknowledged") {
      const at = new Date(a.taken_at).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
      return "Taken by " + a.taken_by + (a.taken_via === "link" ? " by link" : "") + " at " + at;
    }
    const paged = [...new Set(a.deliveries.filter(d => d.kind === "page" && d.state === "delivered")
      .map(d => d.member_name))];
    let text = a.exhausted ? "Nobody has taken it: every level paged" : "Waiting: level " + a.level +
      (a.level_name ? " (" + a.level_name + ")" : "");
    if (paged.length) text += " - paged " + paged.join(", ");
    if (a.deliveries.some(d => d.state === "failed")) text += " - a channel failed";
    return text;
  }

  function render() {
    for (const old of list.querySelectorAll("article.alert")) old.remove();
    empty.hidden = alerts.length > 0;
    for (const a of alerts) {
      const node = card.content.firstElementChild.cloneNode(true);
      node.dataset.id = a.id;
      node.classList.toggle("taken", a.state === "acknowledged");
      const img = node.querySelector(".key");
      if (a.has_key_image) img.src = "/api/v1/alerts/" + a.id + "/key-image"; else img.remove();
      const prob = a.probability === null ? "" : " (" + Math.round(a.probability * 100) + "%)";
      node.querySelector(".finding").textContent = a.finding + prob;
      const when = a.scan_time || a.received_at;
      node.querySelector(".since").textContent = minutesSince(when) + " min since " +
        (a.scan_time ? "scan" : "arrival") + " · " + a.priority;
      node.querySelector(".where").textContent = [a.where, a.calling_ae && "AE " + a.calling_ae]
        .filter(Boolean).join(" · ");
      node.querySelector(".patient").textContent = a.patient || "";
      node.querySelector(".status").textContent = statusText(a);
      node.querySelector(".status").classList.toggle("taken", a.state === "acknowledged");
      const button = node.querySelector(".take");
      if (a.state === "open") button.addEventListener("click", () => take(a.id, button));
      else button.remove();
      node.querySelector(".study").href = a.study_url;
      node.querySelector(".model").textContent = "Model " + a.model;
      list.appendChild(node);
    }
  }

  function setLive(ok) {
    live.textContent = ok ? "live" : "connection lost - retrying";
    live.classList.toggle("lost", !ok);
  }

  async function refresh() {
    try {
      const r = await fetch("/api/v1/alerts", { credentials: "same-origin", headers: { Accept: "application/json" } });
      if (r.status === 401) { window.location = "/login"; return; }
      if (!r.ok) throw new Error(r.status);
      const text = await r.text();
      setLive(true);
      if (text === last) return;  // unchanged: leave the page (and the finger on its button) alone
      last = text;
      alerts = JSON.parse(text);
      render();
    } catch (e) {
      setLive(false);
    }
  }

  async function take(id, button) {
    button.disabled = true;
    button.textContent = "Taking it…";
    try {
      const r = await fetch("/api/v1/alerts/" + id + "/ack", {
        method: "POST", credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
        body: JSON.stringify({ via: "page" }),
      });
      if (!r.ok) throw new Error(r.status);
    } catch (e) {
      button.disabled = false;
      button.textContent = "I'm taking it (failed - try again)";
      return;
    }
    refresh();
  }

  refresh();
  setInterval(refresh, pollMs);
  setInterval(render, 30000);  // minutes since the scan count up between polls
})();
