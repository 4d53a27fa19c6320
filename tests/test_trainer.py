import json
import math
import threading

import pytest
import torch

from conftest import TEST_DEVICE
from gpt import ConfigError, GPT
from gpt.sharing import weights
from gpt.training.budget import seconds
from gpt.training.trainer import SteadyClock, TrainConfig, Trainer, estimate_loss, get_lr


def tiny(small_text, **overrides) -> TrainConfig:
    steps = {} if "max_time" in overrides else {"max_iters": 40}  # a timed run: its clock alone, unless told
    return TrainConfig.from_preset("tiny", **{"data": str(small_text), **steps, "eval_interval": 10,
                                              "sample_length": 20, "device": TEST_DEVICE, **overrides})


def read_metrics(folder):
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


def test_presets_hold_the_lecture_and_nanogpt_recipes():
    lecture = TrainConfig.from_preset("lecture")
    assert (lecture.n_layer, lecture.n_head, lecture.n_embd, lecture.block_size, lecture.batch_size) == (6, 6, 384, 256, 64)
    assert (lecture.learning_rate, lecture.min_lr, lecture.max_iters, lecture.dropout) == (3e-4, 3e-4, 5000, 0.2)
    nano = TrainConfig.from_preset("nanogpt-char")
    assert (nano.learning_rate, nano.min_lr, nano.warmup_iters, nano.beta2, nano.weight_decay, nano.grad_clip) == \
        (1e-3, 1e-4, 100, 0.99, 0.1, 1.0)
    with pytest.raises(ConfigError, match="unknown preset 'huge'"):
        TrainConfig.from_preset("huge")


@pytest.mark.parametrize("overrides, message", [
    (dict(n_embd=100, n_head=6), r"n_embd \(100\) must be divisible by n_head \(6\)"),
    (dict(min_lr=1.0), r"min_lr \(1.0\) cannot be above learning_rate"),
    (dict(batch_size=0), "batch_size"),
    (dict(learning_rate=0), "learning_rate must be above 0"),
    (dict(dtype="float16"), "dtype"),
    (dict(optimizer="sgd"), "optimizer must be adamw, muon or auto .muon where bf16 is native., not 'sgd'"),
    (dict(optimizer="muon", muon_lr=0), "muon_lr must be above 0"),
    (dict(ema=1.0), r"ema must be 0 \(off\) or a fraction below 1, like 0.95, not 1.0"),
    (dict(ema="high"), "ema must be 0"),
])
def test_impossible_training_settings_are_explained(overrides, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig.from_preset("cpu", **overrides)


def test_learning_rate_warms_up_linearly_then_decays_by_cosine_to_min_lr():
    c = TrainConfig.from_preset("nanogpt-char")
    warmup = [get_lr(s, c) for s in range(c.warmup_iters)]
    assert all(b > a for a, b in zip(warmup, warmup[1:])) and warmup[-1] < c.learning_rate
    assert get_lr(c.warmup_iters, c) == pytest.approx(c.learning_rate)
    middle = (c.warmup_iters + c.max_iters) // 2
    assert get_lr(middle, c) == pytest.approx((c.learning_rate + c.min_lr) / 2)
    decay = [get_lr(s, c) for s in range(c.warmup_iters, c.max_iters + 1)]
    assert all(b <= a for a, b in zip(decay, decay[1:])) and decay[-1] == pytest.approx(c.min_lr)
    lecture = TrainConfig.from_preset("lecture")
    assert {get_lr(s, lecture) for s in (0, 2500, 5000)} == {3e-4}  # the lecture's constant rate


def test_weight_decay_spares_biases_and_layernorms(small_text, tmp_path):
    trainer = Trainer(tiny(small_text), tmp_path)
    decay, no_decay = trainer.optimizer.param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.dim() >= 2 for p in decay["params"]) and all(p.dim() == 1 for p in no_decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(trainer.model.parameters()))


def test_muon_takes_the_blocks_matrices_and_adamw_everything_else(small_text, tmp_path):
    trainer = Trainer(tiny(small_text, optimizer="muon", muon_lr=0.02), tmp_path)
    muon = trainer.optimizer.muon.param_groups[0]["params"]
    names = {id(p): name for name, p in trainer.model.named_parameters()}
    assert sorted(names[id(p)] for p in muon) == sorted(
        name for name, p in trainer.model.named_parameters() if name.startswith("blocks.") and p.dim() == 2)
    assert {"token_embedding_table.weight", "position_embedding_table.weight", "lm_head.weight"} <= \
        {names[id(p)] for g in trainer.optimizer.adamw.param_groups for p in g["params"]}
    assert len(muon) + sum(len(g["params"]) for g in trainer.optimizer.adamw.param_groups) == \
        len(list(trainer.model.parameters()))


def test_a_muon_run_lowers_the_loss_with_both_rates_on_one_schedule(small_text, tmp_path):
    config = tiny(small_text, optimizer="muon", muon_lr=0.02, max_iters=60)
    trainer = Trainer(config, tmp_path)
    events = []
    trainer.callbacks.append(events.append)
    trainer.run()
    vals = [e["val_loss"] for e in events if e["event"] == "eval"]
    assert vals[-1] < vals[0] - 0.8
    adamw_group, muon_group = trainer.optimizer.adamw.param_groups[0], trainer.optimizer.muon.param_groups[0]
    assert muon_group["lr"] / adamw_group["lr"] == pytest.approx(config.muon_lr / config.learning_rate)
    assert adamw_group["lr"] == pytest.approx(get_lr(59, config))  # the rate of the last step


def test_training_lowers_the_loss_reports_events_and_keeps_the_best_weights(small_text, tmp_path):
    events = []
    trainer = Trainer(tiny(small_text, max_iters=60), tmp_path, callbacks=[events.append])
    began = trainer.model.token_embedding_table.weight.detach().clone()  # the model the trainer starts from
    result = trainer.run()
    kinds = [e["event"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "done" and kinds.count("step") == 60
    evals = [e for e in events if e["event"] == "eval"]
    assert [e["step"] for e in evals] == [0, 10, 20, 30, 40, 50, 60]
    assert evals[0]["val_loss"] > 3.5 and evals[-1]["val_loss"] < evals[0]["val_loss"] - 0.8
    assert all(e["sample"] and len(e["sample"]) == 20 for e in evals)
    step = [e for e in events if e["event"] == "step"][-1]
    assert step["tokens_per_sec"] > 0 and step["lr"] > 0 and step["elapsed"] > 0
    assert read_metrics(tmp_path) == events  # metrics.jsonl holds the same events
    best = min(e["val_loss"] for e in evals)
    assert result["best_val"] == best
    end = GPT.from_pretrained(tmp_path)  # the best-val weights load
    assert (tmp_path / "README.md").read_text().count(f"{best:.4f}") >= 1
    assert torch.equal(weights.read_start_embedding(tmp_path), began)  # step 0's table, exactly: the map at step 0
    assert not torch.allclose(end.token_embedding_table.weight, began, atol=1e-3)  # which training then moved


def test_same_seed_same_run(small_text, tmp_path):
    losses = []
    for run in ("a", "b"):
        events = []
        Trainer(tiny(small_text, max_iters=15), tmp_path / run, callbacks=[events.append]).run()
        losses.append([e["loss"] for e in events if e["event"] == "step"])
    assert losses[0] == losses[1]


def stop_at(step, stop):
    def callback(event):
        if event["event"] == "step" and event["step"] == step:
            stop.set()
    return callback


def test_stop_event_ends_the_run_between_steps_and_keeps_the_best_weights(small_text, tmp_path):
    stop, events = threading.Event(), []
    result = Trainer(tiny(small_text, max_iters=1000), tmp_path, stop=stop,
                     callbacks=[stop_at(13, stop), events.append]).run()
    assert result["event"] == "stopped" and result["step"] == 13
    assert events[-2]["event"] == "eval" and events[-2]["step"] == 13  # evaluated where it stopped
    assert (tmp_path / "training_state.safetensors").exists()
    GPT.from_pretrained(tmp_path)


def test_resume_continues_the_same_run_and_the_same_loss_curve(small_text, tmp_path):
    config = tiny(small_text, max_iters=30, dropout=0.1)
    Trainer(config, tmp_path / "straight").run()

    stop = threading.Event()
    Trainer(config, tmp_path / "resumed", stop=stop, callbacks=[stop_at(17, stop)]).run()
    Trainer(config, tmp_path / "resumed", resume=True).run()

    straight, resumed = GPT.from_pretrained(tmp_path / "straight"), GPT.from_pretrained(tmp_path / "resumed")
    for name, tensor in straight.state_dict().items():
        assert torch.equal(resumed.state_dict()[name], tensor), name
    curve = lambda folder: [(e["step"], e["loss"]) for e in read_metrics(folder) if e["event"] == "step"]
    assert curve(tmp_path / "resumed") == curve(tmp_path / "straight")
    start = weights.read_start_embedding(tmp_path / "straight")  # resuming keeps the table of step 0, not step 17's
    assert torch.equal(weights.read_start_embedding(tmp_path / "resumed"), start)
    assert [e["step"] for e in read_metrics(tmp_path / "resumed") if e["event"] == "eval"] == [0, 10, 17, 20, 30]


def test_resume_with_muon_gives_the_weights_of_an_uninterrupted_run(small_text, tmp_path):
    config = tiny(small_text, max_iters=30, dropout=0.1, optimizer="muon", muon_lr=0.02)
    Trainer(config, tmp_path / "straight").run()

    stop = threading.Event()
    Trainer(config, tmp_path / "resumed", stop=stop, callbacks=[stop_at(17, stop)]).run()
    Trainer(config, tmp_path / "resumed", resume=True).run()  # both optimizers' moments come back from the file

    straight, resumed = GPT.from_pretrained(tmp_path / "straight"), GPT.from_pretrained(tmp_path / "resumed")
    for name, tensor in straight.state_dict().items():
        assert torch.equal(resumed.state_dict()[name], tensor), name


def test_with_ema_the_average_is_scored_shown_and_saved_and_resume_carries_it_on(small_text, tmp_path):
    config = tiny(small_text, max_iters=30, ema=0.9)
    straight = Trainer(config, tmp_path / "straight")
    straight.run()
    average, model = straight.average.module.state_dict(), straight.model.state_dict()
    assert any(not torch.equal(average[k], model[k]) for k in model)  # an average, not the weights themselves
    saved = GPT.from_pretrained(tmp_path / "straight").state_dict()  # the best evaluation is the last one here
    assert all(torch.equal(saved[k], average[k]) for k in saved)
    assert straight.snapshot().state_dict().keys() == saved.keys()

    stop = threading.Event()
    Trainer(config, tmp_path / "resumed", stop=stop, callbacks=[stop_at(17, stop)]).run()
    resumed = Trainer(config, tmp_path / "resumed", resume=True)
    resumed.run()  # the average comes back from the file and goes on: the same as never stopping
    assert all(torch.equal(resumed.average.module.state_dict()[k], average[k]) for k in average)


def test_resume_refuses_another_optimizer(small_text, tmp_path):
    Trainer(tiny(small_text, max_iters=5), tmp_path).run()
    with pytest.raises(ConfigError, match="cannot resume a adamw run with optimizer muon"):
        Trainer(tiny(small_text, max_iters=10, optimizer="muon"), tmp_path, resume=True)


def test_resume_refuses_a_different_model(small_text, tmp_path):
    Trainer(tiny(small_text, max_iters=5), tmp_path).run()
    with pytest.raises(ConfigError, match="n_layer"):
        Trainer(tiny(small_text, max_iters=10, n_layer=3), tmp_path, resume=True)


def test_estimate_loss_does_not_disturb_training_randomness(small_text, tmp_path):
    trainer = Trainer(tiny(small_text), tmp_path)
    state = torch.get_rng_state()
    losses = estimate_loss(trainer.model, trainer.data, 5, 8, seed=1)
    assert torch.equal(torch.get_rng_state(), state)
    assert set(losses) == {"train", "val"} and all(math.isfinite(v) for v in losses.values())
    assert trainer.model.training


def test_snapshot_is_a_detached_copy_for_generation(small_text, tmp_path):
    trainer = Trainer(tiny(small_text, max_iters=5), tmp_path)
    trainer.run()
    copy = trainer.snapshot()
    assert not copy.training and copy.vocab == trainer.tokenizer.chars
    with torch.no_grad():
        trainer.model.lm_head.weight.add_(1.0)
    assert not torch.equal(copy.lm_head.weight, trainer.model.lm_head.weight)


def test_a_model_too_big_for_the_machine_is_refused_before_it_is_built(small_text, tmp_path):
    with pytest.raises(ConfigError, match=r"would need about [\d.]+ GB to train"):
        Trainer(tiny(small_text, n_layer=48, n_head=16, n_embd=4096), tmp_path)


def test_the_first_evaluation_uses_a_few_batches_and_the_later_ones_eval_iters(small_text, tmp_path):
    from gpt.training.trainer import FIRST_EVAL_ITERS

    config = TrainConfig.from_preset("tiny", data=str(small_text), max_iters=20, eval_interval=10, eval_iters=50)
    events = []
    Trainer(config, tmp_path / "run", callbacks=[events.append]).run()
    evals = [e for e in events if e["event"] == "eval"]
    assert [(e["step"], e["eval_iters"]) for e in evals] == [(0, FIRST_EVAL_ITERS), (10, 50), (20, 50)]
    assert abs(evals[0]["val_loss"] - math.log(len(GPT.from_pretrained(tmp_path / "run").vocab))) < 0.1  # ~uniform


def test_the_time_estimate_is_measured_once_per_size_and_counts_steps_and_evaluations():
    from gpt.training.estimate import estimate_time

    base = TrainConfig.from_preset("tiny", max_iters=100, eval_interval=50, eval_iters=10)
    guess = estimate_time(base)
    assert guess.step_seconds > 0 and guess.eval_seconds > 0
    longer = estimate_time(TrainConfig.from_preset("tiny", max_iters=200, eval_interval=50, eval_iters=10))
    # the same size: the remembered measurement; 100 more steps and 2 more evaluations
    assert longer.step_seconds == guess.step_seconds
    assert longer.seconds - guess.seconds == pytest.approx(100 * guess.step_seconds + 2 * guess.eval_seconds)
    wider = estimate_time(TrainConfig.from_preset("tiny", n_embd=256, n_head=4, max_iters=100, eval_interval=50,
                                                  eval_iters=10))
    assert wider.step_seconds > guess.step_seconds  # a bigger model takes longer per step, measured
    # a timed run: about as many steps as fit before the deadline, with their evaluations
    timed = estimate_time(TrainConfig.from_preset("tiny", max_time=10, eval_interval=50, eval_iters=10))
    assert timed.seconds == 10 and timed.step_seconds == guess.step_seconds and timed.steps > 0
    run = lambda steps: estimate_time(TrainConfig.from_preset("tiny", max_iters=steps, eval_interval=50,
                                                              eval_iters=10)).seconds
    assert run(timed.steps) <= 10 + guess.eval_seconds and run(timed.steps + 50) > 10


def test_a_step_time_measured_under_load_gives_way_to_a_faster_one_later(monkeypatch):
    """A server measures while visitors generate: that slow figure must not stay for the server's life."""
    from gpt.training import estimate

    timings = iter([(1.0, 0.5, True), (0.1, 0.05, False), (0.3, 0.2, True)])  # busy, then idle, then busy again
    monkeypatch.setattr(estimate, "_measure", lambda *size: next(timings))
    monkeypatch.setattr(estimate, "_measured", {})
    config = TrainConfig.from_preset("tiny", max_iters=100, eval_interval=50, eval_iters=10)
    assert estimate.estimate_time(config).step_seconds == 1.0
    assert estimate.estimate_time(config).step_seconds == 1.0  # remembered: not timed again within the minute
    monkeypatch.setattr(estimate, "REMEASURE_S", 0.0)
    assert estimate.estimate_time(config).step_seconds == 0.1  # timed again: the faster figure
    later = estimate.estimate_time(config)
    assert later.step_seconds == 0.1 and not later.rough  # a slower, rough one later does not undo the calm one


def test_a_step_time_is_the_median_and_a_busy_machine_makes_it_rough(monkeypatch):
    """One step slowed by another program must not move the figure; steps that disagree make it 'rough'."""
    from gpt.training import estimate

    clock = iter(range(10**6))  # every perf_counter() call one second on, and every fourth step 9 s more
    calls = {"n": 0}

    def fake_clock():
        calls["n"] += 1
        return next(clock) + 9 * (calls["n"] // 8)

    monkeypatch.setattr(estimate.time, "perf_counter", fake_clock)
    train, _, rough = estimate._measure(2, 2, 32, 32, 16, True, "cpu", False)
    assert train < 5 and rough  # the median ignores the slow steps, which still mark the figure rough


def test_auto_evaluations_follow_the_run_length_and_the_clock(small_text, tmp_path):
    """eval_interval 0: about EVAL_POINTS evaluations, in a run of steps and in a timed run."""
    from gpt.training.trainer import EVAL_POINTS

    assert TrainConfig.from_preset("tiny", max_iters=300, eval_interval=0).eval_every() == 300 // EVAL_POINTS
    assert TrainConfig.from_preset("tiny", max_iters=3, eval_interval=0).eval_every() == 1
    events = []
    config = TrainConfig.from_preset("tiny", data=str(small_text), max_time=6, eval_interval=0, eval_iters=2,
                                     sample_length=10, max_iters=10**6)
    Trainer(config, tmp_path / "timed", callbacks=[events.append], clock=SteadyClock(tick=0.02)).run()
    evals = [e for e in events if e["event"] == "eval"]
    steps = [e for e in events if e["event"] == "step"]
    assert 8 <= len(evals) <= EVAL_POINTS + 2, [e["elapsed"] for e in evals]  # spaced over the 6 s, not by steps
    gaps = [b["elapsed"] - a["elapsed"] for a, b in zip(evals[1:-2], evals[2:-1])]
    assert min(gaps) >= 6 / EVAL_POINTS * 0.9 and len(steps) > 2 * len(evals)


def test_durations_read_as_seconds_and_nonsense_is_explained():
    assert [seconds(t) for t in ("120", "90s", "2m", "1h", "1m30s", " 1.5m ", 45)] == \
        [120, 90, 120, 3600, 90, 90, 45]
    for text in ("soon", "2 minutes", "-5", "m", -5, True, float("inf")):
        with pytest.raises(ConfigError, match="max_time"):
            seconds(text)
    assert TrainConfig.from_preset("tiny", max_time="2m").max_time == 120
    # the app's minutes: the same rule, in minutes, up to its cap
    assert seconds(1.5, unit=60, most=60, what="Train for") == 90 and seconds("", unit=60) == 0
    with pytest.raises(ConfigError, match="Train for: give 0 .* up to 60 minutes, not 61"):
        seconds(61, unit=60, most=60, what="Train for")


def test_timed_learning_rate_follows_the_clock_to_min_lr_at_the_deadline():
    c = TrainConfig.from_preset("cpu", max_time=60)
    assert get_lr(0, c, progress=0.0) < c.learning_rate / 10  # warmup still counts steps
    assert get_lr(c.warmup_iters, c, progress=0.0) == pytest.approx(c.learning_rate)
    assert get_lr(c.warmup_iters, c, progress=0.5) == pytest.approx((c.learning_rate + c.min_lr) / 2)
    assert c.max_iters == 0 and get_lr(10_000, c, progress=0.5) > c.min_lr  # no step limit: only the clock counts
    assert get_lr(c.warmup_iters, c, progress=1.0) == pytest.approx(c.min_lr)


def test_a_timed_run_stops_on_time_annealed_with_its_best_weights_and_card(small_text, tmp_path):
    config = tiny(small_text, max_time=4.0, eval_interval=50, eval_iters=4)
    assert config.max_iters == 0  # a timed run: the clock alone ends it
    result = Trainer(config, tmp_path, clock=SteadyClock()).run()
    events = read_metrics(tmp_path)
    steps = [e for e in events if e["event"] == "step"]
    assert events[0]["max_time"] == 4.0
    assert result["event"] == "done" and result["step"] > 100  # the clock, not the preset's 100 steps, ended it
    assert steps[-1]["elapsed"] < 4.0 and result["elapsed"] < 4.0 + 1.0  # the final evaluation fits (nearly)
    assert steps[-1]["lr"] < config.min_lr + 0.15 * (config.learning_rate - config.min_lr)  # annealed
    assert events[-2]["event"] == "eval" and events[-2]["step"] == result["step"]  # evaluated at the end
    vals = [e["val_loss"] for e in events if e["event"] == "eval"]
    assert result["best_val"] == min(vals) < vals[0]
    assert "val" in (tmp_path / "README.md").read_text()
    GPT.from_pretrained(tmp_path)


def test_a_run_with_both_a_clock_and_steps_ends_at_the_first_annealed(small_text, tmp_path):
    # what a visitor's capped run is: its steps, and the minutes the owner allows
    config = tiny(small_text, max_time=600.0, max_iters=30, eval_interval=10, eval_iters=2)
    result = Trainer(config, tmp_path).run()
    lrs = [e["lr"] for e in read_metrics(tmp_path) if e["event"] == "step"]
    assert result["event"] == "done" and result["step"] == 30 and result["elapsed"] < 600
    assert lrs[-1] < config.min_lr + 0.05 * (config.learning_rate - config.min_lr)  # annealed by its steps


def test_a_stopped_timed_run_resumes_with_the_time_it_has_left(small_text, tmp_path):
    config = tiny(small_text, max_time=4.0, eval_interval=50, eval_iters=4)
    stop = threading.Event()
    halfway = lambda e: e["event"] == "step" and e["elapsed"] > 1.5 and stop.set()
    first = Trainer(config, tmp_path, stop=stop, callbacks=[halfway], clock=SteadyClock()).run()
    assert first["event"] == "stopped" and 1.5 < first["elapsed"] < 3.5
    result = Trainer(config, tmp_path, resume=True, clock=SteadyClock()).run()
    events = read_metrics(tmp_path)
    assert result["event"] == "done" and result["step"] > first["step"]
    resumed_at = [e for e in events if e["event"] == "start"][-1]
    assert resumed_at["elapsed"] == pytest.approx(first["elapsed"], abs=0.5)  # the clock carries on from there
    assert first["elapsed"] < result["elapsed"] < 4.0 + 1.0
    lrs = [e["lr"] for e in events if e["event"] == "step"]
    assert lrs[-1] < config.min_lr + 0.15 * (config.learning_rate - config.min_lr)
