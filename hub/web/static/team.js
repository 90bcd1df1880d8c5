// Team page: the "Copy link" button next to a new invitation link.
document.addEventListener("click", async (event) => {
  const button = event.target.closest("[data-copy]");
  if (!button) return;
  const input = document.querySelector(button.dataset.copy);
  input.select();
  try { await navigator.clipboard.writeText(input.value); }
  catch (e) { document.execCommand("copy"); }
  button.textContent = "Copied";
  if (window.coexhub) window.coexhub.toast("Invitation link copied.");
});
