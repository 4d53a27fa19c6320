// Generation in the visitor's browser (webapp/browser.py serves what it needs; onnxruntime-web runs the graph).
// The same loop as gpt/generation/decode.py: the prompt in one pass, then one character at a time through the KV cache;
// when the window is full, the cache is rebuilt from the last half window. Sampling as gpt/generation/sampling.py:
// temperature, then top-k, then top-p, one uniform number per character from a seeded generator.
window.gptBrowser = (() => {
  const sessions = new Map(); // graph address -> its session (the file comes once, then from the browser's cache)
  let stopped = false;

  class Fallback extends Error {} // the browser cannot: the server generates instead, and the page says why
  class Refusal extends Error {} // nobody can (an unknown character): said where the text would be

  function seeded(seed) { // mulberry32: small, and the same seed gives the same numbers in any browser
    let a = seed >>> 0;
    return () => {
      a = (a + 0x6d2b79f5) >>> 0;
      let t = Math.imul(a ^ (a >>> 15), 1 | a);
      t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
  }

  // The distribution a character is drawn from, as gpt/generation/sampling.py's ranked_probabilities: temperature, then top-k,
  // then top-p; temperature 0 is the likeliest alone. -> {order, weights, mass}: the kept tokens, most likely first,
  // and their unnormalised weights (probability = weight / mass). sample() draws from it, the follow view shows it.
  function distribution(logits, { temperature, topK, topP }) {
    const V = logits.length;
    if (temperature === 0) {
      let best = 0;
      for (let i = 1; i < V; i++) if (logits[i] > logits[best]) best = i;
      return { order: [best], weights: Float64Array.of(1), mass: 1 };
    }
    const order = Array.from({ length: V }, (_, i) => i).sort((i, j) => logits[j] - logits[i] || i - j);
    const k = topK > 0 ? Math.min(topK, V) : V;
    const probs = new Float64Array(k);
    let total = 0;
    for (let r = 0; r < k; r++) total += (probs[r] = Math.exp((logits[order[r]] - logits[order[0]]) / temperature));
    let kept = 0, cum = 0;
    for (let r = 0; r < k; r++) { // top-p: the smallest set whose probabilities add up to topP (the first always)
      if (topP < 1 && r > 0 && cum >= topP) break;
      cum += probs[r] / total;
      kept = r + 1;
    }
    let mass = 0;
    for (let r = 0; r < kept; r++) mass += probs[r];
    return { order: order.slice(0, kept), weights: probs.subarray(0, kept), mass };
  }

  function sample(logits, opts, random) {
    const u = random(); // drawn for greedy too, as the server draws it: a row's numbers never depend on settings
    const { order, weights, mass } = distribution(logits, opts);
    let target = u * mass;
    for (let r = 0; r < order.length; r++) if ((target -= weights[r]) < 0) return order[r];
    return order[order.length - 1];
  }

  // The follow view: the distribution the newest character was drawn from. -> {drawn, rows: [{char, p}]}, the kept
  // characters, most likely first (the server's view, webapp/insides.py, has the same shape)
  function follow(logits, opts, token, vocab) {
    const { order, weights, mass } = distribution(logits, opts);
    return { drawn: vocab[token], rows: order.map((i, r) => ({ char: vocab[i], p: weights[r] / mass })) };
  }

  // Draw a follow view into #gen-follow: its ten likeliest characters, and the one drawn (also when not among them)
  function showFollow(view, n = 10) {
    const el = document.querySelector("#gen-follow");
    if (!el || !view || !view.rows) return;
    const esc = (t) => t.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
    const seen = (c) => ({ "\n": "⏎", " ": "␣" })[c] ?? c;
    const rows = view.rows.filter((row, r) => r < n || row.char === view.drawn);
    const bars = rows.map(({ char, p }) => {
      const mine = char === view.drawn;
      return `<div class="follow-bar" data-code="${char.codePointAt(0)}" data-p="${p}" style="display:flex;align-items:center;` +
        `gap:8px;${mine ? "font-weight:700" : ""}"><code style="width:1.6em;text-align:center">${esc(seen(char))}</code>` +
        `<span style="flex:1;height:12px;background:var(--border-color-primary,#e5e7eb);border-radius:3px">` +
        `<span style="display:block;height:100%;width:${(100 * p).toFixed(2)}%;border-radius:3px;` +
        `background:${mine ? "var(--color-accent,#f97316)" : "#9ca3af"}"></span></span>` +
        `<span style="width:3.6em;text-align:right;font-variant-numeric:tabular-nums">${p >= 0.001 ? (100 * p).toFixed(1) + "%" : "<0.1%"}</span></div>`;
    }).join("");
    el.innerHTML = `<div id="follow-inner" style="font-size:.9em"><div style="margin-bottom:4px">The newest character, ` +
      `<b><code>${esc(seen(view.drawn))}</code></b>, was drawn from${view.where ? ` (${esc(view.where)})` : ""}:</div>${bars}</div>`;
  }

  // onnxruntime-web runs on this page's thread and its awaits resolve at once: without a pause now and then, the
  // page would neither draw the text nor see a click on Stop until the end. A message port's task is not throttled
  // (a 0 ms timeout waits 4 ms once nested), so a pause every 50 ms costs next to nothing.
  let paused = 0;
  const breathe = () => new Promise((resolve) => {
    if (performance.now() - paused < 50) return resolve();
    const channel = new MessageChannel();
    channel.port1.onmessage = () => { paused = performance.now(); resolve(); };
    channel.port2.postMessage(0);
  });

  let library = null;
  function loadLibrary() { // onnxruntime-web, once, from where the server says (GPT_ORT: base, script, integrity)
    if (!library) {
      library = new Promise((resolve, reject) => {
        const tag = document.createElement("script");
        tag.src = window.GPT_ORT.base + window.GPT_ORT.script;
        if (window.GPT_ORT.integrity) { tag.integrity = window.GPT_ORT.integrity; tag.crossOrigin = "anonymous"; }
        tag.onload = () => (typeof ort === "undefined" ? reject(new Error("it defined nothing")) : resolve());
        tag.onerror = () => reject(new Error(`${tag.src} did not load`));
        document.head.appendChild(tag);
      });
      library.catch(() => { library = null; }); // tried again next time
    }
    return library;
  }

  // The model and the runtime's WebAssembly, kept in this site's Cache Storage: a later visit reads them from disk
  // (the HTTP cache may drop files of this size; a private window keeps them until it closes). Where the page has
  // no Cache Storage (plain http off localhost), they are fetched as usual.
  async function cachedBytes(url, sameKind) {
    const store = typeof caches === "undefined" ? null : await caches.open("gpt-from-scratch").catch(() => null);
    let response = store && (await store.match(url));
    if (!response) {
      response = await fetch(url);
      if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
      if (store) {
        for (const old of await store.keys()) if (sameKind(old.url) && !old.url.endsWith(url)) await store.delete(old);
        await store.put(url, response.clone()).catch(() => {}); // a full quota only costs the next visit a download
      }
    }
    return new Uint8Array(await response.arrayBuffer());
  }

  async function session(info) {
    if (!sessions.has(info.url)) {
      const made = (async () => {
        if (!ort.env.wasm.wasmBinary) {
          const wasm = `${window.GPT_ORT.base}ort-wasm-simd-threaded.wasm`;
          ort.env.wasm.wasmPaths = window.GPT_ORT.base;
          ort.env.wasm.wasmBinary = await cachedBytes(wasm, (u) => u.endsWith("ort-wasm-simd-threaded.wasm"));
        }
        const model = await cachedBytes(info.url, (u) => u.includes(`/browser/model/${info.name}/`));
        return ort.InferenceSession.create(model, { executionProviders: ["wasm"] });
      })();
      sessions.set(info.url, made);
      made.catch(() => sessions.delete(info.url)); // a failed load is tried again next time
    }
    return sessions.get(info.url);
  }

  async function forward(s, info, ids, past) { // -> the last position's logits, and the new past
    const T = ids.length, P = past ? past[0].dims[2] : 0;
    const feeds = {
      input_ids: new ort.Tensor("int64", BigInt64Array.from(ids, BigInt), [1, T]),
      attention_mask: new ort.Tensor("int64", new BigInt64Array(P + T).fill(1n), [1, P + T]),
      position_ids: new ort.Tensor("int64", BigInt64Array.from({ length: T }, (_, i) => BigInt(P + i)), [1, T]),
    };
    const empty = [1, info.n_head, 0, info.head_size];
    for (let i = 0; i < info.n_layer; i++) {
      feeds[`past_key_values.${i}.key`] = past ? past[2 * i] : new ort.Tensor("float32", new Float32Array(0), empty);
      feeds[`past_key_values.${i}.value`] = past ? past[2 * i + 1] : new ort.Tensor("float32", new Float32Array(0), empty);
    }
    const out = await s.run(feeds);
    const present = [];
    for (let i = 0; i < info.n_layer; i++) present.push(out[`present.${i}.key`], out[`present.${i}.value`]);
    const V = info.vocab.length;
    return { logits: out.logits.data.slice((T - 1) * V, T * V), past: present };
  }

  // opts: {name, prompt, maxNew, temperature, topK, topP, seed}; show(text, n, seconds) as it streams;
  // loading(model bytes, runtime bytes) before this page fetches them (a later page gets them from the browser's cache)
  async function generate(opts, show, loading = () => {}) {
    stopped = false;
    let info;
    try {
      info = await (await fetch(`/browser/info/${encodeURIComponent(opts.name)}`)).json();
    } catch (e) {
      throw new Fallback(`the model's details could not be fetched (${e.message})`);
    }
    if (info.reason) throw new Fallback(info.reason);
    refuseUnknown(opts.prompt, info.vocab);
    if (typeof WebAssembly === "undefined") throw new Fallback("this browser cannot run WebAssembly");
    const runtime = typeof ort === "undefined" ? info.runtime_bytes : 0; // its WebAssembly comes with the first model
    try {
      await loadLibrary();
    } catch (e) {
      throw new Fallback(`onnxruntime-web did not load in this browser (${e.message})`);
    }
    let s;
    try {
      if (!sessions.has(info.url)) loading(info.bytes, runtime);
      s = await session(info);
    } catch (e) {
      throw new Fallback(`the model file did not load in this browser (${e.message || e})`);
    }
    let past = null; // the graph's KV cache
    const step = async (ids, fresh) => {
      const out = await forward(s, info, ids, fresh ? null : past);
      past = out.past;
      return out.logits;
    };
    return decode(opts, info.vocab, info.block_size, step, show);
  }

  // A character the model does not know: said where the text would be, by the browser as by the server
  function refuseUnknown(prompt, vocab) {
    const known = new Set(vocab);
    const unknown = [...new Set([...prompt].filter((c) => !known.has(c)))];
    if (unknown.length) {
      const shown = unknown.slice(0, 20).map((c) => `'${c}' (U+${c.codePointAt(0).toString(16).toUpperCase().padStart(4, "0")})`);
      throw new Refusal(`The text contains ${unknown.length} character(s) this model does not know: ${shown.join(", ")}. ` +
        `It only knows the ${vocab.length} characters of the text it was trained on.`);
    }
  }

  // The decode loop, for any model: step(ids, fresh) -> the logits of the character after them, where fresh says
  // the cache starts again from ids, else ids (one token) go on the cache. opts: {prompt, maxNew, temperature, topK,
  // topP, seed}; show(text, n, seconds, follow) as it streams, where follow() is the view of the newest character's
  // distribution (the result has it too). Used for the ONNX graph above and for a run trained in this browser
  // (train_browser.js). Call begin() first, before loading anything: a Stop meanwhile then counts.
  async function decode(opts, vocab, block, step, show) {
    refuseUnknown(opts.prompt, vocab);
    const stoi = new Map(vocab.map((c, i) => [c, i]));
    const rebuild = Math.floor(block / 2), random = seeded(opts.seed);
    let context = opts.prompt ? [...opts.prompt].map((c) => stoi.get(c)) : [stoi.get("\n") ?? 0];
    context = context.slice(-block);
    const start = performance.now();
    let logits = await step(context, true), cached = context.length;
    let text = opts.prompt, n = 0, shown = 0, token = null, last = null;
    const followView = () => (last ? follow(last, opts, token, vocab) : null);
    while (n < opts.maxNew && !stopped) {
      token = sample(logits, opts, random);
      text += vocab[token];
      n += 1;
      context = context.concat([token]).slice(-block);
      last = logits; // what this character was drawn from: the follow view, computed only when the page shows it
      const now = performance.now();
      if (now - shown > 100) { shown = now; show(text, n, (now - start) / 1000, followView); } // 10 updates a second
      if (n === opts.maxNew) break;
      await breathe();
      if (stopped) break;
      if (cached === block) { // no position `block`: start again from the recent half
        logits = await step(context.slice(-rebuild), true);
        cached = Math.min(rebuild, context.length);
      } else {
        logits = await step([token], false);
        cached += 1;
      }
    }
    return { text, n, seconds: (performance.now() - start) / 1000, follow: followView };
  }

  // Stop generating ends the browser's text too (a listener of the page: the button's own event goes to the server)
  document.addEventListener("click", (e) => { if (e.target.closest && e.target.closest("#gen-stop")) stopped = true; }, true);

  const begin = () => { stopped = false; }; // a new text: a Stop from before no longer counts (generate does it too)
  return { generate, begin, decode, distribution, follow, showFollow, Fallback, Refusal };
})();
