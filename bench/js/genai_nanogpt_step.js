// genai-nanogpt's training step at our model's shape, timed by its own trainer (bench/browser_train.py bundles
// this with esbuild into one script that sets window.genaiMeasure).
import { TeachableLLM } from "@genai-fi/nanogpt";

// measure({backend, steps, config, batchSize}): {tokens_per_sec, seconds_per_step, parameters, device}, a fresh model
async function measure({ backend, steps, config, batchSize }) {
  await TeachableLLM.selectBackend(backend);
  // v1 without RoPE: learned position embeddings, as ours
  const llm = TeachableLLM.create("char", { modelType: "GenAI_NanoGPT_v1", useRope: false, mlpFactor: 4, ...config });
  await new Promise((ok, fail) => { llm.on("loaded", ok); llm.on("error", fail); }); // its warm-up pass
  let seed = 1; // random tokens, seeded
  const random = () => ((seed = (seed * 16807) % 2147483647) / 2147483647);
  const tokens = Uint16Array.from({ length: 50 * batchSize * config.blockSize },
                                  () => Math.floor(random() * config.vocabSize));
  const ended = new Promise((ok, fail) => {
    llm.training.on("progress", (job) => { if (job.history.length > steps) llm.training.cancel(job.id); });
    llm.training.on("cancelled", (id) => ok(llm.training.getJob(id)));
    llm.training.on("completed", (id) => fail(new Error(`run ${id} ended before ${steps + 1} steps`)));
    llm.training.on("error", (id, error) => fail(error));
  });
  // its trainer logs (and so awaits the loss) once a step when a step outlasts logInterval (milliseconds);
  // gradient clipping: its kernel (Norm2) exists for WebGPU alone
  const options = { method: { type: "pretraining" }, batchSize, logInterval: 1, learningRate: 1e-3, weightDecay: 0.1,
                    beta1: 0.9, beta2: 0.99, ...(backend === "webgpu" ? { clipNorm: 1.0 } : {}) };
  await llm.training.job(options, [tokens], [{ id: "random", name: "random tokens" }]);
  const job = await ended;
  // the first step compiles kernels: not counted; `time` is its log's milliseconds since the previous log
  const times = job.history.slice(1, steps + 1).map((entry) => entry.time / 1000).sort((a, b) => a - b);
  const parameters = llm.getNumParams();
  llm.dispose();
  const median = times[Math.floor(times.length / 2)];
  return { seconds_per_step: median, tokens_per_sec: (batchSize * config.blockSize) / median, parameters,
           device: await describe(backend) };
}

async function describe(backend) { // which device runs it: here WebGL and WebGPU are SwiftShader
  if (backend === "webgpu") {
    const info = (await navigator.gpu.requestAdapter()).info;
    return `WebGPU (${info.vendor} ${info.architecture})`;
  }
  if (backend === "webgl") {
    const gl = document.createElement("canvas").getContext("webgl2");
    return `WebGL (${gl.getParameter(gl.getExtension("WEBGL_debug_renderer_info").UNMASKED_RENDERER_WEBGL)})`;
  }
  return "plain JS (cpu)";
}

window.genaiMeasure = measure;
