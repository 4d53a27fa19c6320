"""The paths that change on a GPU, run on the device the suite is pointed at: GPT_TEST_DEVICE (default cpu).

    GPT_TEST_DEVICE=cuda python -m pytest tests/test_device.py tests/test_trainer.py

bench/gpu.py runs these on CUDA as the first part of the GPU proof; CI runs them on the CPU. Each compares the
device against itself or against the CPU, so that a result on either is a real check.
"""

import json
import subprocess
import sys
import threading
import time

import pytest
import torch

from conftest import ROOT, VOCAB, small_gpt
from gpt import GPT
from gpt.sharing import weights
from gpt.generation.decode import generate_text
from gpt.generation.engine import Engine
from gpt.generation.kv_cache import KVCache
from gpt.training.optim import build_optimizer
from gpt.training.background import TrainingRunner
from gpt.training.trainer import TrainConfig, Trainer


def tiny(small_text, device, **overrides) -> TrainConfig:
    return TrainConfig.from_preset("tiny", **{"data": str(small_text), "max_iters": 30, "eval_interval": 10,
                                              "sample_length": 20, "device": device, **overrides})


@pytest.fixture
def full_float32():
    """float32 matmuls in full precision while the test runs: a CUDA trainer switches on TF32 for the process."""
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    yield
    torch.set_float32_matmul_precision(before)


def test_the_model_on_the_device_computes_what_it_computes_on_the_cpu(device, full_float32):
    model = small_gpt(seed=1, weight_std=0.1)
    idx = torch.randint(len(VOCAB), (3, 16), generator=torch.Generator().manual_seed(0))
    expected, _ = model(idx)
    on_device = small_gpt(seed=1, weight_std=0.1).to(device)
    logits, _ = on_device(idx.to(device))
    assert logits.device.type == torch.device(device).type
    torch.testing.assert_close(logits.cpu(), expected, atol=2e-4, rtol=2e-4)  # other kernels' rounding, not bugs

    # decoding through the KV cache gives the last position's logits of the full forward
    cache = KVCache(on_device.config, 3, torch.device(device), torch.float32)
    on_device(idx[:, :10].to(device), cache=cache)
    for t in range(10, 16):
        step, _ = on_device(idx[:, t:t + 1].to(device), cache=cache)
        torch.testing.assert_close(step[:, -1].cpu(), expected[:, t], atol=2e-4, rtol=2e-4)


def test_bf16_autocast_training_tracks_float32_on_the_device(device):
    losses = {}
    for dtype in (torch.float32, torch.bfloat16):
        model = small_gpt(seed=2).to(device).train()
        optimizer = build_optimizer(model, "adamw", 3e-3, 0.0, 0.0, (0.9, 0.99), fused=device.startswith("cuda"))
        g = torch.Generator().manual_seed(0)
        x = torch.randint(len(VOCAB), (8, 17), generator=g).to(device)
        inputs, targets = x[:, :-1].contiguous(), x[:, 1:].contiguous()
        curve = []
        for _ in range(30):  # one batch learned by heart: the loss must fall in both precisions
            with torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
                _, loss = model(inputs, targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            curve.append(loss.item())
        losses[dtype] = curve
    assert losses[torch.bfloat16][-1] < losses[torch.bfloat16][0] - 1.0
    assert abs(losses[torch.bfloat16][0] - losses[torch.float32][0]) < 0.02  # the same start, rounded to bf16
    assert abs(losses[torch.bfloat16][-1] - losses[torch.float32][-1]) < 0.15


@pytest.mark.parametrize("optimizer", ["adamw", "muon"])
def test_the_trainer_learns_on_the_device_with_each_optimizer(small_text, tmp_path, device, optimizer):
    """AdamW (fused on CUDA) and Muon, bf16 autocast, losses read 7 steps at a time: the loop a GPU runs."""
    config = tiny(small_text, device, optimizer=optimizer, muon_lr=0.02, dtype="bfloat16", log_every=7)
    trainer = Trainer(config, tmp_path / optimizer)
    assert trainer.model.lm_head.weight.device.type == torch.device(device).type
    result = trainer.run()
    events = [json.loads(line) for line in (tmp_path / optimizer / "metrics.jsonl").read_text().splitlines()]
    steps = [e["step"] for e in events if e["event"] == "step"]
    assert steps == list(range(1, 31))  # every step logged, in order, though read in batches
    kinds = [e["event"] for e in events]
    assert kinds.index("eval", 2) > kinds.index("step") and kinds[-1] == "done"
    vals = [e["val_loss"] for e in events if e["event"] == "eval"]
    assert vals[-1] < vals[0] - 0.5 and result["best_val"] == min(vals)
    GPT.from_pretrained(tmp_path / optimizer)


def test_compiled_training_learns_as_eager_does(small_text, tmp_path, device):
    eager = Trainer(tiny(small_text, device, max_iters=20, dtype="float32"), tmp_path / "eager").run()
    compiled = Trainer(tiny(small_text, device, max_iters=20, dtype="float32", compile=True), tmp_path / "compiled")
    assert compiled.train_model is not compiled.model  # torch.compile's module trains; the model is saved
    result = compiled.run()
    assert compiled.compile_seconds > 0  # compiled before the clock started: the run's seconds are training
    assert result["best_val"] == pytest.approx(eager["best_val"], abs=0.02)


def test_a_resumed_run_is_the_uninterrupted_run(small_text, tmp_path, device):
    """Exactly on a CPU. A GPU's kernels may not repeat their last bits run to run (atomics in attention's
    backward): there the resumed run is as close to the straight one as a second straight run is."""
    config = tiny(small_text, device, max_iters=24, dropout=0.1, optimizer="muon", muon_lr=0.02)
    Trainer(config, tmp_path / "straight").run()
    Trainer(config, tmp_path / "again").run()
    stop = threading.Event()

    def stop_at(event):
        if event["event"] == "eval" and event["step"] == 10:
            stop.set()

    Trainer(config, tmp_path / "resumed", stop=stop, callbacks=[stop_at]).run()
    Trainer(config, tmp_path / "resumed", resume=True).run()
    straight, again, resumed = (GPT.from_pretrained(tmp_path / n).state_dict() for n in ("straight", "again", "resumed"))
    noise = max((straight[k] - again[k]).abs().max().item() for k in straight)
    gap = max((straight[k] - resumed[k]).abs().max().item() for k in straight)
    if device == "cpu":
        assert noise == 0 and gap == 0
    else:
        assert gap <= 4 * noise + 1e-6, (gap, noise)


def test_the_runner_trains_in_its_thread_while_another_generates_from_the_live_model(small_text, tmp_path, device):
    runner = TrainingRunner(tmp_path)
    runner.start(tiny(small_text, device, max_iters=100_000, eval_interval=50), "live")
    texts, errors = [], []

    def visitor():
        try:
            while len(texts) < 3:
                if runner.status()["step"] > 0:
                    model = runner.snapshot().to(device)  # a copy: training goes on meanwhile
                    texts.append(generate_text(model, "ROMEO:", max_new_tokens=30, seed=len(texts))[0])
                time.sleep(0.05)
        except Exception as e:  # noqa: BLE001  reported below, in the test's thread
            errors.append(e)

    thread = threading.Thread(target=visitor)
    thread.start()
    thread.join(timeout=120)
    step_while_generating = runner.status()["step"]
    runner.stop()
    deadline = time.time() + 60
    while runner.running and time.time() < deadline:
        time.sleep(0.1)
    assert not errors and len(texts) == 3
    assert all(len(t) == 30 for t in texts)  # the new characters after the prompt
    status = runner.status()
    assert status["state"] == "stopped" and status["step"] >= step_while_generating > 0
    GPT.from_pretrained(tmp_path / "live")  # Stop kept the best weights


def test_the_engine_on_the_device_streams_what_the_sampler_writes(device):
    model = small_gpt(seed=3, weight_std=0.3).to(device)
    alone = generate_text(model, "ROMEO:", max_new_tokens=40, temperature=0.9, top_k=20, seed=7)[0]
    engine = Engine(model, max_streams=8)
    crowd = {}

    def read(seed):
        crowd[seed] = "".join(engine.stream_text("ROMEO:", max_new_tokens=40, temperature=0.9, top_k=20, seed=seed))

    readers = [threading.Thread(target=read, args=(seed,)) for seed in (7, 8, 9)]  # three streams in one batch
    for r in readers:
        r.start()
    for r in readers:
        r.join(timeout=120)
    assert crowd[7] == alone  # a seed's text (after its prompt), alone or in a crowd served by the engine
    assert len({crowd[7], crowd[8], crowd[9]}) == 3


def test_weights_saved_from_the_device_load_back_on_it(tmp_path, device):
    model = small_gpt(seed=4, weight_std=0.1).to(device)
    weights.save_weights(model, tmp_path / "w")
    loaded = GPT.from_pretrained(tmp_path / "w", map_location=device)
    assert loaded.lm_head.weight.device.type == torch.device(device).type
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name


def test_torchrun_with_one_process_trains_over_the_devices_backend(small_text, tmp_path, device):
    """torchrun always trains with DistributedDataParallel, one process too: nccl on CUDA, gloo on the CPU."""
    out = tmp_path / "ddp"
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1",
                             "-m", "train", "--preset", "tiny", "--data", str(small_text), "--out", str(out),
                             "--max-iters", "20", "--eval-interval", "10", "--device", device],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    start = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    assert start["world_size"] == 1 and start["backend"] == ("nccl" if device.startswith("cuda") else "gloo")
    GPT.from_pretrained(out)
