"""Training presets: plain data. Each one fills in TrainConfig fields; anything can still be overridden.

Why each setting is what it is, with the runs that chose it: bench/README.md, "How the presets were chosen".
"""

LECTURE_VAL = 1.48  # the validation loss of the lecture's final model (the `lecture` preset): our reference line

PRESETS: dict[str, dict] = {
    # A low val in a few minutes on a CPU: Muon for the Blocks' matrices where bf16 is native (auto), higher rates,
    # a moving average of the weights, about 15 evaluations whatever the run's length (eval_interval 0)
    "cpu": dict(
        n_layer=4, n_head=4, n_embd=128, block_size=64, dropout=0.0, bias=False,
        batch_size=32, max_iters=4000, optimizer="auto", muon_lr=0.035, learning_rate=3.5e-3, min_lr=2e-4,
        warmup_iters=30, weight_decay=0.1, beta2=0.99, grad_clip=1.0, eval_interval=0, eval_iters=15, ema=0.95,
    ),
    # The lecture's final gpt.py: 10.8M parameters, constant lr 3e-4, AdamW's default weight decay, no clipping;
    # val 1.48 after 5000 steps (about 15 minutes on an A100)
    "lecture": dict(
        n_layer=6, n_head=6, n_embd=384, block_size=256, dropout=0.2, bias=True,
        batch_size=64, max_iters=5000, learning_rate=3e-4, min_lr=3e-4, warmup_iters=0,
        weight_decay=0.01, beta2=0.999, grad_clip=0.0, eval_interval=500, eval_iters=200,
    ),
    # nanoGPT's config/train_shakespeare_char.py: same size, a warmed-up cosine schedule and clipping
    "nanogpt-char": dict(
        n_layer=6, n_head=6, n_embd=384, block_size=256, dropout=0.2, bias=False,
        batch_size=64, max_iters=5000, learning_rate=1e-3, min_lr=1e-4, warmup_iters=100,
        weight_decay=0.1, beta2=0.99, grad_clip=1.0, eval_interval=250, eval_iters=200,
    ),
    # The lecture's model as a big GPU wants it: bf16, torch.compile, a 4x batch, Muon, losses read 50 steps at a
    # time (log_every); aim: val 1.48 in 20 s on one H100, not yet measured (python bench/gpu.py)
    "gpu": dict(
        n_layer=6, n_head=6, n_embd=384, block_size=256, dropout=0.2, bias=True,
        batch_size=256, max_iters=2000, optimizer="muon", muon_lr=0.03, learning_rate=3e-3, min_lr=3e-4,
        warmup_iters=50, weight_decay=0.1, beta2=0.99, grad_clip=1.0, eval_interval=0, eval_iters=20,
        dtype="bfloat16", compile=True, log_every=50,
    ),
    # For training in a visitor's browser (TensorFlow.js on WebAssembly, about an eighth of PyTorch's speed on a CPU):
    # small, a high learning rate for few steps, short samples and evaluations
    "browser": dict(
        n_layer=2, n_head=4, n_embd=32, block_size=32, dropout=0.0, bias=False,
        batch_size=16, max_iters=2000, learning_rate=1e-2, min_lr=1e-3, warmup_iters=20,
        weight_decay=0.1, beta2=0.99, grad_clip=1.0, eval_interval=0, eval_iters=4, sample_length=80,
    ),
    # For tests and quick demos: trains in seconds, learns enough to show the loss falling
    "tiny": dict(
        n_layer=2, n_head=2, n_embd=32, block_size=32, dropout=0.0, bias=True,
        batch_size=16, max_iters=100, learning_rate=3e-3, min_lr=3e-4, warmup_iters=10,
        weight_decay=0.1, beta2=0.99, grad_clip=1.0, eval_interval=25, eval_iters=10, sample_length=60,
    ),
}

# what the app's Preset menu says of each, in a few words
ABOUT = {"browser": "small, for training in a browser", "cpu": "small and quick, made for a CPU",
         "gpu": "the lecture's model, trained fast on a CUDA GPU", "lecture": "the lecture's final model and recipe",
         "nanogpt-char": "nanoGPT's recipe at the lecture's size", "tiny": "a toy, seconds"}
BROWSER_PRESETS = ["browser", "tiny"]  # what trains far enough in a minute of WebAssembly (bench/README.md)
