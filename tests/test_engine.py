"""The generation engine: many streams in one batch, each exactly the text it would be alone."""

import itertools
import threading

import pytest
import torch

from gpt import GPT, UnknownCharactersError
from gpt.generation import engine as engine_module
from gpt.generation.engine import Engine, engine_for, use_threads, with_threads
from gpt.generation.decode import Batch, Stream, encode_prompt, stream_text
from gpt.generation.kv_cache import RowCache
from gpt.generation.precision import inference_model, precision

from conftest import ROOT

TEXT = ("First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\nFirst Citizen:\n"
        "You are all resolved rather to die than to famish?\n\nAll:\nResolved. resolved.\n\nFirst Citizen:\n"
        "First, you know Caius Marcius is chief enemy to the people.\n")
SETTINGS = [dict(temperature=0.0), dict(temperature=1.0), dict(temperature=0.8, top_k=10),
            dict(temperature=1.2, top_p=0.9), dict(temperature=0.7, top_k=20, top_p=0.95)]


@pytest.fixture(scope="module", params=["float32", "int8", "bfloat16"])
def model(request):
    """The shipped weights as the app generates with them (int8 on CPUs with native bf16, bf16 on CUDA) and in
    float32."""
    return inference_model(GPT.from_pretrained(ROOT / "weights" / "default"), request.param)


def specs(n):
    """n requests: prompts of 1 to 200 characters (past block_size 128), every kind of setting, most of them
    long enough to fill the window and rebuild the cache, joining at different steps."""
    g = torch.Generator().manual_seed(7)
    out = []
    for i in range(n):
        length = [1, 5, 40, 127, 128, 200][i % 6]
        start = int(torch.randint(0, len(TEXT) - min(length, len(TEXT) - 1), (1,), generator=g))
        prompt = (TEXT * 2)[start:start + length]
        out.append(dict(prompt=prompt, max_new_tokens=[70, 20, 150, 40][i % 4], seed=100 + i,
                        joins=int(torch.randint(0, 30, (1,), generator=g)), **SETTINGS[i % len(SETTINGS)]))
    return out


def alone(model, spec):
    settings = {k: v for k, v in spec.items() if k not in ("prompt", "joins", "leaves")}
    return [model.vocab.index(c) for c in stream_text(model, spec["prompt"], **settings)]


def test_a_stream_in_a_crowd_gives_exactly_its_tokens_alone(model):
    """Streams join mid-way, wait for a free row, leave (done or stopped early) while others go on. With the
    engine's one thread, where float32 rows share their forward too (padded to the fewest rows that can)."""
    with_threads(engine_module.THREADS, lambda: crowd_and_alone(model))


def crowd_and_alone(model):
    todo = specs(9)
    todo[3]["leaves"] = 25  # stopped by its reader after 25 tokens
    todo[6]["leaves"] = 50
    batch = Batch(model, rows=4)  # fewer rows than requests: some wait for a row to free up
    streams, got, step = {}, {i: [] for i in range(len(todo))}, 0
    while step == 0 or batch.streams or len(streams) < len(todo):
        for i, spec in enumerate(todo):
            if i not in streams and spec["joins"] <= step and not batch.full:
                _, ids = encode_prompt(model, spec["prompt"])
                streams[i] = Stream(ids, spec["max_new_tokens"], temperature=spec["temperature"],
                                    top_k=spec.get("top_k"), top_p=spec.get("top_p"), seed=spec["seed"])
                batch.add(streams[i])
        for stream, token in batch.step():
            got[next(i for i, s in streams.items() if s is stream)].append(token)
        for i, spec in enumerate(todo):
            if "leaves" in spec and i in streams and len(got[i]) == spec["leaves"] and streams[i] in batch.streams:
                batch.remove(streams[i])
        step += 1
    assert len({len(batch_tokens) for batch_tokens in got.values()}) > 2  # different lengths, done at different steps
    for i, spec in enumerate(todo):
        expected = alone(model, spec)
        assert got[i] == expected[:spec.get("leaves", len(expected))], f"stream {i}: {spec}"
    assert batch.together or precision(model) == "float32"  # int8 and bf16 rows really did share each forward
    if batch.together and precision(model) == "float32":
        assert batch.pad_to > 1  # float32 took another path for one row than for many (measured)


def test_a_crowd_step_gives_each_row_the_logits_of_its_own_full_forward():
    """Rows at different positions of a padded cache, one new token each: every row's logits are those of the
    model run over that row's whole context alone (float64, so only the masking could make them differ)."""
    model = GPT.from_pretrained(ROOT / "weights" / "default").double().eval()
    contexts = [torch.randint(len(model.vocab), (n,)).tolist() for n in (1, 7, 60, 127)]
    batch = Batch(model, rows=len(contexts))
    batch.cache = RowCache(model.config, len(contexts), dtype=torch.float64)  # float32 on the CPU otherwise
    for ids in contexts:
        batch.add(Stream(ids[:-1] or ids, 10, seed=0))
    batch.cache.pos[0] = 0  # the one-token context: its token is the new one
    idx = torch.tensor([[ids[-1]] for ids in contexts])
    with torch.inference_mode():
        logits, _ = model(idx, cache=batch.cache.rows(0, len(contexts)))
        for i, ids in enumerate(contexts):
            full, _ = model(torch.tensor([ids]))
            torch.testing.assert_close(logits[i, -1], full[0, -1], rtol=1e-9, atol=1e-9)


def test_a_row_gets_the_same_logits_to_the_bit_in_a_crowd_of_any_size(model):
    """Sampled tokens hide small differences; the logits themselves must be identical, 1 row or 8."""
    contexts = [torch.randint(len(model.vocab), (n,), generator=torch.Generator().manual_seed(n)).tolist()
                for n in (9, 1, 30, 64, 100, 5, 17, 50)]

    def first_row_logits(n):
        batch = Batch(model, rows=8)
        for ids in contexts[:n]:
            batch.add(Stream(ids, 10, temperature=0.0, seed=0))
        batch.step()  # greedy: the same first token whatever n; then one forward of n rows
        return batch.streams[0].logits

    alone = with_threads(engine_module.THREADS, lambda: first_row_logits(1))
    for n in (2, 3, 5, 8):
        assert torch.equal(with_threads(engine_module.THREADS, lambda: first_row_logits(n)), alone), n


def read_at_once(todo, open_stream, stop_after=None) -> dict:
    """Every request of todo read by a thread of its own, all at once, as a web server's workers read them
    (open_stream(prompt, **settings) gives the characters); request i stops after stop_after[i] characters.
    Returns {i: text}; an error in any thread fails the test."""
    stop_after = stop_after or {}
    results, errors = {}, []

    def read(i, spec):
        try:
            settings = {k: v for k, v in spec.items() if k not in ("prompt", "joins")}
            stream = open_stream(spec["prompt"], **settings)
            results[i] = "".join(itertools.islice(stream, stop_after.get(i)))
            stream.close()
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    readers = [threading.Thread(target=read, args=(i, spec)) for i, spec in enumerate(todo)]
    for r in readers:
        r.start()
    for r in readers:
        r.join(timeout=300)
    assert not errors
    return results


def test_the_engine_serves_many_readers_at_once_each_its_own_text(model):
    engine = Engine(model, max_streams=3)
    todo = specs(5)
    results = read_at_once(todo, engine.stream_text)
    for i, spec in enumerate(todo):  # alone with the engine's thread count: a matmul's bits may depend on it
        assert [model.vocab.index(c) for c in results[i]] == with_threads(engine.threads, lambda: alone(model, spec))
    assert engine.active == 0 and engine.thread is None  # nobody left: the thread is gone until the next request


def test_a_reader_that_stops_leaves_the_batch_and_the_others_go_on(model):
    engine = Engine(model)
    long_one = engine.stream_text("ROMEO:", max_new_tokens=2000, seed=1)
    other = engine.stream_text("JULIET:", max_new_tokens=100, seed=2)
    assert len([next(long_one) for _ in range(10)]) == 10
    long_one.close()  # what the app does when a visitor presses Stop generating
    assert "".join(other) == with_threads(engine.threads,
                                          lambda: "".join(stream_text(model, "JULIET:", max_new_tokens=100, seed=2)))
    assert engine.active == 0


def test_the_engine_checks_prompt_and_settings_before_it_starts(model):
    engine = engine_for(model)
    assert engine_for(model) is engine  # one engine per loaded model
    with pytest.raises(UnknownCharactersError, match="does not know"):
        engine.stream_text("ROMEO 🗡️")
    with pytest.raises(ValueError, match="temperature"):
        engine.stream_text("ROMEO", temperature=-1)
    assert list(engine.stream_text("ROMEO", max_new_tokens=0)) == []
    assert engine.active == 0


def test_use_threads_sets_only_the_calling_thread():
    suite = torch.get_num_threads()  # one in the suite (conftest.py): two, so that one is a change
    torch.set_num_threads(2)
    before, inside, later = torch.get_num_threads(), [], []

    def engine_thread():
        use_threads(1)
        inside.append(torch.get_num_threads())

    t = threading.Thread(target=engine_thread)
    t.start()
    t.join()
    t = threading.Thread(target=lambda: later.append(torch.get_num_threads()))
    t.start()
    t.join()
    after = torch.get_num_threads()
    torch.set_num_threads(suite)
    assert inside == [1] and later == [before] == [2] and after == 2


def test_a_training_run_can_sample_under_bf16_autocast():
    """A run's samples are written under autocast: keys and values then come in bf16 into a float32 cache."""
    from conftest import VOCAB
    from gpt import GPTConfig
    from gpt.generation.decode import generate_text

    model = GPT(GPTConfig(vocab_size=len(VOCAB), block_size=16, n_layer=2, n_head=2, n_embd=32), VOCAB).eval()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        text = generate_text(model, "A", max_new_tokens=40, seed=1)[0]  # past block_size: the rebuild too
    assert len(text) == 40 and set(text) <= set(VOCAB)


def test_a_big_model_gets_fewer_rows_so_its_cache_stays_bounded():
    """Keys and values for 64 streams of a long-context model would take gigabytes: rows are cut to a budget."""
    from conftest import small_gpt

    big = small_gpt(block_size=8192, n_layer=4, n_embd=64)  # 16 MiB of float32 keys and values per stream
    rows = Engine(big).batch.cache.k.size(1)
    assert rows == engine_module.CACHE_BYTES // (2 * 4 * 4 * 8192 * 64) < engine_module.MAX_STREAMS
    assert Engine(small_gpt()).batch.cache.k.size(1) == engine_module.MAX_STREAMS
