// coexhub console: the little JS the pages need besides htmx.
// <form data-api="POST /api/v1/..."> sends its fields as JSON to the hub's own API with the
// session's CSRF token, shows the API's error (message + field errors) inside the form, and on
// success shows data-done text, then reloads (data-then="reload", the default), follows
// data-then="go:<url>", or fires an htmx event (data-then="event:<name>").
(function () {
  "use strict";
  const csrf = () => document.querySelector('meta[name="csrf-token"]').content;

  function toast(text) {
    const el = document.getElementById("toast");
    if (!el) return;
    el.textContent = text;
    el.classList.add("show");
    setTimeout(() => el.classList.remove("show"), 4000);
  }

  function setPath(target, path, value) {
    const keys = path.replace(/\]/g, "").split("[");
    let node = target;
    keys.forEach((key, i) => {
      const last = i === keys.length - 1;
      if (key === "") return;
      if (last) {
        if (keys[i + 1] === "") return;
        node[key] = value;
      } else {
        const arrayNext = keys[i + 1] === "";
        if (arrayNext) {
          node[key] = node[key] || [];
          if (value !== undefined && value !== null && value !== "") node[key].push(value);
        } else {
          node[key] = node[key] || {};
          node = node[key];
        }
      }
    });
  }

  // name="params[]" → list; name="config[delay]" → object; data-type="number|json|bool" converts;
  // empty optional fields are left out.
  function formJson(form) {
    const body = {};
    for (const el of form.elements) {
      if (!el.name || el.disabled || el.name === "csrf_token" || el.type === "submit") continue;
      let value;
      if (el.type === "checkbox") value = el.checked;
      else if (el.type === "radio") { if (!el.checked) continue; value = el.value; }
      else if (el.multiple) value = Array.from(el.selectedOptions).map((o) => o.value);
      else value = el.value;
      const type = el.dataset.type;
      if (value === "" && el.type !== "checkbox" && !el.name.endsWith("[]")) continue;
      if (type === "number") value = Number(value);
      else if (type === "json") { try { value = JSON.parse(value); } catch (e) { throw new Error(`${el.name}: not valid JSON`); } }
      else if (type === "list") value = value.split(/[\n,]/).map((v) => v.trim()).filter(Boolean);
      setPath(body, el.name, value);
    }
    return body;
  }

  function showErrors(form, payload, status) {
    const box = form.querySelector("[data-errors]") || form.appendChild(Object.assign(document.createElement("div"), {}));
    box.setAttribute("data-errors", "");
    box.setAttribute("role", "alert");
    const error = (payload && payload.error) || {};
    const lines = [error.message || `Request failed (${status})`];
    const fields = error.fields || (error.details && error.details.fields) || {};  // the API puts them in details
    for (const [name, problems] of Object.entries(fields)) lines.push(`${name}: ${[].concat(problems).join(", ")}`);
    box.replaceChildren(...lines.map((t) => Object.assign(document.createElement("p"), { textContent: t })));
    form.dispatchEvent(new CustomEvent("api:error", { bubbles: true, detail: { status, fields, error } }));
  }

  async function submitApi(form, event) {
    event.preventDefault();
    const [method, url] = form.dataset.api.split(" ");
    const button = form.querySelector('[type="submit"]');
    let body;
    try { body = method === "GET" || method === "DELETE" ? undefined : JSON.stringify(formJson(form)); }
    catch (e) { showErrors(form, { error: { message: e.message } }, 400); return; }
    if (form.dataset.confirm && !window.confirm(form.dataset.confirm)) return;
    if (button) button.disabled = true;
    try {
      const response = await fetch(url, {
        method, body, credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRFToken": csrf(), Accept: "application/json" },
      });
      const payload = response.headers.get("content-type", "").includes("json") ? await response.json() : null;
      if (!response.ok) { showErrors(form, payload, response.status); return; }
      const errors = form.querySelector("[data-errors]");
      if (errors) errors.replaceChildren();
      form.dispatchEvent(new CustomEvent("api:done", { bubbles: true, detail: payload }));
      toast(form.dataset.done || "Done.");
      const then = form.dataset.then || "reload";
      if (then === "reload") window.location.reload();
      else if (then.startsWith("go:")) window.location.assign(then.slice(3));
      else if (then.startsWith("event:") && window.htmx) window.htmx.trigger(document.body, then.slice(6), payload);
      else if (then === "reset") form.reset();
    } catch (e) {
      showErrors(form, { error: { message: `Network error: ${e.message}` } }, 0);
    } finally {
      if (button) button.disabled = false;
    }
  }

  document.addEventListener("submit", (event) => {
    const form = event.target;
    if (form instanceof HTMLFormElement && form.dataset.api) submitApi(form, event);
  });
  window.coexhub = { toast, formJson, csrf };
})();
