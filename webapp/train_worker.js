// Training in the visitor's browser: gpt/model.py's GPT, gpt/training/optim.py's AdamW and gpt/training/trainer.py's schedule and
// clipping, in TensorFlow.js, in a Web Worker (the page stays responsive). webapp/browser.py serves this file and
// says where the libraries are (window.GPT_TFJS); docs/browser-training.md describes the messages.
//
// Same parameter names, shapes and initialisation as our model.safetensors, so what trains here is exported as a
// weights folder that GPT.from_pretrained loads. The token embedding is matMul(oneHot(idx), table), not gather:
// TF.js's WebAssembly backend has no gradient for gather (UnsortedSegmentSum); the result is the same.
"use strict";

let tf = null; // the library, once "init" has loaded it
let model = null; // the model being trained: {config, vocab, names, params (name -> tf.Variable), optimizer}
let run = null; // the training run in progress: {stop}
let state = {}; // what "init" found: backend, threads, adapter

// --- loading the libraries: the app's copy, or the CDN's checked against its integrity hash ---

async function checkedUrl(lib) { // a same-origin address of a library file, checked when it comes from the CDN
  if (!lib.integrity) return new URL(lib.url, self.location.href).href;
  const response = await fetch(lib.url, { integrity: lib.integrity, mode: "cors" });
  if (!response.ok) throw new Error(`${lib.url} did not load (${response.status})`);
  return URL.createObjectURL(await response.blob()); // importScripts cannot check integrity: a checked copy
}

async function loadScript(lib) {
  importScripts(await checkedUrl(lib));
}

const WASM_FILES = ["tfjs-backend-wasm.wasm", "tfjs-backend-wasm-simd.wasm", "tfjs-backend-wasm-threaded-simd.wasm"];

async function init({ backend, libraries, threads }) {
  if (tf) throw new Error("this worker is initialised already: start a new one for another backend");
  await loadScript(libraries["tf.es2017.min.js"]);
  if (backend === "wasm") {
    await loadScript(libraries["tf-backend-wasm.es2017.min.js"]);
    const paths = {};
    for (const name of WASM_FILES) paths[name] = await checkedUrl(libraries[name]);
    self.tf.wasm.setWasmPaths(paths);
    // every core where the page is cross-origin isolated (SharedArrayBuffer); one thread otherwise
    threads = threads || (self.crossOriginIsolated ? navigator.hardwareConcurrency : 1);
    if (threads > 1) {
      self.tf.wasm.setThreadsCount(threads);
      // tfjs-backend-wasm 4.22 caps its pool at navigator.hardwareConcurrency / 2 (it guesses two hardware threads a
      // core), which leaves a 2-core machine one thread: it reads the number once, as the backend starts
      Object.defineProperty(self.navigator, "hardwareConcurrency", { value: 2 * threads, configurable: true });
    }
  } else if (backend === "webgpu") {
    await loadScript(libraries["tf-backend-webgpu.es2017.min.js"]);
  }
  if (!(await self.tf.setBackend(backend))) throw new Error(`this browser cannot run the ${backend} backend`);
  await self.tf.ready();
  tf = self.tf;
  matmul = plainMatmul();
  if (backend === "wasm") channelMatmul = depthwiseMatmul();
  state = { backend: tf.getBackend(), threads: null, adapter: null, crossOriginIsolated: self.crossOriginIsolated };
  if (backend === "wasm") state.threads = tf.wasm.getThreadsCount();
  if (backend === "webgpu") {
    const info = tf.backend().adapterInfo || {};
    state.adapter = [info.vendor, info.architecture].filter(Boolean).join(" ") || "unknown";
  }
  return state;
}

// --- the model: gpt/model.py, parameter by parameter (state_dict order and names) ---

function parameterShapes(c) { // [name, shape, init]: init "normal" (std 0.02), "zeros" or "ones", as _init_weights
  const C = c.n_embd, V = c.vocab_size, specs = [];
  const linear = (name, out, inp) => {
    specs.push([`${name}.weight`, [out, inp], "normal"]); // nn.Linear stores (out, in)
    if (c.bias) specs.push([`${name}.bias`, [out], "zeros"]);
  };
  const norm = (name) => {
    specs.push([`${name}.weight`, [C], "ones"]);
    if (c.bias) specs.push([`${name}.bias`, [C], "zeros"]);
  };
  specs.push(["token_embedding_table.weight", [V, C], "normal"], ["position_embedding_table.weight", [c.block_size, C], "normal"]);
  for (let i = 0; i < c.n_layer; i++) {
    specs.push([`blocks.${i}.sa.qkv.weight`, [3 * C, C], "normal"]); // query, key, value of every head
    linear(`blocks.${i}.sa.proj`, C, C);
    linear(`blocks.${i}.ffwd.net.0`, 4 * C, C);
    linear(`blocks.${i}.ffwd.net.2`, C, 4 * C);
    norm(`blocks.${i}.ln1`);
    norm(`blocks.${i}.ln2`);
  }
  norm("ln_f");
  linear("lm_head", V, C);
  return specs;
}

const CONFIG_FIELDS = ["vocab_size", "block_size", "n_layer", "n_head", "n_embd", "dropout", "bias"];

function build({ config, vocab, seed = 1337, safetensors = null }) {
  if (!tf) throw new Error("send init first");
  for (const key of CONFIG_FIELDS) if (config[key] === undefined) throw new Error(`config lacks ${key}`);
  if (config.n_embd % config.n_head) throw new Error(`n_embd (${config.n_embd}) must be divisible by n_head (${config.n_head})`);
  if (vocab.length !== config.vocab_size) throw new Error(`vocab has ${vocab.length} characters but vocab_size is ${config.vocab_size}`);
  const loaded = safetensors ? readSafetensors(safetensors) : null;
  dispose();
  const specs = parameterShapes(config), params = {};
  specs.forEach(([name, shape, init], i) => {
    let value;
    if (loaded) {
      const t = loaded[name];
      if (!t) throw new Error(`the weights lack ${name}`);
      if (t.shape.join() !== shape.join()) throw new Error(`${name} is (${t.shape}), expected (${shape})`);
      value = tf.tensor(t.data, shape, "float32");
    } else {
      value = init === "normal" ? tf.randomNormal(shape, 0, 0.02, "float32", seed * 1000 + i)
        : init === "ones" ? tf.ones(shape) : tf.zeros(shape);
    }
    params[name] = tf.variable(value, true);
    value.dispose();
  });
  const mask = tf.tidy(() => // the lecture's tril: the future does not talk to the past (0 where allowed)
    tf.linalg.bandPart(tf.ones([config.block_size, config.block_size]), -1, 0).sub(1).mul(1e9));
  model = { config: { ...config }, vocab: [...vocab], names: specs.map((s) => s[0]), params, mask, optimizer: null };
  return { params: specs.reduce((n, [, shape]) => n + shape.reduce((a, b) => a * b, 1), 0) };
}

function dispose() {
  if (!model) return;
  for (const v of Object.values(model.params)) v.dispose();
  if (model.optimizer) for (const t of [...model.optimizer.m, ...model.optimizer.v]) t.dispose();
  if (model.average) for (const t of Object.values(model.average)) t.dispose();
  model.mask.dispose();
  model = null;
}

// x @ w (2-D), whose gradients are plain matMuls too. TF.js's WebAssembly backend sends a 2-D matMul without
// transposes to XNNPACK and every other (transposed or batched) to a scalar loop, several times slower; matMul's own
// gradients are transposed ones. The transposes written out here cost little beside the products.
let matmul = null;
function plainMatmul() {
  return tf.customGrad((x, w, save) => {
    save([x, w]);
    return { value: tf.matMul(x, w), gradFunc: (dy, [x, w]) => [tf.matMul(dy, w.transpose()), tf.matMul(x.transpose(), dy)] };
  });
}

// Per-channel products out[c] = a[c] @ b[c], for a (M, K, c) and b (K, c, N), giving (M, c, N), as one depthwise
// convolution: TF.js's WebAssembly backend runs that on XNNPACK, and a batched matMul on its scalar loop, 5x slower
// for the attention's shapes here. A gradient is such a product too: a's needs three transposes, b's none.
let channelMatmul = null;
function depthwiseMatmul() {
  const product = (a, b) => {
    const [M, K, c] = a.shape, N = b.shape[2];
    return tf.depthwiseConv2d(a.reshape([1, M, K, c]), b.reshape([1, K, c, N]), 1, "valid").reshape([M, c, N]);
  };
  return tf.customGrad((a, b, save) => {
    save([a, b]);
    return {
      value: product(a, b),
      gradFunc: (dy, [a, b]) => {
        const [M, K, c] = a.shape, N = b.shape[2];
        const da = product(dy.transpose([0, 2, 1]), b.transpose([2, 1, 0])).transpose([0, 2, 1]); // dy[c] @ b[c]ᵀ
        // a[c]ᵀ @ dy[c]: the filter runs down a's M rows
        const db = tf.depthwiseConv2d(a.reshape([1, M, K, c]), dy.reshape([M, 1, c, N]), 1, "valid").reshape([K, c, N]);
        return [da, db];
      },
    };
  });
}

const linear = (x, p, name) => { // x @ Wᵀ (+ b): nn.Linear
  const y = matmul(x, p[`${name}.weight`].transpose());
  return p[`${name}.bias`] ? y.add(p[`${name}.bias`]) : y;
};

const layerNorm = (x, p, name) => { // nn.LayerNorm over the channels, eps 1e-5, biased variance as torch
  const { mean, variance } = tf.moments(x, -1, true);
  const y = x.sub(mean).mul(tf.rsqrt(variance.add(1e-5))).mul(p[`${name}.weight`]);
  return p[`${name}.bias`] ? y.add(p[`${name}.bias`]) : y;
};

const dropout = (x, rate, training) => (training && rate > 0 ? tf.dropout(x, rate) : x);

// q, k, v (B, T, nh, hs) -> (B, T, nh, hs): each head's causal self-attention
function attention(q, k, v, mask, training) {
  const [B, T, nh, hs] = q.shape, rate = model.config.dropout;
  if (!channelMatmul) {
    const [qh, kh, vh] = [q, k, v].map((t) => t.transpose([0, 2, 1, 3])); // (B, nh, T, hs)
    const wei = tf.softmax(tf.matMul(qh, kh, false, true).mul(hs ** -0.5).add(mask)); // (B, nh, T, T)
    return tf.matMul(dropout(wei, rate, training), vh).transpose([0, 2, 1, 3]);
  }
  const n = B * nh; // a channel for each head of each example
  const qc = q.transpose([1, 3, 0, 2]).reshape([T, hs, n]); // (T, hs, n)
  const kc = k.transpose([3, 0, 2, 1]).reshape([hs, n, T]); // (hs, n, T): kᵀ, each channel's
  const wei = tf.softmax(channelMatmul(qc, kc).mul(hs ** -0.5).add(mask.reshape([T, 1, T]))); // (T, n, T)
  const vc = v.transpose([1, 0, 2, 3]).reshape([T, n, hs]); // (T, n, hs)
  const y = channelMatmul(dropout(wei, rate, training).transpose([0, 2, 1]), vc); // (T, n, hs)
  return y.reshape([T, B, nh, hs]).transpose([1, 0, 2, 3]);
}

// idx (B*T int32, row by row) -> logits (B*T, V); the same computation as GPTLanguageModel.forward
function forward(p, idx, B, T, training) {
  const c = model.config, C = c.n_embd, nh = c.n_head, hs = C / nh;
  if (T > c.block_size) throw new Error(`context of ${T} tokens is longer than block_size (${c.block_size})`);
  const tok = matmul(tf.oneHot(idx, c.vocab_size).toFloat(), p["token_embedding_table.weight"]); // (B*T, C)
  const pos = p["position_embedding_table.weight"].slice([0, 0], [T, C]); // (T, C)
  let x = tok.reshape([B, T, C]).add(pos).reshape([B * T, C]); // (B*T, C)
  const mask = model.mask.slice([0, 0], [T, T]); // (T, T)
  for (let i = 0; i < c.n_layer; i++) {
    const b = `blocks.${i}`;
    // communication: all heads at once; equivalent to the per-head Head of the lecture
    const qkv = matmul(layerNorm(x, p, `${b}.ln1`), p[`${b}.sa.qkv.weight`].transpose()); // (B*T, 3C)
    const [q, k, v] = tf.split(qkv, 3, 1).map((t) => t.reshape([B, T, nh, hs]));
    const y = attention(q, k, v, mask, training).reshape([B * T, C]); // heads side by side: (B*T, C)
    x = x.add(dropout(linear(y, p, `${b}.sa.proj`), c.dropout, training));
    // computation: each position on its own
    const h = linear(tf.relu(linear(layerNorm(x, p, `${b}.ln2`), p, `${b}.ffwd.net.0`)), p, `${b}.ffwd.net.2`);
    x = x.add(dropout(h, c.dropout, training));
  }
  return linear(layerNorm(x, p, "ln_f"), p, "lm_head"); // (B*T, V)
}

const crossEntropy = (logits, targets) => // mean over positions, as F.cross_entropy
  tf.neg(tf.mean(tf.sum(tf.mul(tf.oneHot(targets, logits.shape[1]), tf.logSoftmax(logits)), 1)));

function batchTensors({ x, y, B, T }) {
  return [tf.tensor1d(Int32Array.from(x), "int32"), y ? tf.tensor1d(Int32Array.from(y), "int32") : null, B, T];
}

// --- AdamW, the schedule and clipping: gpt/training/optim.py and gpt/training/trainer.py ---

function getLr(step, t, progress = null) { // gpt.training.trainer.get_lr: linear warmup, then cosine decay to min_lr
  if (step < t.warmup_iters) return t.learning_rate * (step + 1) / (t.warmup_iters + 1);
  if (progress === null) {
    if (step >= t.max_iters) return t.min_lr;
    progress = (step - t.warmup_iters) / Math.max(1, t.max_iters - t.warmup_iters);
  }
  progress = Math.min(Math.max(progress, 0), 1);
  return t.min_lr + 0.5 * (1 + Math.cos(Math.PI * progress)) * (t.learning_rate - t.min_lr);
}

function optimizer(t) { // torch.optim.AdamW's state: the two moments of every parameter, and the step count
  if (!model.optimizer) {
    const zeros = () => model.names.map((n) => tf.variable(tf.zerosLike(model.params[n]), false));
    model.optimizer = { m: zeros(), v: zeros(), step: 0 };
  }
  return model.optimizer;
}

// one training step on a batch: forward, backward, clip, AdamW. Returns the loss as a tensor (read it when needed)
function trainStep(t, x, y, B, T, lr) {
  const opt = optimizer(t), names = model.names, p = model.params;
  opt.step += 1;
  return tf.tidy(() => {
    const { value, grads } = tf.variableGrads(() => crossEntropy(forward(p, x, B, T, true), y), names.map((n) => p[n]));
    let g = names.map((n) => grads[p[n].name]);
    if (t.grad_clip > 0) { // torch.nn.utils.clip_grad_norm_: the norm of all gradients at once, scaled to at most clip
      // stack, not addN: tfjs-backend-webgpu 4.22's addN of more than 6 tensors adds the first 6 only
      const total = tf.sqrt(tf.stack(g.map((gi) => tf.sum(tf.square(gi)))).sum());
      const coef = tf.minimum(tf.div(t.grad_clip, total.add(1e-6)), 1);
      g = g.map((gi) => gi.mul(coef));
    }
    const [b1, b2] = [t.beta1, t.beta2];
    const stepSize = lr / (1 - b1 ** opt.step), bc2Sqrt = Math.sqrt(1 - b2 ** opt.step); // bias corrections
    names.forEach((n, i) => {
      // decay on matrices and embeddings only (gpt.training.optim.adamw): decaying biases and LayerNorm gains only hurts
      const decay = p[n].rank >= 2 ? t.weight_decay : 0;
      const m = opt.m[i].mul(b1).add(g[i].mul(1 - b1)), v = opt.v[i].mul(b2).add(tf.square(g[i]).mul(1 - b2));
      opt.m[i].assign(m);
      opt.v[i].assign(v);
      const decayed = decay ? p[n].mul(1 - lr * decay) : p[n]; // decoupled weight decay, before the update
      p[n].assign(decayed.sub(m.div(tf.sqrt(v).div(bc2Sqrt).add(1e-8)).mul(stepSize)));
    });
    return value;
  });
}

// --- the training loop: gpt/training/trainer.py's, reporting the same events (step, eval, done/stopped) as messages ---

const EVAL_POINTS = 15, EVAL_SPACING = 4, FIRST_EVAL_ITERS = 4; // as gpt/training/trainer.py

function seeded(seed) { // mulberry32, as browser.js: the same seed gives the same batches in any browser
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// A pause for the worker's message queue: without it a Stop would wait for the run's end. A message port's task is
// not clamped as a nested timeout is.
const breathe = () => new Promise((resolve) => {
  const channel = new MessageChannel();
  channel.port1.onmessage = () => resolve();
  channel.port2.postMessage(0);
});

function characters(text) { // gpt.tokenizer.CharTokenizer.from_text: the distinct characters in code point order
  return [...new Set(Array.from(text))].sort((a, b) => a.codePointAt(0) - b.codePointAt(0));
}

function batch(data, B, T, random) { // gpt.data.TextData.get_batch: B random windows and their next characters
  const x = new Int32Array(B * T), y = new Int32Array(B * T);
  for (let b = 0; b < B; b++) {
    const start = Math.floor(random() * (data.length - T));
    x.set(data.subarray(start, start + T), b * T);
    y.set(data.subarray(start + 1, start + T + 1), b * T);
  }
  return [tf.tensor1d(x, "int32"), tf.tensor1d(y, "int32")];
}

function evalParams() { return model.average || model.params; }

async function estimateLoss(splits, iters, B, T, seed) { // mean loss over iters batches of each split, no dropout
  const random = seeded(seed), out = {};
  for (const split of ["train", "val"]) {
    let total = 0;
    for (let k = 0; k < iters; k++) {
      const [x, y] = batch(splits[split], B, T, random);
      const loss = tf.tidy(() => crossEntropy(forward(evalParams(), x, B, T, false), y));
      total += (await loss.data())[0];
      tf.dispose([x, y, loss]);
    }
    out[split] = total / iters;
  }
  return out;
}

async function sample(length, seed) { // from a newline, as the trainer's samples: one character at a time
  const random = seeded(seed), T = model.config.block_size, ids = [Math.max(0, model.vocab.indexOf("\n"))];
  for (let i = 0; i < length; i++) {
    const context = ids.slice(-T), x = tf.tensor1d(context, "int32");
    const probs = tf.tidy(() => tf.softmax(forward(evalParams(), x, 1, context.length, false).slice([context.length - 1, 0], [1, -1])));
    const p = await probs.data();
    tf.dispose([x, probs]);
    let u = random(), next = p.length - 1;
    for (let j = 0; j < p.length; j++) if ((u -= p[j]) < 0) { next = j; break; }
    ids.push(next);
  }
  return ids.slice(1).map((i) => model.vocab[i]).join("");
}

function updateAverage(decay) { // the weights' moving average (ema): average = decay * average + (1 - decay) * weights
  if (!model.average) {
    model.average = Object.fromEntries(model.names.map((n) => [n, tf.variable(model.params[n].clone(), false)]));
    return;
  }
  tf.tidy(() => { for (const n of model.names) model.average[n].assign(model.average[n].add(model.params[n].sub(model.average[n]).mul(1 - decay))); });
}

async function train({ text, train: t }) {
  if (run) throw new Error("a run is in progress here: stop it first");
  if (!tf) throw new Error("send init first");
  run = { stop: false };
  try {
    const vocab = characters(text), stoi = new Map(vocab.map((c, i) => [c, i]));
    const data = Int32Array.from(Array.from(text), (c) => stoi.get(c)), n = Math.floor(0.9 * data.length);
    const splits = { train: data.subarray(0, n), val: data.subarray(n) };
    if (splits.val.length <= t.block_size) throw new Error(`the text is too short: its last tenth (the val split) must be longer than ${t.block_size} characters`);
    const config = { vocab_size: vocab.length, ...Object.fromEntries(CONFIG_FIELDS.slice(1).map((k) => [k, t[k]])) };
    const params = build({ config, vocab, seed: t.seed }).params;
    const B = t.batch_size, T = t.block_size, tokensPerStep = B * T, random = seeded(t.seed);
    const evalEvery = t.eval_interval || Math.max(1, Math.round(t.max_iters / EVAL_POINTS));
    const logEvery = t.log_every || 1;
    emit({ event: "start", step: 0, max_iters: t.max_iters, max_time: t.max_time, params, vocab_size: vocab.length,
      tokens_per_step: tokensPerStep, device: describe(), config: t });
    const began = performance.now(), elapsed = () => (performance.now() - began) / 1000;
    let step = 0, bestVal = Infinity, lastEval = null, nextEvalAt = 0, evalSeconds = 0, dt = 0, rate = null;
    let pending = [], windowBegan = began;
    const timed = t.max_time > 0;
    const progress = () => (timed ? Math.max(elapsed() / Math.max(1e-9, t.max_time - evalSeconds),
      t.max_iters ? (step - t.warmup_iters) / Math.max(1, t.max_iters - t.warmup_iters) : 0) : null);
    const outOfTime = () => timed && elapsed() + dt + evalSeconds >= t.max_time;
    const logSteps = async () => { // read the pending steps' losses at once: each read waits for the device
      const losses = await Promise.all(pending.map(([, loss]) => loss.data()));
      const now = performance.now();
      dt = (now - windowBegan) / 1000 / pending.length;
      pending.forEach(([s, loss, lr], i) => {
        const value = losses[i][0];
        loss.dispose();
        if (!Number.isFinite(value)) throw new Error(`the loss became ${value} at step ${s}: lower the learning rate`);
        rate = rate === null ? tokensPerStep / dt : 0.9 * rate + 0.1 * tokensPerStep / dt;
        emit({ event: "step", step: s, loss: value, lr, tokens_per_sec: rate, elapsed: elapsed() - (pending.length - 1 - i) * dt });
      });
      pending = [];
    };
    let stopped = false;
    while (true) {
      await breathe(); // a Stop sent meanwhile is seen now
      const stopping = run.stop;
      let done = (Boolean(t.max_iters) || !timed) && step >= t.max_iters || outOfTime();
      const due = timed && !t.eval_interval ? step === 0 || elapsed() >= nextEvalAt : step % evalEvery === 0;
      if (pending.length && (due || done || stopping)) await logSteps();
      if ((due || done || stopping) && lastEval !== step) {
        const evalBegan = performance.now();
        const iters = step === 0 ? Math.min(t.eval_iters, FIRST_EVAL_ITERS) : t.eval_iters;
        const losses = await estimateLoss(splits, iters, B, T, t.seed * 7919 + step);
        const text = t.sample_length ? await sample(t.sample_length, t.seed) : "";
        const improved = losses.val < bestVal;
        if (improved) bestVal = losses.val;
        emit({ event: "eval", step, train_loss: losses.train, val_loss: losses.val, best_val: bestVal, sample: text,
          elapsed: elapsed(), eval_iters: iters });
        evalSeconds = (performance.now() - evalBegan) / 1000;
        lastEval = step;
        nextEvalAt = elapsed() + Math.max(t.max_time / EVAL_POINTS, EVAL_SPACING * evalSeconds);
        if (!done) done = outOfTime(); // time ran out during it: it was the final evaluation (as the trainer)
      }
      if (done || stopping) { stopped = stopping && !done; break; }
      if (!pending.length) windowBegan = performance.now();
      const lr = getLr(step, t, progress());
      const [x, y] = batch(splits.train, B, T, random);
      const loss = trainStep(t, x, y, B, T, lr);
      tf.dispose([x, y]);
      if (t.ema) updateAverage(t.ema);
      step += 1;
      pending.push([step, loss, lr]);
      if (pending.length >= logEvery || step === 1) await logSteps();
    }
    const result = { event: stopped ? "stopped" : "done", step, best_val: bestVal, elapsed: elapsed() };
    emit(result);
    return result;
  } finally {
    run = null;
  }
}

function describe() { // what the run runs on, for the page to say
  return state.backend === "webgpu" ? `WebGPU (${state.adapter})`
    : state.backend === "wasm" ? `WebAssembly (${state.threads} thread${state.threads === 1 ? "" : "s"})`
    : state.backend === "cpu" ? "plain JavaScript (no WebAssembly here: slow)" : state.backend;
}

function emit(event) { self.postMessage({ type: "event", ...event }); }

// --- weights in and out: our model.safetensors (float32, torch's names) and config.json ---

function readSafetensors(buffer) {
  const view = new DataView(buffer), n = Number(view.getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(new Uint8Array(buffer, 8, n))), out = {};
  for (const [name, info] of Object.entries(header)) {
    if (name === "__metadata__") continue;
    if (info.dtype !== "F32") throw new Error(`${name} is ${info.dtype}: only float32 weights load here`);
    const [start, end] = info.data_offsets;
    out[name] = { shape: info.shape, data: new Float32Array(buffer.slice(8 + n + start, 8 + n + end)) };
  }
  return out;
}

function writeSafetensors(tensors) { // [[name, shape, Float32Array]] -> ArrayBuffer, as safetensors' save_file
  const header = { __metadata__: { format: "pt" } };
  let offset = 0;
  for (const [name, shape, data] of tensors) {
    header[name] = { dtype: "F32", shape, data_offsets: [offset, offset + data.byteLength] };
    offset += data.byteLength;
  }
  let json = JSON.stringify(header);
  json += " ".repeat((8 - (json.length % 8)) % 8); // the data starts 8-byte aligned
  const head = new TextEncoder().encode(json), out = new Uint8Array(8 + head.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(head.length), true);
  out.set(head, 8);
  let at = 8 + head.length;
  for (const [, , data] of tensors) {
    out.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), at);
    at += data.byteLength;
  }
  return out.buffer;
}

function configJson(config, vocab) { // gpt.config.config_json's layout: a setting a line, the vocabulary on its own
  const lines = CONFIG_FIELDS.map((k) => `  "${k}": ${JSON.stringify(config[k])}`);
  return `{\n${lines.join(",\n")},\n  "vocab": ${JSON.stringify(vocab)}\n}\n`;
}

async function exportWeights() { // {"model.safetensors": ArrayBuffer, "config.json": text}: a weights folder
  const tensors = [];
  const source = model.average || model.params; // with ema, the average is what evaluations scored
  for (const name of model.names) tensors.push([name, source[name].shape, await source[name].data()]);
  return { "model.safetensors": writeSafetensors(tensors), "config.json": configJson(model.config, model.vocab) };
}

function randomSteps(config, B) { // a fresh model of this shape, and a training step of it on random data
  build({ config, vocab: Array.from({ length: config.vocab_size }, (_, i) => String.fromCodePoint(0x4e00 + i)) });
  const train = { learning_rate: 1e-3, weight_decay: 0.1, beta1: 0.9, beta2: 0.99, grad_clip: 1.0 };
  const random = seeded(1), T = config.block_size;
  const data = Int32Array.from({ length: 10 * B * T }, () => Math.floor(random() * config.vocab_size));
  return async () => {
    const [x, y] = batch(data, B, T, random), loss = trainStep(train, x, y, B, T, 1e-3);
    await loss.data();
    tf.dispose([x, y, loss]);
  };
}

// --- the messages: {id, type, ...} in, {id, type: "result", ...} or {id, type: "error", message} out ---

const handlers = {
  init,
  build,
  async loss({ x, y, B, T, grads = false }) { // the loss of one batch (and its gradients), no update
    const [xt, yt] = batchTensors({ x, y, B, T });
    const names = model.names, p = model.params;
    const out = tf.tidy(() => {
      if (!grads) return { value: crossEntropy(forward(p, xt, B, T, false), yt) };
      return tf.variableGrads(() => crossEntropy(forward(p, xt, B, T, false), yt), names.map((n) => p[n]));
    });
    xt.dispose(); yt.dispose();
    const result = { loss: (await out.value.data())[0] };
    out.value.dispose();
    if (grads) {
      result.grads = {};
      for (const n of names) { result.grads[n] = await out.grads[p[n].name].data(); out.grads[p[n].name].dispose(); }
    }
    return result;
  },
  async logits({ x, B, T, last = false }) { // (B*T*V) float32, eval mode; last: each row's last position only (B*V)
    if (!model) throw new Error("send build first");
    const [xt] = batchTensors({ x, B, T });
    const logits = tf.tidy(() => {
      const all = forward(model.params, xt, B, T, false); // (B*T, V)
      return last ? all.reshape([B, T, -1]).slice([0, T - 1, 0], [B, 1, -1]).reshape([B, -1]) : all;
    });
    const data = await logits.data();
    xt.dispose(); logits.dispose();
    return { logits: data };
  },
  async steps({ batches, train }) { // AdamW steps on the given batches (lr by step, as gpt.training.trainer.get_lr; ema)
    const losses = [];
    for (const batch of batches) {
      const [xt, yt, B, T] = batchTensors(batch);
      const lr = getLr(optimizer(train).step, train);
      const loss = trainStep(train, xt, yt, B, T, lr);
      if (train.ema) updateAverage(train.ema);
      losses.push((await loss.data())[0]);
      loss.dispose(); xt.dispose(); yt.dispose();
    }
    return { losses };
  },
  exportWeights,
  train,
  async measure({ config, batch_size, steps = 3 }) { // seconds a training step of this shape takes here (random data)
    const step = randomSteps(config, batch_size), times = [];
    for (let i = 0; i <= steps; i++) { // the first step compiles kernels: not counted
      const began = performance.now();
      await step();
      if (i > 0) times.push((performance.now() - began) / 1000);
    }
    dispose();
    const median = times.sort((a, b) => a - b)[Math.floor(times.length / 2)];
    return { seconds_per_step: median, tokens_per_sec: (batch_size * config.block_size) / median, device: describe(), ...state };
  },
  async profile({ config, batch_size }) { // where a training step's time goes: milliseconds by kernel, most first
    const step = randomSteps(config, batch_size);
    await step(); // the first step compiles kernels
    const began = performance.now(), info = await tf.profile(step), total = performance.now() - began, byName = {};
    for (const k of info.kernels) { // matMuls by their shapes: which product it is matters
      const key = k.name === "BatchMatMul" ? `${k.name} ${JSON.stringify(k.inputShapes)}` : k.name;
      const ms = await k.kernelTimeMs, e = byName[key] || (byName[key] = { name: key, ms: 0, calls: 0 });
      e.ms += typeof ms === "number" ? ms : 0;
      e.calls += 1;
    }
    dispose();
    return { total_ms: total, kernels: Object.values(byName).sort((a, b) => b.ms - a.ms) };
  },
  stop() { // ends the run between two steps; its "stopped" event and the train message's reply follow
    if (run) run.stop = true;
    return { running: Boolean(run) };
  },
  memory() { return tf.memory(); },
};

self.onmessage = async ({ data }) => {
  const { id, type } = data;
  try {
    if (!handlers[type]) throw new Error(`unknown message type ${type}`);
    const result = await handlers[type](data);
    self.postMessage({ id, type: "result", ...result });
  } catch (error) {
    self.postMessage({ id, type: "error", message: String(error && error.message || error) });
  }
};
