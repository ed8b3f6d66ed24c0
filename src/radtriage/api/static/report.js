// The report panel of a study: the draft from the live AI results in English, Chinese or both side by side;
// radiologists edit (autosaved), remove AI findings (a "disagree"), sign, add addenda; everyone reads.
// Keys: Alt+1 English, Alt+2 Chinese, Alt+3 side by side, Ctrl+S save now, Ctrl+Enter sign, P print.
"use strict";
(() => {
  const box = document.getElementById("report");
  if (!box) return;
  const uid = box.dataset.uid;
  const base = "/api/v1/studies/" + uid + "/report";
  const editor = RT.role === "radiologist";
  let rep = null, view = localStorage.getItem("rt-report-view") || "en", timer = null, dirty = new Map(), polls = 0;
  const state = RT.text("span", "", "save-state");
  state.setAttribute("role", "status");

  function langs() { return rep ? Object.keys(rep.body) : []; }
  function shown() { return view === "both" ? langs() : langs().filter((l) => l === view).concat(langs().includes(view) ? [] : langs().slice(0, 1)); }

  async function call(method, path, body) {
    try { rep = await RT.api(method, base + path, body); draw(); return true; }
    catch (e) { state.textContent = e.message; if (e.status === 409) load(); return false; }
  }

  async function saveNow() {
    clearTimeout(timer);
    for (const [lang, sections] of dirty) {
      dirty.delete(lang);
      state.textContent = "Saving…";
      try { rep = await RT.api("PUT", base + "/draft", { language: lang, sections, revision: rep.revision }); state.textContent = "Saved (revision " + rep.revision + ")"; }
      catch (e) { state.textContent = "Not saved: " + e.message + (e.status === 409 ? " - reload to see the other change" : ""); return false; }
    }
    return true;
  }

  function edited(lang, section, value) {
    if (!dirty.has(lang)) dirty.set(lang, {});
    dirty.get(lang)[section] = value;
    state.textContent = "Editing…";
    clearTimeout(timer);
    timer = setTimeout(saveNow, 1200);  // autosave
  }

  function column(lang) {
    const b = rep.body[lang], col = RT.text("div", "", "report-lang");
    col.lang = lang;
    col.append(RT.text("h3", b.name));
    if (!String(b.review).startsWith("done")) col.append(RT.text("p", "Translation " + b.review, "unreviewed"));
    const writable = editor && rep.state !== "signed";
    ["examination", "technique", "findings", "impression", "ai_statement"].forEach((s) => {
      const text = b.sections[s] || "", id = "rp-" + lang + "-" + s;
      const label = RT.text("label", b.headings[s] || s); label.htmlFor = id; col.append(label);
      if (!writable) { const p = RT.text("p", text, "text"); p.id = id; col.append(p); return; }
      const ta = document.createElement("textarea"); ta.id = id; ta.value = text; ta.dataset.section = s;
      ta.rows = Math.max(2, text.split("\n").length + 1);
      ta.addEventListener("input", () => edited(lang, s, ta.value));
      col.append(ta);
    });
    rep.addenda.filter((a) => a.language === lang).forEach((a) => {
      col.append(RT.text("label", b.headings.addendum || "Addendum"), RT.text("p", a.text + "\n(" + a.signed_by + ", " + new Date(a.signed_at).toLocaleString() + ")", "text"));
    });
    return col;
  }

  function button(label, cls, onClick) { const b = RT.text("button", label, cls || ""); b.type = "button"; b.addEventListener("click", onClick); return b; }

  async function sign() {
    if (!editor || rep.state === "signed") return;
    const chosen = [...box.querySelectorAll("input.sign-lang:checked")].map((c) => c.value);
    if (!chosen.length) { state.textContent = "Choose the language(s) to sign"; return; }
    if (!(await saveNow())) return;
    if (!confirm("Sign the report (" + chosen.join(" + ") + ")? A signed report is final; a change is an addendum.")) return;
    if (await call("POST", "/sign", { languages: chosen, revision: rep.revision })) poll();
  }

  function poll() {  // the deliveries' states, until none is waiting
    polls = 0;
    const tick = async () => {
      polls += 1;
      await load();
      if (rep && rep.deliveries.some((d) => d.state === "queued" || d.state === "retrying") && polls < 120) setTimeout(tick, 1500);
    };
    setTimeout(tick, 800);
  }

  function draw() {
    box.replaceChildren();
    const head = RT.text("div", "", "report-head");
    head.append(RT.text("h2", "Report"));
    const st = rep.state === "signed" ? "Signed by " + rep.signed_by + ", " + new Date(rep.signed_at).toLocaleString()
      : rep.state === "new" ? "Draft from the AI results (not saved yet)" : "Draft (revision " + rep.revision + ")";
    head.append(RT.text("p", st, "report-state " + rep.state));
    if (rep.stale) head.append(RT.text("p", "The AI results changed since this draft was made.", "unreviewed"));
    box.append(head);
    const views = RT.text("div", "", "report-views");
    [["en", "English (Alt+1)"], ["zh-Hant", "繁體中文 (Alt+2)"], ["both", "Side by side (Alt+3)"]].forEach(([v, label]) => {
      if (v !== "both" && !langs().includes(v)) return;
      const b = button(label, "plain", () => { view = v; localStorage.setItem("rt-report-view", v); draw(); });
      b.setAttribute("aria-pressed", String(view === v)); views.append(b);
    });
    const print = document.createElement("a"); print.href = "/studies/" + uid + "/report/print" + (view === "both" ? "" : "?lang=" + encodeURIComponent(view));
    print.textContent = "Printable view (P)"; print.id = "report-print"; views.append(print, state);
    box.append(views);
    const cols = RT.text("div", "", "report-cols");
    shown().forEach((l) => cols.append(column(l)));
    box.append(cols);
    if (rep.findings.length) {
      const ul = RT.text("ul", "", "ai-findings");
      rep.findings.forEach((f) => {
        const li = RT.text("li", f.text + (f.removed ? " (removed: disagreed)" : ""), f.removed ? "removed" : "");
        if (editor && !f.removed && rep.state !== "signed") li.append(" ", button("Remove from report (disagree)", "plain", async () => {
          if (!(await saveNow())) return;
          const comment = prompt("Why is this finding wrong? (optional)");
          if (comment === null) return;
          call("POST", "/remove-finding", { result_id: f.result_id, index: f.index, comment: comment || null });
        }));
        ul.append(li);
      });
      box.append(RT.text("h3", "AI findings in this draft"), ul);
    }
    if (editor && rep.state !== "signed") {
      const act = RT.text("div", "", "report-actions actions");
      langs().forEach((l) => {
        const lab = document.createElement("label"), c = document.createElement("input");
        c.type = "checkbox"; c.className = "sign-lang"; c.value = l; c.checked = shown().includes(l);
        lab.append(c, " " + rep.body[l].name); act.append(lab);
      });
      act.append(button("Sign report (Ctrl+Enter)", "sign", sign));
      if (rep.stale) act.append(button("Draft again from the AI results", "plain", () => call("POST", "/redraft")));
      if (rep.send_drafts) act.append(button("Send as preliminary", "plain", async () => { if (await saveNow()) { await call("POST", "/send-preliminary"); poll(); } }));
      box.append(act);
    }
    if (editor && rep.state === "signed") {
      const form = RT.text("div", "", "addendum-form");
      const sel = document.createElement("select"); sel.setAttribute("aria-label", "Addendum language");
      langs().forEach((l) => { const o = RT.text("option", rep.body[l].name); o.value = l; sel.append(o); });
      const ta = document.createElement("textarea"); ta.setAttribute("aria-label", "Addendum"); ta.rows = 3;
      form.append(RT.text("h3", "Addendum (signed when added, sent as an amendment)"), sel, ta,
        button("Sign addendum", "", async () => { if (ta.value.trim() && confirm("Sign this addendum?")) { if (await call("POST", "/addenda", { language: sel.value, text: ta.value })) poll(); } }));
      box.append(form);
    }
    if (rep.deliveries.length) {
      const ul = RT.text("ul", "", "deliveries");
      rep.deliveries.forEach((d) => ul.append(RT.text("li", [d.destination + " (" + d.channel + ")", d.status + (d.revision ? " r" + d.revision : ""),
        d.state + (d.error && d.state !== "sent" ? ": " + d.error : "")].join(" · "), d.state)));
      box.append(RT.text("h3", "Report sent to"), ul);
    }
    box.append(RT.text("p", "Keys: Alt+1 English · Alt+2 繁體中文 · Alt+3 side by side · Ctrl+S save · Ctrl+Enter sign · P print", "keys"));
  }

  async function load() {
    try { rep = await RT.api("GET", base); draw(); } catch (e) { box.replaceChildren(RT.text("p", e.message, "error")); }
  }

  document.addEventListener("keydown", (ev) => {
    if (!rep) return;
    const typing = ev.target && (ev.target.tagName === "TEXTAREA" || ev.target.tagName === "INPUT");
    if (ev.altKey && ["1", "2", "3"].includes(ev.key)) { view = { 1: "en", 2: "zh-Hant", 3: "both" }[ev.key]; localStorage.setItem("rt-report-view", view); draw(); ev.preventDefault(); }
    else if ((ev.ctrlKey || ev.metaKey) && ev.key === "s") { if (editor) saveNow(); ev.preventDefault(); }
    else if ((ev.ctrlKey || ev.metaKey) && ev.key === "Enter") { sign(); ev.preventDefault(); }
    else if (!typing && !ev.ctrlKey && !ev.altKey && ev.key === "p") { location.href = document.getElementById("report-print").href; }
  });
  window.addEventListener("beforeunload", () => { if (dirty.size) saveNow(); });
  load();
})();
