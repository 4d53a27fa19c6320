// The page's side of webapp/live.py: one stream from the server says when the Train and Ladder tabs' view has
// changed; the tabs then ask Gradio for it (their hidden "live-refresh" buttons). While the server cannot be
// reached the page says so, and when it is back the view is brought up to date.
(() => {
  let version = null;
  let lost = false;

  function refresh() {
    document.querySelectorAll("button.live-refresh, .live-refresh button").forEach((button) => button.click());
  }

  function banner(show) {
    let note = document.getElementById("gpt-lost");
    if (!note && show) {
      note = document.createElement("div");
      note.id = "gpt-lost";
      note.setAttribute("role", "status");
      note.textContent = "Lost the server: trying again every few seconds…";
      note.style.cssText = "position: fixed; top: 0; left: 0; right: 0; z-index: 1000; padding: 6px 12px; " +
        "background: #fef3c7; color: #92400e; text-align: center; font-size: 0.95em;";
      document.body.appendChild(note);
    }
    if (note) note.style.display = show ? "block" : "none";
  }

  function listen() {
    const source = new EventSource(new URL("live", document.baseURI));
    source.onmessage = ({ data }) => {
      const message = JSON.parse(data);
      const back = lost;
      if (lost) {
        lost = false;
        banner(false);
      }
      const changed = version !== null && message.version !== version;
      version = message.version;
      if (changed || back) refresh();  // the first message only says where things stand: the page loaded that
      // a live run's progress line, every second, for every viewer at once (the chart comes every few seconds)
      const line = document.querySelector("#train-progress .status");
      if (message.progress && line && line.closest(".server-view")) line.outerHTML = message.progress;
    };
    source.onerror = () => {
      if (source.readyState === EventSource.CLOSED) {  // no stream here (refused, or a mounted app without it):
        refresh();  // a slow poll instead
        setTimeout(listen, 10_000);
        return;
      }
      lost = true;  // the browser tries again by itself
      banner(true);
    };
  }

  window.gptLive = { refresh };  // after this page's own Start or Stop: at once, not at the stream's next look
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", listen);
  else listen();
})();
