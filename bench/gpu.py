"""The GPU proof in one run: the CUDA paths tested, the lecture's model trained to val 1.48, generation, the app.

    python bench/gpu.py --out DIR             # on a CUDA machine: about 8 minutes
    python bench/gpu.py --out DIR --dry-run   # every part on the CPU at toy sizes, in under a minute (in the suite)

On a bare GPU machine (no gradio), bench/gpu.sh installs the wheels bench/gpu_carry.sh brought and runs this;
docs/gpu.md says how. Four parts, each in its own process with its own time limit, so that one failure or hang
still leaves the others' figures; DIR gets gpu.json (the machine, and each part's figures or error), gpu.log
(everything the parts printed) and junit.xml (the tests).
  1. tests: the GPU-relevant tests with GPT_TEST_DEVICE=cuda (the runner's thread with generation from its live
     model, bf16 autocast, fused AdamW and Muon, --compile, exact resume, torchrun over nccl, the engine).
  2. train: tokens/s with and without torch.compile; the `gpu` preset for 20 s of training (compile time apart,
     evaluations included), the seconds until val <= 1.48; then, if time is left, a longer run's best val.
  3. generate: one stream and twenty at once through gpt.generation.engine, float32 and bfloat16 (characters/s each).
  4. app: `python app.py` driven through gradio_client: Start, chart points arriving, Stop keeping the best
     weights, Generate from them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
import serve  # noqa: E402  the app started and waited for, as the tests start it

TARGET_VAL = 1.48  # the lecture's final val
# the tests that exercise what differs on a GPU (test_device.py is written for it; the rest take the device too)
GPU_TESTS = ["tests/test_device.py", "tests/test_trainer.py"]
# seconds each part may take on the GPU (the whole run stays near 8 minutes); a dry run's parts take a few each
LIMITS = {"tests": 110, "train": 180, "generate": 45, "app": 100}  # 7.3 minutes at most
DRY_LIMITS = {"tests": 120, "train": 120, "generate": 60, "app": 120}  # hangs caught, not speed: a busy CI is slow
# the dry run's sizes: the same code at toy scale
TOY = dict(n_layer=2, n_head=2, n_embd=32, block_size=32, batch_size=16, dropout=0.0, eval_iters=2, eval_interval=40,
           sample_length=20, compile=False, dtype="float32")  # compile on a CPU: tests/test_device.py covers it


def machine() -> dict:
    import torch

    info = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
            "cpu_count": os.cpu_count(), "gpu": None}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1),
                    capability=f"{props.major}.{props.minor}", cudnn=torch.backends.cudnn.version(),
                    bf16=torch.cuda.is_bf16_supported())
        try:
            smi = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=20)
            info["driver"] = smi.stdout.strip() or None
        except (OSError, subprocess.TimeoutExpired):
            info["driver"] = None
    return info


# --- part 1: the tests on the device ---

def part_tests(args) -> dict:
    tests = ["tests/test_device.py::test_the_model_on_the_device_computes_what_it_computes_on_the_cpu"] \
        if args.dry_run else GPU_TESTS
    junit = args.out / "junit.xml"
    env = {**os.environ, "GPT_TEST_DEVICE": args.device}
    # as on the GPU machine, which has no pytest-xdist (so the dry run checks that the suite runs without it): no
    # workers, and pytest.ini's addopts (-n 2) left out; its tests are few
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist", "-o", "addopts=",
               f"--junitxml={junit}", *tests]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    print(result.stdout[-6000:], result.stderr[-3000:], sep="\n", flush=True)
    counts = {"passed": 0, "failed": 0, "errors": 0, "skipped": 0}
    failures = []
    if junit.is_file():
        for case in ET.parse(junit).iter("testcase"):
            outcome = next((c.tag for c in case if c.tag in ("failure", "error", "skipped")), "passed")
            counts[{"failure": "failed", "error": "errors"}.get(outcome, outcome)] += 1
            if outcome in ("failure", "error"):
                failures.append(f"{case.get('classname')}::{case.get('name')}")
    return {"ok": result.returncode == 0 and counts["passed"] > 0, "device": args.device, "tests": tests,
            **counts, "failures": failures, "exit_status": result.returncode}


# --- part 2: training ---

def trained(config, folder: Path, target: float | None = None, dry_run: bool = False) -> dict:
    """Train config into folder; what the run measured: tokens/s, compile time, evaluations, time to target.
    A dry run's clock moves 8 ms a reading, so its timed runs take the same steps on any machine, however busy."""
    from gpt.training.trainer import SteadyClock, Trainer

    events = []
    trainer = Trainer(config, folder, callbacks=[events.append], **({"clock": SteadyClock(0.008)} if dry_run else {}))
    result = trainer.run()
    steps = [e for e in events if e["event"] == "step"]
    evals = [(e["step"], round(e["elapsed"], 2), round(e["val_loss"], 4)) for e in events if e["event"] == "eval"]
    # tokens/s over the steps after the first tenth (the first steps warm up kernels and allocators)
    later = steps[len(steps) // 10:]
    tokens = config.batch_size * config.block_size
    rate = (tokens * (later[-1]["step"] - later[0]["step"]) / (later[-1]["elapsed"] - later[0]["elapsed"])
            if len(later) > 1 and later[-1]["elapsed"] > later[0]["elapsed"] else None)
    reached = next(((step, t) for step, t, val in evals if target is not None and val <= target), None)
    return {"steps": result["step"], "seconds": round(result["elapsed"], 2), "best_val": round(result["best_val"], 4),
            "tokens_per_sec": round(rate) if rate else None, "compile_seconds": round(trainer.compile_seconds, 1),
            "evals": evals, "seconds_to_target": reached[1] if reached else None,
            "step_at_target": reached[0] if reached else None,
            "seconds_in_steps": round(sum(s["elapsed"] - p["elapsed"] for p, s in zip(steps, steps[1:])), 2),
            "last_eval_seconds": round(trainer.eval_seconds, 2)}  # an evaluation, its sample and its saves


def part_train(args) -> dict:
    from gpt.training.trainer import TrainConfig

    work = args.work / "train"
    toy = TOY if args.dry_run else {}
    out = {"preset": "gpu", "target_val": args.target, "device": args.device}
    began = time.perf_counter()
    # tokens/s with and without torch.compile, at the preset's shape and batch (a dry run has no compiler to time)
    out["throughput"] = {}
    for compiled in ([False] if args.dry_run else [False, True]):
        config = TrainConfig.from_preset("gpu", **{**toy, "max_iters": 20 if args.dry_run else 200, "eval_interval": 10**6,
                                                   "eval_iters": 1, "sample_length": 0, "compile": compiled,
                                                   "data": args.data, "device": args.device})
        out["throughput"]["compiled" if compiled else "eager"] = trained(config, work / f"speed-{compiled}")
        print(f"throughput compile={compiled}: {out['throughput']}", flush=True)
    # the proof's headline: the preset for its time budget; evaluations count, compiling does not
    config = TrainConfig.from_preset("gpu", **{**toy, "max_time": args.budget, "data": args.data,
                                               "device": args.device})
    out["budget_s"] = args.budget
    out["run"] = trained(config, work / "gpu-run", args.target, args.dry_run)
    out["weights"] = str(work / "gpu-run")
    print(f"timed run: {out['run']}", flush=True)
    # a longer run, if the part's time allows it: what the preset reaches given more
    left = args.limit - (time.perf_counter() - began) - (out["run"]["compile_seconds"] + 15)
    longer = min(120.0, left) if not args.dry_run else 3.0
    if longer >= 2 * args.budget or args.dry_run:
        config = TrainConfig.from_preset("gpu", **{**toy, "max_time": longer, "data": args.data, "device": args.device})
        out["longer"] = {"budget_s": round(longer), **trained(config, work / "gpu-longer", args.target, args.dry_run)}
    reached = out["run"]["seconds_to_target"]
    out["ok"] = True
    out["reached_target"] = reached is not None
    return out


# --- part 3: generation ---

def part_generate(args) -> dict:
    import torch

    from gpt.generation.engine import Engine
    from gpt.sharing.pretrained import GPT

    weights = args.work / "train" / "gpu-run"
    if (weights / "model.safetensors").is_file():
        model, source = GPT.from_pretrained(weights), str(weights)
    else:  # the training part failed: the shipped weights (the same shape), so this part still measures
        model, source = GPT.from_pretrained(ROOT / "weights" / "default"), "weights/default"
    if args.dry_run:
        from gpt import GPTConfig

        model, source = GPT(GPTConfig(vocab_size=model.config.vocab_size, block_size=32, n_layer=2, n_head=2,
                                      n_embd=32), model.vocab), "a toy model"
    chars, crowd = (30, 3) if args.dry_run else (500, 20)
    out = {"weights": source, "device": args.device, "chars": chars, "streams": crowd}
    for dtype in (torch.float32, torch.bfloat16):
        engine = Engine(model.to(args.device, dtype).eval(), max_streams=crowd)

        def read(i, times):
            began = time.perf_counter()
            n = sum(len(c) for c in engine.stream_text("ROMEO:", max_new_tokens=chars, temperature=0.8, seed=i))
            times.append(n / (time.perf_counter() - began))

        read(0, [])  # warm-up: kernels, the cache's buffers
        alone = []
        read(1, alone)
        together = []
        threads = [threading.Thread(target=read, args=(i, together)) for i in range(crowd)]
        began = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - began
        out[str(dtype).removeprefix("torch.")] = {
            "one_stream_chars_per_sec": round(alone[0]),
            "crowd_chars_per_sec_each": round(statistics.median(together)),
            "crowd_chars_per_sec_total": round(crowd * chars / wall),
        }
        print(f"generate {dtype}: {out[str(dtype).removeprefix('torch.')]}", flush=True)
    out["ok"] = True
    return out


# --- part 4: the app ---

def part_app(args) -> dict:
    from gradio_client import Client

    folder = args.work / "app"
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(ROOT / "weights" / "default", folder / "weights" / "default")
    began = time.perf_counter()
    app = serve.start(weights=folder / "weights", env={"TINYSHAKESPEARE_PATH": args.data}, log=folder / "app.log",
                      timeout=600)
    out = {"device": args.device}
    try:
        url = app.url
        client = Client(url, analytics_enabled=False, verbose=False)
        out["start_seconds"] = round(time.perf_counter() - began, 1)
        # the gpu preset at the lecture's shape; a dry run the tiny preset (the gpu preset compiles: a minute on a CPU)
        from gpt.training.trainer import TrainConfig

        preset = "tiny" if args.dry_run else "gpu"
        c = TrainConfig.from_preset(preset)
        t0 = time.perf_counter()
        message = client.predict(
            preset=preset, n_layer=c.n_layer, n_head=c.n_head, n_embd=c.n_embd, block_size=c.block_size,
            batch_size=c.batch_size, learning_rate=c.learning_rate, max_iters=100_000, dropout=c.dropout,
            eval_interval=10 if args.dry_run else 50, seed=1337, text_source="Tiny Shakespeare", text_file=None,
            run_name="proof", minutes=0, api_name="/start_training")
        out["start_message"] = message
        points, status = 3, {}
        deadline = time.perf_counter() + args.limit - 30
        while time.perf_counter() < deadline:
            status = client.predict(api_name="/training_status")
            if len(status["evals"]) >= points or status["state"] not in ("running", "stopping"):
                break
            time.sleep(0.5)
        out["chart_points"] = len(status.get("evals", []))
        out["seconds_to_points"] = round(time.perf_counter() - t0, 1)
        out["device_shown"] = status.get("device")
        out["tokens_per_sec"] = status.get("tokens_per_sec")
        out["val_losses"] = [round(e["val_loss"], 4) for e in status.get("evals", [])]
        t1 = time.perf_counter()
        client.predict(api_name="/stop_training")
        while client.predict(api_name="/training_status")["state"] in ("running", "stopping"):
            time.sleep(0.3)
        out["stop_seconds"] = round(time.perf_counter() - t1, 1)
        final = client.predict(api_name="/training_status")
        out["state"], out["error"] = final["state"], final["error"]
        saved = folder / "weights" / "proof" / "model.safetensors"
        out["best_weights_kept"] = saved.is_file()
        t2 = time.perf_counter()
        text, stats = client.predict("proof", "ROMEO:", 200, 0.8, 40, 1.0, 1, api_name="/generate")
        out["generate_seconds"] = round(time.perf_counter() - t2, 1)
        out["generated"], out["generate_stats"] = text, stats
        out["ok"] = (final["state"] == "stopped" and out["best_weights_kept"] and out["chart_points"] >= points
                     and text.startswith("ROMEO:") and len(text) > 100)
    finally:
        app.stop()
        print((folder / "app.log").read_text()[-3000:], flush=True)
    return out


PARTS = {"tests": part_tests, "train": part_train, "generate": part_generate, "app": part_app}


def run_part(name: str, args, limit: float) -> dict:
    """One part in a process of its own, killed at its limit: its figures, or why there are none."""
    result_file = args.work / f"part-{name}.json"
    result_file.unlink(missing_ok=True)
    command = [sys.executable, __file__, "--part", name, "--out", str(args.out), "--work", str(args.work),
               "--data", args.data, "--device", args.device, "--limit", str(limit), "--budget", str(args.budget),
               "--target", str(args.target)] + (["--dry-run"] if args.dry_run else [])
    began = time.perf_counter()
    with open(args.out / "gpu.log", "a") as log:
        log.write(f"\n===== {name} (limit {limit:.0f} s) =====\n")
        log.flush()
        try:
            proc = subprocess.run(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, timeout=limit)
            status = proc.returncode
        except subprocess.TimeoutExpired:
            status = "timed out"
    seconds = round(time.perf_counter() - began, 1)
    if result_file.is_file():
        return {**json.loads(result_file.read_text()), "seconds": seconds}
    return {"ok": False, "seconds": seconds, "error": f"the part ended ({status}) without figures: see gpu.log"}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python bench/gpu.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="folder for gpu.json, gpu.log and junit.xml")
    parser.add_argument("--dry-run", action="store_true", help="every part on the CPU at toy sizes (under a minute)")
    parser.add_argument("--parts", default=",".join(PARTS), help="which parts, comma-separated (default: all)")
    parser.add_argument("--work", type=Path, help="scratch folder for runs (default: a temporary folder)")
    parser.add_argument("--data", help="Tiny Shakespeare's path (default: $TINYSHAKESPEARE_PATH or the download)")
    parser.add_argument("--device", help="default: cuda, or cpu for a dry run")
    parser.add_argument("--budget", type=float, help="seconds of training for the timed run (default: 20; 4 dry)")
    parser.add_argument("--target", type=float, help="the val to reach (default: 1.48; a dry run's toy: 3.0)")
    parser.add_argument("--part", choices=list(PARTS), help=argparse.SUPPRESS)  # one part, in its own process
    parser.add_argument("--limit", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    args.device = args.device or ("cpu" if args.dry_run else "cuda")
    args.budget = args.budget or (4.0 if args.dry_run else 20.0)
    args.target = args.target or (3.0 if args.dry_run else TARGET_VAL)
    if args.data is None:
        from gpt.data import tiny_shakespeare_path

        args.data = str(tiny_shakespeare_path())
    if args.part:  # inside one part's process
        import torch

        torch.manual_seed(0)
        result = PARTS[args.part](args)
        (args.work / f"part-{args.part}.json").write_text(json.dumps(result, indent=1))
        return 0

    if not args.dry_run:
        import torch

        if not torch.cuda.is_available():
            print("bench/gpu.py: PyTorch sees no CUDA GPU here; --dry-run runs the same parts on the CPU",
                  file=sys.stderr)
            return 2
    args.work = args.work or Path(tempfile.mkdtemp(prefix="gpu-proof-"))
    args.work.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu.log").write_text("")
    limits = DRY_LIMITS if args.dry_run else LIMITS
    report = {"dry_run": args.dry_run, "machine": machine(), "time": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
              "command": " ".join(["python", "bench/gpu.py", *(sys.argv[1:] if argv is None else argv)]),
              "parts": {}}
    began = time.perf_counter()
    for name in args.parts.split(","):
        report["parts"][name] = run_part(name, args, limits[name])
        print(f"{name}: {'ok' if report['parts'][name]['ok'] else 'FAILED'} "
              f"({report['parts'][name]['seconds']} s)", flush=True)
        (args.out / "gpu.json").write_text(json.dumps(report, indent=1))  # after each part: a kill keeps the rest
    report["seconds"] = round(time.perf_counter() - began, 1)
    report["ok"] = all(p["ok"] for p in report["parts"].values())
    (args.out / "gpu.json").write_text(json.dumps(report, indent=1))
    print(f"{'all parts ok' if report['ok'] else 'some parts FAILED'} in {report['seconds']} s; {args.out}/gpu.json")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
