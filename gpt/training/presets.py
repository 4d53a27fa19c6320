"""Training presets: plain data. Each one fills in TrainConfig fields; anything can still be overridden."""

LECTURE_VAL = 1.48  # the validation loss of the lecture's final model (the `lecture` preset): our reference line

PRESETS: dict[str, dict] = {
    # A low val in a few minutes on 2 CPU cores (bf16 autocast where the CPU has it), with `--max-time` or its 4000
    # steps. Chosen by measurement at about a minute's budget (1200 steps of this shape): Muon for the Blocks'
    # matrices is the big win, val 1.585 against AdamW's 1.680 at 2e-3 (1.683 at 4e-3) after 1200 steps; at the
    # same time budget 6 layers (1.615), 192 wide (1.619) and batch 16 (1.590) did no better; a 30-step warmup
    # helps early on. Then the rates, at 950 steps (what 100 s allow; referee val, bench/time_to_quality.py):
    # Muon 0.02 + AdamW 2e-3 1.618, 0.035 + 3.5e-3 1.590, 0.05 + 5e-3 1.597, 0.05 + 2e-3 1.622, 0.035 + 5e-3
    # 1.603, 0.035 + 7e-3 1.613; decaying to 0 instead of a tenth, or block 128 at batch 16, did no better.
    # Longer runs keep the order: 0.02 + 2e-3 against 0.035 + 3.5e-3, 1300 steps 1.572 / 1.554, 2500 steps
    # 1.521 / 1.508 (about 2 and 5 minutes on 2 cores). Shorter runs would take a higher Muon rate, longer ones
    # not: Muon 0.05 against 0.035 (AdamW 3.5e-3) gives 1.805 / 1.843 at 300 steps, 1.664 / 1.667 at 600 and
    # 1.609 / 1.598 at 950 (with the bf16 written-out attention; fixed steps, referee val). Evaluating and keeping
    # an average of the weights (ema 0.95: about the last 20 steps) instead of the weights themselves, in a run of
    # 1150 steps: 1.833 against 1.903 at step 300, 1.707 / 1.764 at 600, 1.627 / 1.643 at 900, 1.566 / 1.573 at
    # the end (0.9 and 0.98 did no better at step 250-300).
    # optimizer auto: Muon only where bf16 is native (torch's Muon works in bf16: emulated, a step took 7x as long
    # on a 2-core AMD EPYC, training.optim.resolve); the rates above suit AdamW alone too (1.680 at 2e-3, 1.683 at 4e-3)
    # eval_iters 15 (not 25): an evaluation cost 3.5 s on that AMD machine, and auto spacing (4x an evaluation)
    # left a one-minute run 4 of them; with 15, 6 (`python -m train --preset cpu --max-time 60`)
    # eval_interval 0: about 15 evaluations whatever the run's length or time budget (gpt.training.trainer.EVAL_POINTS)
    "cpu": dict(
        n_layer=4, n_head=4, n_embd=128, block_size=64, dropout=0.0, bias=False,
        batch_size=32, max_iters=4000, optimizer="auto", muon_lr=0.035, learning_rate=3.5e-3, min_lr=2e-4,
        warmup_iters=30, weight_decay=0.1, beta2=0.99, grad_clip=1.0, eval_interval=0, eval_iters=15, ema=0.95,
    ),
    # The lecture's final gpt.py: 10.8M parameters, constant lr 3e-4, AdamW's default weight decay, no clipping.
    # The lecture reports val 1.48 after 5000 steps (about 15 minutes on an A100).
    "lecture": dict(
        n_layer=6, n_head=6, n_embd=384, block_size=256, dropout=0.2, bias=True,
        batch_size=64, max_iters=5000, learning_rate=3e-4, min_lr=3e-4, warmup_iters=0,
        weight_decay=0.01, beta2=0.999, grad_clip=0.0, eval_interval=500, eval_iters=200,
    ),
    # nanoGPT's config/train_shakespeare_char.py: same size, a warmed-up cosine schedule and clipping.
    "nanogpt-char": dict(
        n_layer=6, n_head=6, n_embd=384, block_size=256, dropout=0.2, bias=False,
        batch_size=64, max_iters=5000, learning_rate=1e-3, min_lr=1e-4, warmup_iters=100,
        weight_decay=0.1, beta2=0.99, grad_clip=1.0, eval_interval=250, eval_iters=200,
    ),
    # The lecture's model (same shape and dropout) trained the way a big GPU wants: bf16 autocast, TF32, flash
    # attention (scaled_dot_product_attention), torch.compile, a batch 4x the lecture's, Muon for the Blocks'
    # matrices (the cpu preset's big win), warmup then cosine decay, and no per-step host synchronisation: losses
    # are read 50 steps at a time (log_every) and each evaluation reads its losses once. Aim: val 1.48 within 20 s
    # of training on one H100 (`--max-time 20s`); the lecture took about 15 minutes on an A100 to get there.
    # NOT YET MEASURED ON A GPU: python bench/gpu.py is the proof, and its figures will decide these settings.
    "gpu": dict(
        n_layer=6, n_head=6, n_embd=384, block_size=256, dropout=0.2, bias=True,
        batch_size=256, max_iters=2000, optimizer="muon", muon_lr=0.03, learning_rate=3e-3, min_lr=3e-4,
        warmup_iters=50, weight_decay=0.1, beta2=0.99, grad_clip=1.0, eval_interval=0, eval_iters=20,
        dtype="bfloat16", compile=True, log_every=50,
    ),
    # For training in a visitor's browser (TensorFlow.js on WebAssembly, one thread: 100-1000x slower than PyTorch).
    # Chosen by measurement, a one-minute run in headless Chromium on a busy 2-core AMD EPYC: this shape took 729
    # steps (about 6,900 tokens/s) to val 2.13 with 14 evaluations; 2 layers x 48 wide at batch 32 took 165 steps
    # to 2.38 with 6. A high learning rate for so few steps; a short sample and 4 batches an evaluation, which would
    # otherwise take half the minute.
    "browser": dict(
        n_layer=2, n_head=4, n_embd=32, block_size=32, dropout=0.0, bias=False,
        batch_size=16, max_iters=2000, learning_rate=1e-2, min_lr=1e-3, warmup_iters=20,
        weight_decay=0.1, beta2=0.99, grad_clip=1.0, eval_interval=0, eval_iters=4, sample_length=80,
    ),
    # For tests and quick demos: trains in seconds, learns enough to show the loss falling.
    "tiny": dict(
        n_layer=2, n_head=2, n_embd=32, block_size=32, dropout=0.0, bias=True,
        batch_size=16, max_iters=100, learning_rate=3e-3, min_lr=3e-4, warmup_iters=10,
        weight_decay=0.1, beta2=0.99, grad_clip=1.0, eval_interval=25, eval_iters=10, sample_length=60,
    ),
}
