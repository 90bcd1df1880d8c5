// Connectors pages: after an install, go to the installation's page (webhook URL, setup steps);
// "Copy" buttons copy the input they name.
(function () {
  "use strict";
  document.addEventListener("api:done", (event) => {
    const form = event.target;
    const url = form.dataset && form.dataset.installedUrl;
    if (url && event.detail && event.detail.id) window.location.assign(url.replace("__ID__", encodeURIComponent(event.detail.id)));
  });
  // A 422's field errors also show under each input (config[NAME] or NAME), marked aria-invalid.
  document.addEventListener("api:error", (event) => {
    const form = event.target;
    form.querySelectorAll(".field-error").forEach((el) => el.remove());
    form.querySelectorAll("[aria-invalid]").forEach((el) => el.removeAttribute("aria-invalid"));
    const fields = (event.detail && event.detail.fields) || {};
    const flat = Object.assign({}, fields, typeof fields.config === "object" && !Array.isArray(fields.config) ? fields.config : {});
    for (const [name, problems] of Object.entries(flat)) {
      const input = form.querySelector(`[name="config[${name}]"]`) || form.querySelector(`[name="${name}"]`);
      if (!input || Array.isArray(problems) === false && typeof problems !== "string") continue;
      const note = Object.assign(document.createElement("small"), { className: "field-error", id: `${input.id}-error`,
        textContent: [].concat(problems).join(" ") });
      input.setAttribute("aria-invalid", "true");
      input.setAttribute("aria-describedby", `${input.getAttribute("aria-describedby") || ""} ${note.id}`.trim());
      (input.closest(".field") || input.parentElement).appendChild(note);
    }
  });
  document.addEventListener("click", (event) => {
    const button = event.target.closest("[data-copy]");
    if (!button) return;
    const input = document.querySelector(button.dataset.copy);
    input.select();
    const done = () => window.coexhub && window.coexhub.toast("Copied.");
    if (navigator.clipboard && window.isSecureContext) navigator.clipboard.writeText(input.value).then(done, () => {});
    else { document.execCommand("copy"); done(); }
  });
})();
