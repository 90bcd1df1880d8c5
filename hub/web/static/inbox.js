// coexhub inbox: live updates. Server-sent events from /inbox/stream make the conversation list
// and the open thread refresh (the htmx event "inbox:changed" on <body>). When EventSource is
// missing or keeps failing, window.coexhubInboxPolling turns on the fragments' 5-second polling
// (hx-trigger="... every 5s [window.coexhubInboxPolling]").
(function () {
  "use strict";
  const root = document.querySelector("[data-inbox]");
  if (!root) return;
  const live = root.querySelector("[data-live]");
  const say = (text) => { if (live) live.textContent = text; };
  let timer = null;
  const changed = () => {
    clearTimeout(timer);
    timer = setTimeout(() => document.body.dispatchEvent(new CustomEvent("inbox:changed")), 100);
  };
  function polling(reason) {
    window.coexhubInboxPolling = true;
    say(`Updating every 5 s (${reason}).`);
  }

  if (!("EventSource" in window)) {
    polling("no live stream in this browser");
  } else {
    let failures = 0;
    const source = new EventSource(root.dataset.stream);
    source.addEventListener("open", () => { failures = 0; window.coexhubInboxPolling = false; say("Live"); });
    source.addEventListener("error", () => {
      failures += 1;  // one error each time the server ends a stream (every ~55 s) and it reconnects
      if (source.readyState === EventSource.CLOSED || failures >= 3) polling("live stream unavailable");
    });
    for (const name of ["message", "status", "echoed", "opted_out", "opted_in"]) source.addEventListener(name, changed);
    window.addEventListener("pagehide", () => source.close());
  }

  const thread = document.getElementById("thread");
  const bottom = () => { if (thread) thread.scrollTop = thread.scrollHeight; };
  bottom();
  document.body.addEventListener("htmx:beforeSwap", (event) => {
    if (event.detail.target === thread) thread.dataset.stick = String(thread.scrollHeight - thread.scrollTop - thread.clientHeight < 80);
  });
  document.body.addEventListener("htmx:afterSwap", (event) => {
    if (event.detail.target !== thread) return;
    if (thread.dataset.stick !== "false") bottom();
    // the 24-hour window opened or closed: the reply box changes (unless something is being typed)
    const state = thread.querySelector("[data-window]");
    const reply = document.querySelector("[data-window-state]");
    const typing = reply && Array.from(reply.querySelectorAll("textarea, input:not([type=hidden])")).some((el) => el.value);
    if (state && reply && state.dataset.window !== reply.dataset.windowState && !typing) window.location.reload();
  });
  document.addEventListener("api:done", (event) => {
    if (event.target.matches("form[data-reset]")) event.target.reset();
  });
})();
