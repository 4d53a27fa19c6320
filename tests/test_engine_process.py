"""The engine in a process of its own (what the app serves with on a CPU): each stream exactly its text alone."""

import gc
import sys
import time

import pytest

from gpt import GPT, UnknownCharactersError
from gpt.generation import engine as engine_module
from gpt.generation.engine import with_threads
from gpt.generation.engine_process import EngineProcess
from gpt.errors import EngineError
from gpt.generation.precision import inference_model

from conftest import ROOT
from test_engine import alone, read_at_once, specs


@pytest.fixture(scope="module")
def engines():
    engines = EngineProcess()
    yield engines
    engines.close()


@pytest.fixture(scope="module", params=["float32", "int8"])
def model(request):
    return inference_model(GPT.from_pretrained(ROOT / "weights" / "default"), request.param)


def wait_for(condition, seconds=30):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_streams_served_by_the_process_are_exactly_their_texts_alone(engines, model):
    """Five at once from threads, as the web server reads them, one stopped by its reader after 30 characters:
    every text is the one this process makes alone with the engine's thread count, past block_size too."""
    todo = specs(5)
    results = read_at_once(todo, lambda prompt, **settings: engines.stream_text(model, prompt, **settings),
                           stop_after={2: 30})
    for i, spec in enumerate(todo):
        expected = with_threads(engine_module.THREADS, lambda: alone(model, spec))
        assert [model.vocab.index(c) for c in results[i]] == expected[:30 if i == 2 else None], i
    wait_for(lambda: engines.status()["streams"] == 0)


def test_prompt_and_settings_are_checked_before_anything_is_sent(engines, model):
    with pytest.raises(UnknownCharactersError, match="does not know"):
        engines.stream_text(model, "ROMEO 🗡️")
    with pytest.raises(ValueError, match="temperature"):
        engines.stream_text(model, "ROMEO", temperature=-1)
    with pytest.raises(TypeError, match="colour"):
        engines.stream_text(model, "ROMEO", colour="red")
    assert list(engines.stream_text(model, "ROMEO", max_new_tokens=0)) == []


def test_a_stopped_stream_leaves_the_child_batch(engines, model):
    """Stop generating: the child stops making the 5,000 characters nobody reads (about 15 s of work)."""
    stream = engines.stream_text(model, "ROMEO:", max_new_tokens=5000, seed=1)
    assert len([next(stream) for _ in range(5)]) == 5
    stream.close()
    wait_for(lambda: engines.status()["streams"] == 0, seconds=5)


def test_the_child_lets_go_of_a_model_that_is_gone_here(engines, model):
    """The app sends a new copy of the model training now every few seconds: the child's memory stays bounded."""
    copy = inference_model(GPT.from_pretrained(ROOT / "weights" / "default"), "float32")
    assert len("".join(engines.stream_text(copy, "A", max_new_tokens=5))) == 5
    held = engines.status()["models"]
    del copy
    gc.collect()
    assert len("".join(engines.stream_text(model, "A", max_new_tokens=5))) == 5  # the next message carries the drop
    assert engines.status()["models"] == held - 1


def test_a_dead_child_fails_its_readers_with_a_message_and_the_next_request_starts_another(model):
    engines = EngineProcess()
    try:
        stream = engines.stream_text(model, "ROMEO:", max_new_tokens=5000, seed=1)
        next(stream)
        engines.child.process.kill()
        with pytest.raises(EngineError, match="press Generate again"):
            "".join(stream)
        assert len("".join(engines.stream_text(model, "ROMEO:", max_new_tokens=20, seed=1))) == 20
    finally:
        engines.close()


def test_an_engine_that_cannot_start_says_so(model, monkeypatch):
    monkeypatch.setattr(sys, "executable", "/nonexistent/python")  # as on a host that allows no new process
    with pytest.raises(EngineError, match="could not start"):
        EngineProcess().stream_text(model, "ROMEO:", max_new_tokens=5)
