// The page's side of webapp/live.py: one stream from the server says when the Train and Ladder tabs' view has
// changed; the tabs then ask Gradio for it (their hidden "live-refresh" buttons). While the server cannot be
// reached the page says so, and when it is back the view is brought up to date.
//
// One stream a browser, not a tab: the tab that holds the "gpt-live" lock holds the stream and passes what it hears
// to the others (a BroadcastChannel); when that tab closes, the next takes the lock. Over HTTP/1.1 (`python app.py`)
// a browser opens at most 6 connections to a server: with a stream each (and Gradio's heartbeat, which the app no
// longer needs: it has no gr.State), the fourth tab of the app never finished loading.
(() => {
  let version = null;
  let lost = false;
  let latest = null; // the holder's last message, for a tab that opens later
  // the tabs' channel, where they can share a stream (an insecure context has no locks: each tab its own stream)
  const channel = "BroadcastChannel" in window && navigator.locks ? new BroadcastChannel("gpt-live") : null;

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

  function heard(message) { // what the stream said, in this tab or in the one that holds it
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
  }

  function lose() {
    lost = true;
    banner(true);
  }

  function listen() { // this tab holds the stream, and tells the others what it hears
    const source = new EventSource(new URL("live", document.baseURI));
    source.onmessage = ({ data }) => {
      latest = JSON.parse(data);
      heard(latest);
      if (channel) channel.postMessage({ message: latest });
    };
    source.onerror = () => {
      if (source.readyState === EventSource.CLOSED) {  // no stream here (refused, or a mounted app without it):
        refresh();  // a slow poll instead
        if (channel) channel.postMessage({ refresh: true });
        setTimeout(listen, 10_000);
        return;
      }
      lose();  // the browser tries again by itself
      if (channel) channel.postMessage({ lost: true });
    };
  }

  function start() {
    if (!channel) return listen();
    channel.onmessage = ({ data }) => {
      if (data.hello) { if (latest) channel.postMessage({ message: latest }); } // a tab that just opened
      else if (data.message) heard(data.message);
      else if (data.lost) lose();
      else if (data.refresh) refresh();
    };
    // held for as long as this page lives: when it closes, the next tab in line listens
    navigator.locks.request("gpt-live", () => new Promise(() => listen()));
    channel.postMessage({ hello: true }); // where things stand now, from the tab that holds the stream
  }

  // refresh: after this page's own Start or Stop, at once, not at the stream's next look; heard: whether this page
  // has heard the stream yet (its own, or through the tab that holds it)
  window.gptLive = { refresh, heard: () => version !== null };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
