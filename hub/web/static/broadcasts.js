// Broadcasts compose form: the template picker shows its category, body and parameter fields;
// "Preview" and "Send" are the same data-api form (console.js) aimed at the dry run or the real
// POST /api/v1/broadcasts. The dry run's answer is drawn into #preview (text only, no HTML from
// data); "Send" is enabled only while the preview matches the form.
(function () {
  "use strict";
  const REASONS = { opted_out: "Opted out of all messages", marketing_opted_out: "Opted out of marketing",
    no_marketing_consent: "No marketing consent", marketing_limited: "Meta limits marketing to them for now (131049)",
    marketing_cap: "Marketing frequency cap / cool-down reached", missing_value: "A parameter field is empty for them",
    authentication_needs_phone: "Authentication templates need a phone number" };
  const form = document.getElementById("compose");
  if (!form) return;
  const connection = form.querySelector("#bc-connection");
  const template = form.querySelector("#bc-template");
  const send = form.querySelector("#bc-send");
  const box = document.getElementById("preview");

  function el(tag, text, attrs) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    return node;
  }

  function table(head, rows) {
    const t = el("table");
    const tr = el("tr");
    head.forEach((h) => tr.append(el("th", h, { scope: "col" })));
    t.append(el("thead"), el("tbody"));
    t.tHead.append(tr);
    rows.forEach((cells) => {
      const row = el("tr");
      cells.forEach((c) => row.append(el("td", c)));
      t.tBodies[0].append(row);
    });
    const wrap = el("div", null, { class: "table-wrap" });
    wrap.append(t);
    return wrap;
  }

  function onTemplate() {
    const option = template.selectedOptions[0];
    if (!option) return;
    const count = Number(option.dataset.params || 0);
    form.querySelector("#bc-language").value = option.dataset.language;
    form.querySelector("[data-info-category]").textContent = option.dataset.category || "no category";
    form.querySelector("[data-info-body]").textContent = option.dataset.body || "";
    form.querySelectorAll("[data-param]").forEach((div) => {
      const on = Number(div.dataset.param) < count;
      div.hidden = !on;
      div.querySelector("input").disabled = !on;
    });
    form.querySelector("[data-no-params]").hidden = count > 0;
  }

  function onConnection() {
    const waba = connection.selectedOptions[0] && connection.selectedOptions[0].dataset.waba;
    let first = null;
    for (const option of template.options) {
      const fits = option.dataset.waba === waba;
      option.hidden = !fits;
      option.disabled = !fits;
      if (fits && !first) first = option;
    }
    if (template.selectedOptions[0] && template.selectedOptions[0].disabled && first) first.selected = true;
    onTemplate();
  }

  function stale() {
    send.disabled = true;
    if (!box.hidden) box.querySelector("[data-preview]").classList.add("stale");
  }

  function money(estimate) {
    if (estimate.cost !== null && estimate.cost !== undefined) return `${estimate.cost} ${estimate.currency}`;
    const parts = Object.entries(estimate.costs || {}).map(([cur, v]) => `${v} ${cur}`);
    return parts.length ? parts.join(" + ") : "0";
  }

  function render(plan) {
    const target = box.querySelector("[data-preview]");
    target.classList.remove("stale");
    const parts = [];
    const excludedTotal = plan.excluded_total || 0;
    parts.push(el("p", `${plan.recipients} recipient${plan.recipients === 1 ? "" : "s"} · ${excludedTotal} left out` +
      (plan.held ? ` · ${plan.held} held (the owner is chatting with them: they get it when the hold ends)` : ""),
      { class: "totals", "data-summary": "" }));
    const est = plan.estimate || {};
    let cost = `Estimated cost: ${money(est)} (${plan.category || "?"}, rate card: ${(est.rate_card || {}).origin || "?"})`;
    if (est.unpriced) cost += ` · ${est.unpriced} without a price on the rate card`;
    if (est.free_in_window) cost += ` · ${est.free_in_window} free inside their service window`;
    parts.push(el("p", cost, { "data-estimate": "" }));
    const pf = plan.portfolio || {};
    const headroom = pf.headroom === null || pf.headroom === undefined ? "not limited by the hub's governor" : `${pf.headroom} more recipients today`;
    let limit = `Portfolio messaging limit: ${pf.limit ?? "unknown"} · used in 24 h: ${pf.used ?? 0} · headroom: ${headroom}`;
    if (pf.windows) limit += ` · needs ${pf.windows} more 24-hour window${pf.windows === 1 ? "" : "s"}`;
    if (plan.eta_seconds !== undefined) limit += ` · about ${Math.ceil(plan.eta_seconds)} s to send`;
    parts.push(el("p", limit, { "data-portfolio": "" }));
    const reasons = Object.entries(plan.excluded || {}).filter(([, n]) => n);
    if (reasons.length) {
      const list = el("ul");
      reasons.forEach(([r, n]) => list.append(el("li", `${REASONS[r] || r}: ${n}`)));
      parts.push(el("h3", "Left out"), list);
    }
    const pv = plan.preview || { recipients: [], excluded: [] };
    if (pv.excluded.length) {
      parts.push(table(["Contact", "Number", "Reason"],
        pv.excluded.map((e) => [e.name || e.contact_id, e.wa_id ? "+" + e.wa_id : "—", REASONS[e.reason] || e.reason])));
    }
    parts.push(el("h3", `What the first ${pv.recipients.length} will read`));
    if (pv.recipients.length) {
      parts.push(table(["Contact", "Number", "Message"],
        pv.recipients.map((r) => [r.name || r.contact_id, r.wa_id ? "+" + r.wa_id : "—",
          r.text + (r.held_until ? ` (held until ${r.held_until.slice(0, 16).replace("T", " ")} UTC)` : "")])));
    } else parts.push(el("p", "Nobody would receive it.", { class: "muted" }));
    target.replaceChildren(...parts);
    box.hidden = false;
    box.focus({ preventScroll: true });
    box.scrollIntoView({ block: "nearest" });
    send.disabled = !plan.recipients;
    send.textContent = plan.recipients ? `Send to ${plan.recipients}` : "Send";
  }

  // the clicked button chooses the endpoint (the submit event comes after the click)
  form.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-api]");
    if (!button) return;
    form.dataset.api = button.dataset.api;
    if (button.dataset.confirm) form.dataset.confirm = button.dataset.confirm; else delete form.dataset.confirm;
  });
  form.addEventListener("api:done", (event) => {
    const payload = event.detail || {};
    if (payload.dry_run) render(payload);
    else if (payload.id) window.location.assign(`/broadcasts/${encodeURIComponent(payload.id)}`);
  });
  form.addEventListener("input", stale);
  connection.addEventListener("change", onConnection);
  template.addEventListener("change", onTemplate);
  onConnection();
})();
