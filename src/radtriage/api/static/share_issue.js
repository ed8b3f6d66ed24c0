// The clinician's share page: issue a share, show its QR code and passcode once (to print), list and revoke.
"use strict";
(() => {
  const root = document.getElementById("share-issue");
  const study = root.dataset.study;
  const form = document.getElementById("share-form");
  const error = document.getElementById("share-error");
  const $ = (id) => document.getElementById(id);

  async function qrDataUrl(url, link) {  // the page's CSP allows data: images, not blob:
    const r = await fetch(url, { method: "POST", credentials: "same-origin", body: JSON.stringify({ link }),
      headers: { "Content-Type": "application/json", "X-CSRF-Token": document.body.dataset.csrf || "" } });
    if (!r.ok) throw new Error("QR code: " + r.status);
    const blob = await r.blob();
    return new Promise((ok) => { const fr = new FileReader(); fr.onload = () => ok(fr.result); fr.readAsDataURL(blob); });
  }

  function body() {
    const f = new FormData(form);
    const out = { consent: f.get("consent"), legal_basis: f.get("legal_basis").trim(), audience: f.get("audience"),
      scope: f.get("scope"), expires_in_hours: Number(f.get("expires_in_hours")), max_opens: Number(f.get("max_opens")) };
    if (out.audience === "hospital") out.recipient = f.get("recipient").trim();
    if (out.scope === "key_images") out.key_images = f.get("key_images").split(/\s+/).filter(Boolean);
    if (f.get("passcode")) out.passcode = f.get("passcode");
    return out;
  }

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    error.textContent = "";
    try {
      const issued = await RT.api("POST", `/api/v1/studies/${study}/shares`, body());
      $("slip-qr").src = await qrDataUrl(issued.qr_png, issued.link);
      $("slip-passcode").textContent = issued.passcode;
      $("slip-link").textContent = issued.link;
      $("slip-expires").textContent = issued.share.expires_at.slice(0, 16).replace("T", " ") + " UTC";
      $("slip-opens").textContent = issued.share.max_opens;
      $("slip-token-line").hidden = !issued.recipient_token;
      $("slip-token").textContent = issued.recipient_token || "";
      $("slip").hidden = false;
      form.reset();
      await list();
    } catch (err) {
      const errors = err.problem && err.problem.errors;
      error.textContent = errors ? errors.map((x) => x.msg).join("; ") : err.message;
    }
  });
  $("print").addEventListener("click", () => window.print());

  async function list() {
    const data = await RT.api("GET", `/api/v1/studies/${study}/shares`);
    const rows = $("share-rows");
    rows.replaceChildren();
    for (const s of data.shares) {
      const tr = document.createElement("tr");
      tr.dataset.id = s.id;
      const who = s.audience === "hospital" ? s.recipient : "anyone with link + passcode";
      for (const v of [s.id, s.state, who, s.scope === "study" ? "study" : "key images", `${s.opens} / ${s.max_opens}`,
        s.expires_at.slice(0, 16).replace("T", " "), s.issued_by]) tr.append(RT.text("td", v));
      const cell = document.createElement("td");
      if (!s.revoked_at) {
        const b = RT.text("button", "Revoke");
        b.type = "button";
        b.addEventListener("click", async () => {
          if (!confirm("Revoke this share? Copies already downloaded cannot be recalled.")) return;
          try { await RT.api("POST", `/api/v1/shares/${s.id}/revoke`); } catch (err) { alert(err.message); }
          await list();
        });
        cell.append(b);
      }
      tr.append(cell);
      rows.append(tr);
    }
  }
  list();
})();
