// The Train tab's "Train on: this browser" (webapp/train.py): the page drives train_worker.js (a Web Worker,
// TensorFlow.js; docs/browser-training.md) and draws the run as the server's run is drawn: progress, the loss chart,
// samples at each evaluation. Nothing that trains goes to the server: it serves Tiny Shakespeare and the libraries.
// A finished run (its zip: model.safetensors, config.json, metrics.jsonl) is kept in Cache Storage for a reload; the
// Generate tab writes with it ("trained in this browser", in a worker of its own) and a signed-in visitor pushes it.
window.gptTrain = (() => {
  const STORE = "gpt-browser-run", ZIP = "/browser-run/model.zip", VIEW = "/browser-run/view.json";
  let worker = null, ready = null; // one worker a page: closing the tab ends it, and its run with it
  let run = null; // {config, device, start, steps: [[step, loss]], evals, last, state, error}
  let busy = false, zip = null, message = "";
  const escape = (t) => String(t).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
  const number = (x, digits = 0) => x.toLocaleString("en", { minimumFractionDigits: digits, maximumFractionDigits: digits });
  const duration = (s) => (s >= 3600 ? `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`
    : s >= 60 ? `${Math.floor(s / 60)} min ${Math.round(s % 60)} s` : `${s.toFixed(s < 10 ? 1 : 0)} s`);

  // --- the worker: one request at a time, events to the view ---
  const pending = new Map();
  function ask(message, to = worker) {
    const id = Math.random();
    return new Promise((resolve, reject) => {
      pending.set(id, { resolve, reject });
      to.postMessage({ ...message, id });
    });
  }
  function answer({ data }) { // a worker's reply to ask()
    const waiting = pending.get(data.id);
    pending.delete(data.id);
    if (waiting) data.type === "error" ? waiting.reject(new Error(data.message)) : waiting.resolve(data);
  }
  async function backends() { // WebGPU on a real GPU, else WebAssembly (a software adapter is slower than it)
    const adapter = navigator.gpu && (await navigator.gpu.requestAdapter().catch(() => null));
    const info = adapter && (adapter.info || {});
    const software = !adapter || adapter.isFallbackAdapter || /swiftshader|llvmpipe|software/i.test(
      `${info.vendor} ${info.architecture} ${info.description}`);
    // then plain JavaScript, where WebAssembly does not start (a browser that turns it off): slow, but it trains
    return software ? ["wasm", "cpu"] : ["webgpu", "wasm", "cpu"];
  }
  async function initWorker(kinds, onmessage) { // a worker with the first backend of kinds that starts here
    for (const kind of kinds) {
      const w = new Worker(GPT_TFJS.worker);
      w.onmessage = onmessage;
      try {
        return [w, await ask({ type: "init", backend: kind, libraries: GPT_TFJS.libraries }, w)];
      } catch (e) {
        w.terminate();
        if (kind === kinds[kinds.length - 1]) throw e;
      }
    }
  }
  function startWorker() {
    if (!ready) {
      ready = (async () => {
        const onmessage = (message) => (message.data.type === "event" ? event(message.data) : answer(message));
        const [w, state] = await initWorker(await backends(), onmessage);
        worker = w;
        return state;
      })();
      ready.catch(() => { ready = null; });
    }
    return ready;
  }

  // --- the text: Tiny Shakespeare from the app (its checksum checked), or the visitor's file, read here ---
  async function sha256(bytes) {
    const digest = await crypto.subtle.digest("SHA-256", bytes);
    return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
  }
  async function shakespeare() {
    const response = await fetch(GPT_TFJS.data.url, { cache: "force-cache" }); // its address names its content
    if (!response.ok) throw new Error(`Tiny Shakespeare did not come from the app: ${await response.text()}`);
    const bytes = await response.arrayBuffer();
    if ((await sha256(bytes)) !== GPT_TFJS.data.sha256) throw new Error("the Tiny Shakespeare that came failed its sha256 check; try again later");
    return new TextDecoder().decode(bytes);
  }
  // gpt/data.py's checks of a text file, with its messages (tests compare them with the server's)
  async function ownText(file, block_size) {
    if (!file) throw new Error("choose a .txt file first, or choose Tiny Shakespeare");
    const bytes = new Uint8Array(await file.arrayBuffer()), shown = file.name;
    if (!bytes.length) throw new Error(`${shown} is empty: give a text to learn from`);
    const loose = new TextDecoder("utf-8").decode(bytes);
    const bad = loose.indexOf("\ufffd");
    let text = loose;
    try { text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(bytes); } catch {
      const at = new TextEncoder().encode(loose.slice(0, Math.max(bad, 0))).length; // the first byte that is not UTF-8
      throw new Error(`${shown} is not UTF-8 text (byte ${at} cannot be decoded); save it as UTF-8`);
    }
    const distinct = new Set(Array.from(text)).size;
    if (distinct < 5) throw new Error(`${shown} has only ${distinct} distinct character${distinct !== 1 ? "s" : ""}; a text to learn from needs at least 5`);
    const length = Array.from(text).length;
    if (length - Math.floor(0.9 * length) <= block_size) {
      throw new Error(`the text has ${number(length)} characters; with block_size ${block_size} its last 10% (the validation ` +
        `split) must be longer than ${block_size} characters, so give at least ${number(10 * (block_size + 1) + 10)} ` +
        `characters or a smaller block_size`);
    }
    return text;
  }

  // --- Start, Stop, Download ---
  async function start(config, own, file) {
    if (busy) { message = "A run is going in this browser already: Stop it first."; render(); return; }
    busy = true;
    zip = null;
    message = "";
    run = { config, own, device: "", start: null, steps: [], evals: [], last: null, state: "preparing", error: "", log: [] };
    render();
    try {
      const text = own ? await ownText(file, config.block_size) : await shakespeare();
      await startWorker();
      const result = await ask({ type: "train", text, train: config });
      run.state = result.event === "done" ? "finished" : "stopped";
      message = "";  // "a run is going already" no longer holds
      render();
      await keep().catch((e) => { message = `The run is done, but its Download could not be made: ${e.message || e}`; });
    } catch (e) {
      run.state = "failed";
      run.error = e.message || String(e);
    } finally {
      busy = false;
      render();
    }
  }
  function stop() {
    if (!busy || !run || run.state !== "running") return;
    run.state = "stopping"; // the worker ends before its next step, with one last evaluation
    render();
    ask({ type: "stop" });
  }
  function event(e) {
    const { type, ...line } = e;
    run.log.push(line);
    if (e.event === "start") { run.start = e; run.device = e.device; run.state = "running"; }
    if (e.event === "step") { run.steps.push([e.step, e.loss]); run.last = e; }
    if (e.event === "eval") run.evals.push(e);
    render();
  }
  async function library(name) { // fflate, from the app or the CDN with its integrity hash
    if (window.fflate) return window.fflate;
    const lib = GPT_TFJS.libraries[name];
    await new Promise((resolve, reject) => {
      const tag = document.createElement("script");
      tag.src = lib.url;
      if (lib.integrity) { tag.integrity = lib.integrity; tag.crossOrigin = "anonymous"; }
      tag.onload = resolve;
      tag.onerror = () => reject(new Error(`${lib.url} did not load`));
      document.head.appendChild(tag);
    });
    return window.fflate;
  }
  async function keep() { // the weights folder as one zip, kept for a reload and for Download
    const files = await ask({ type: "exportWeights" });
    const { zipSync, strToU8 } = await library("fflate.min.js");
    const metrics = run.log.map((line) => JSON.stringify(line)).join("\n") + "\n"; // gpt/training/log.py's lines
    zip = new Blob([zipSync({ "model.safetensors": new Uint8Array(files["model.safetensors"]),
      "config.json": strToU8(files["config.json"]), "metrics.jsonl": strToU8(metrics) }, { level: 0 })],
    { type: "application/zip" });
    const view = { ...run, log: [], finished_at: Date.now() };
    try {
      const store = await caches.open(STORE);
      await store.put(ZIP, new Response(zip));
      await store.put(VIEW, new Response(JSON.stringify(view)));
    } catch { /* no Cache Storage (plain http off localhost) or no room: this page still has it */ }
  }
  async function restore() { // the last finished run of this browser, after a reload
    try {
      const store = await caches.open(STORE);
      const [z, v] = [await store.match(ZIP), await store.match(VIEW)];
      if (!z || !v || run) return;
      run = await v.json();
      run.restored = true;
      zip = await z.blob();
      render();
    } catch { /* nothing kept */ }
  }
  function download() {
    if (!zip) return;
    const a = document.createElement("a"), when = new Date().toISOString().slice(0, 16).replace(/[-:T]/g, "");
    a.href = URL.createObjectURL(zip);
    a.download = `browser-${when}.zip`;
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 10_000);
  }

  // --- the kept run, used again: generating from it (the Generate tab's "trained in this browser"), pushing it ---
  async function files(kept) { // {name: Uint8Array} of a kept zip: model.safetensors, config.json, metrics.jsonl
    const { unzipSync } = await library("fflate.min.js");
    return unzipSync(new Uint8Array(await kept.arrayBuffer()));
  }
  // a worker of its own holds the kept weights, so that a run training meanwhile is never disturbed
  let writer = null; // {zip, ready: a promise of {config (with its vocab), worker}}
  function writerFor(kept) {
    if (!writer || writer.zip !== kept) {
      if (writer) writer.ready.then(({ worker }) => worker.terminate(), () => {});
      const ready = (async () => {
        const all = await files(kept), config = JSON.parse(new TextDecoder().decode(all["config.json"]));
        const weights = all["model.safetensors"];
        const [w] = await initWorker(["wasm", "cpu"], answer); // small models: WebAssembly, else plain JavaScript
        try {
          await ask({ type: "build", config, vocab: config.vocab,
            safetensors: weights.buffer.slice(weights.byteOffset, weights.byteOffset + weights.byteLength) }, w);
        } catch (e) { w.terminate(); throw e; }
        return { config, worker: w };
      })();
      writer = { zip: kept, ready };
      ready.catch(() => { if (writer && writer.ready === ready) writer = null; }); // tried again
    }
    return writer;
  }
  // opts and show as gptBrowser.generate's: browser.js's decode loop and sampler, the worker's logits (the whole
  // window again at each character: small models, and no second model code to keep right)
  async function generate(opts, show) {
    window.gptBrowser.begin();
    if (!zip) throw new Error("this browser holds no finished or stopped run: train one first (the Train tab, Train on: this browser)");
    const { config, worker: w } = await writerFor(zip).ready;
    let held = []; // the tokens a KV cache would hold now
    const step = async (ids, fresh) => {
      held = fresh ? ids.slice() : held.concat(ids);
      return (await ask({ type: "logits", x: held, B: 1, T: held.length, last: true }, w)).logits;
    };
    return window.gptBrowser.decode(opts, config.vocab, config.block_size, step, show);
  }
  // the kept run's files, sent to this app's upload route: the value of the push's (hidden) files input, which the
  // server checks before anything touches them (webapp/share.py, gpt.sharing.hub.check_upload)
  async function upload() {
    if (!zip) throw new Error("this browser holds no finished or stopped run to push");
    const all = await files(zip), names = Object.keys(all), form = new FormData();
    for (const name of names) form.append("files", new Blob([all[name]]), name);
    const response = await fetch(new URL("gradio_api/upload", location.href), { method: "POST", body: form });
    if (!response.ok) throw new Error(`the upload failed (HTTP ${response.status})`);
    return (await response.json()).map((path, i) => ({ path, orig_name: names[i], size: all[names[i]].length,
      meta: { _type: "gradio.FileData" } }));
  }

  // --- the view: what progress_html, loss_frame and samples_markdown show for a server run ---
  function progress() {
    if (!run) return "<div class='browser-status'>No run in this browser yet. Pick a preset and press <b>Start</b>: it trains here, on your device.</div>";
    const c = run.config, last = run.last, s = last ? last.step : 0, elapsed = last ? last.elapsed : 0;
    const evals = run.evals, best = evals.length ? Math.min(...evals.map((e) => e.val_loss)) : null;
    const timed = c.max_time > 0;
    const done = ["finished", "stopped"].includes(run.state) ? 1 : timed ? Math.min(1, elapsed / c.max_time) : s / Math.max(1, c.max_iters);
    const figures = [timed ? `step <b>${number(s)}</b> · training for ${duration(c.max_time)}` : `step <b>${number(s)}</b> / ${number(c.max_iters)}`];
    if (last) figures.push(`loss <b>${last.loss.toFixed(3)}</b>`);
    if (evals.length > 1) figures.push(`best val ${best.toFixed(3)}`);
    if (last) figures.push(`<b>${number(last.tokens_per_sec)} tokens/s</b>`, `lr ${last.lr.toExponential(2)}`, `elapsed ${duration(elapsed)}`);
    if (last && run.state === "running") {
      const eta = timed ? c.max_time - elapsed : (c.max_iters - s) * (elapsed / Math.max(1, s));
      figures.push(`ETA ${duration(Math.max(0, eta))}`);
    }
    const params = run.start ? `${(run.start.params / 1e3).toFixed(1)}K parameters` : "";
    const kept = "download it as a weights folder (one zip) that <code>GPT.from_pretrained</code> loads.";
    const headline = {
      preparing: "Preparing a run in this browser: the text, then TensorFlow.js…",
      running: `Training <b>in this browser</b> · ${params} · on <b>${escape(run.device)}</b>`,
      stopping: "Stopping after this step…",
      finished: `Finished in this browser${run.restored ? " (kept from before the reload)" : ""}: ${kept}`,
      stopped: `Stopped in this browser${run.restored ? " (kept from before the reload)" : ""}: ${kept}`,
      failed: `<span class='browser-error'>⚠ <b>Not trained:</b> ${escape(run.error)}</span>`,
    }[run.state];
    const settings = `${c.n_layer} layers · ${c.n_head} heads · ${c.n_embd} wide · block ${c.block_size} · batch ${c.batch_size} · ` +
      `dropout ${c.dropout} · AdamW · ${run.own ? "your text (read in this page, never uploaded)" : "Tiny Shakespeare"}` +
      (run.device ? ` · runs on ${escape(run.device)}` : "");
    const button = zip ? "<button id='browser-download' class='lg secondary'>⬇ Download (zip)</button>" : "";
    return `<div class='browser-status'><div>${headline}</div><div class='settings'>${settings}</div>` +
      (run.state === "failed" ? "" : `<progress value='${done.toFixed(4)}' max='1'></progress> <b>${Math.round(done * 100)}%</b>` +
      `<div class='browser-figures'>${figures.join(" · ")}</div>`) + `${button}</div>`;
  }
  function chart() { // train (each batch), train and val at evaluations, the lecture's line: as loss_frame draws them
    const W = 640, H = 280, left = 44, right = 12, top = 12, bottom = 30, colors = GPT_TRAIN.colors;
    const every = run ? Math.ceil(run.steps.length / 600) : 1; // a long run's batches, thinned as the server thins them
    const steps = run ? run.steps.filter((_, i) => i % every === 0 || i === run.steps.length - 1) : [];
    const series = run ? [["train (each batch)", steps], ["train", run.evals.map((e) => [e.step, e.train_loss])],
      ["val", run.evals.map((e) => [e.step, e.val_loss])]] : [];
    const points = series.flatMap(([, p]) => p);
    const maxX = Math.max(100, ...points.map((p) => p[0])), ys = points.map((p) => p[1]).concat([GPT_TRAIN.lecture, Math.log(run && run.start ? run.start.vocab_size : 65)]);
    const lo = Math.floor(Math.min(...ys) * 2) / 2, hi = Math.ceil(Math.max(...ys) * 2) / 2;
    const x = (v) => left + (v / maxX) * (W - left - right), y = (v) => top + (hi - v) / (hi - lo) * (H - top - bottom);
    let svg = "";
    for (let v = lo; v <= hi + 1e-9; v += 0.5) svg += `<line x1='${left}' x2='${W - right}' y1='${y(v)}' y2='${y(v)}' stroke='#e5e7eb'/><text x='${left - 6}' y='${y(v) + 4}' text-anchor='end'>${v.toFixed(1)}</text>`;
    for (let i = 0; i <= 4; i++) svg += `<text x='${x(maxX * i / 4)}' y='${H - 10}' text-anchor='middle'>${number(Math.round(maxX * i / 4))}</text>`;
    svg += `<line x1='${left}' x2='${W - right}' y1='${y(GPT_TRAIN.lecture)}' y2='${y(GPT_TRAIN.lecture)}' stroke='${colors.lecture}' stroke-dasharray='5 4'/>`;
    for (const [name, p] of series) {
      if (p.length) svg += `<polyline fill='none' stroke='${colors[name]}' stroke-width='${name === "val" || name === "train" ? 2 : 1}' points='${p.map(([a, b]) => `${x(a).toFixed(1)},${y(b).toFixed(1)}`).join(" ")}'/>`;
    }
    const legend = [...series.map(([n]) => n), `lecture: ${GPT_TRAIN.lecture}`].map((n) =>
      `<span><i style='background:${colors[n] || colors.lecture}'></i>${n}</span>`).join(" ");
    return `<div class='browser-chart'><div class='browser-legend'><b>Loss (lower is better)</b> ${legend}</div>` +
      `<svg viewBox='0 0 ${W} ${H}' role='img' aria-label='loss chart'>${svg}</svg></div>`;
  }
  function samples() {
    if (!run || !run.evals.length) return "<p><i>Samples appear here at every evaluation: noise first, then something like Shakespeare.</i></p>";
    const e = run.evals, shown = e.length <= 7 ? e.slice(-6) : [e[0], ...e.slice(-6)]; // the first for contrast
    return "<h3>Samples, newest first</h3>" + shown.reverse().map((s) =>
      `<h4 class='browser-sample'>step ${number(s.step)} · val ${s.val_loss.toFixed(3)}</h4><pre>${escape(s.sample.trim())}</pre>`).join("");
  }
  let drawn = 0;
  function render() { // at most 5 times a second: a step event comes every few milliseconds on a small model
    const now = performance.now();
    if (now - drawn < 200 && run && run.state === "running") return void (render.later ||= setTimeout(() => { render.later = null; render(); }, 200));
    drawn = now;
    document.body.classList.toggle("browser-has-run", Boolean(run)); // its view replaces the server's (train.py's CSS)
    document.body.classList.toggle("browser-has-zip", Boolean(zip)); // a kept run: it may be pushed
    const panel = document.querySelector("#browser-run");
    if (!panel) return;
    const view = panel.querySelector(".browser-view") || panel.appendChild(Object.assign(document.createElement("div"), { className: "browser-view" }));
    view.innerHTML = (message ? `<p class='browser-message'>${escape(message)}</p>` : "") + progress() + chart() + samples();
    const d = view.querySelector("#browser-download");
    if (d) d.onclick = download;
    for (const id of ["#browser-start", "#browser-stop"]) {
      const b = document.querySelector(id);
      if (b) b.disabled = id === "#browser-start" ? busy : !(busy && run && run.state === "running");
    }
  }
  // the panel is Gradio's: draw it (a kept run, or the empty view) once it is on the page
  const waiting = setInterval(() => { if (document.querySelector("#browser-run")) { clearInterval(waiting); render(); restore(); } }, 200);
  return { start, stop, download, generate, upload, state: () => ({ busy, run, zip: Boolean(zip) }) };
})();
