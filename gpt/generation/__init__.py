"""Generation: the sampler, the decode loop, the KV caches, the precision to generate in (int8, bf16), and the
engine that serves many streams in one batch (in a thread, or in a child process)."""
