"""The app through its public API, with gradio_client, as our users' scripts drive it."""

import shutil
import threading
import time
from pathlib import Path

import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

LIVE = "the model training now"
TINY = dict(preset="tiny", n_layer=2, n_head=2, n_embd=32, block_size=32, batch_size=16, learning_rate=3e-3,
            max_iters=100_000, dropout=0.0, eval_interval=20, seed=1337, text_source="Tiny Shakespeare",
            text_file=None, run_name="", minutes=0)  # then, optional: init_from


@pytest.fixture
def client(app_server):
    client = Client(app_server["url"], analytics_enabled=False, verbose=False)
    yield client
    client.predict(api_name="/stop_training")
    wait_for(client, lambda s: s["state"] not in ("running", "stopping"))


def wait_for(client, condition, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        status = client.predict(api_name="/training_status")
        if condition(status):
            return status
        time.sleep(0.3)
    raise AssertionError(f"timed out; last status: {status}")


def start(client, **overrides):
    return client.predict(*{**TINY, **overrides}.values(), api_name="/start_training")


def refusal(call, *args, **kwargs) -> str:
    """The message of a refused call: the app raises gr.Error, so a script gets an exception, not a success."""
    with pytest.raises(AppError) as e:
        call(*args, **kwargs)
    return str(e.value)


def generate(client, weights, prompt="ROMEO:", n=60, temperature=0.8, top_k=40, top_p=1.0, seed=1):
    return client.predict(weights, prompt, n, temperature, top_k, top_p, seed, api_name="/generate")


def test_only_the_named_endpoints_are_public(client):
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert set(endpoints) == {"/start_training", "/stop_training", "/training_status", "/generate", "/start_ladder",
                              "/attention", "/next_characters", "/push_to_hub", "/pull_from_hub", "/publish_space",
                              "/list_runs", "/resume_training", "/push_browser_run"}
    # the Train tab's one ordered list of inputs is the API's order, and start_training's
    import inspect

    from webapp.train import INPUTS, start_training
    assert [p["parameter_name"] for p in endpoints["/start_training"]["parameters"]] == INPUTS
    assert list(inspect.signature(start_training).parameters)[:len(INPUTS)] == INPUTS


def test_train_watch_stop_then_generate(client, app_server):
    message = start(client, run_name="api-run")
    assert "Started **api-run**" in message
    assert "already going" in refusal(start, client, run_name="second")  # refused, from any client
    status = wait_for(client, lambda s: len(s["evals"]) >= 3)
    assert status["state"] == "running" and status["run"] == "api-run" and status["max_iters"] == 100_000
    assert status["step"] >= 40 and status["tokens_per_sec"] > 0 and status["eta"] > 0
    losses = [e["val_loss"] for e in status["evals"]]
    assert losses[-1] < losses[0]  # the loss is falling
    assert status["evals"][-1]["sample"]

    text, stats = generate(client, LIVE)  # generation while training goes on
    assert text.startswith("ROMEO:") and len(text) == len("ROMEO:") + 60 and "tokens/s" in stats
    # a classroom asking the training model at about the same time (within state.SHARED_SNAPSHOT_S, 2 s) shares one
    # copy of it and one batch: one seed gives one text, though training moved on between the requests
    first = generate(client, LIVE, n=20, seed=5)[0]
    assert generate(client, LIVE, n=20, seed=5)[0] == first
    texts = [None] * 4
    # four clients connected first, so that their requests leave together (connecting takes a second or more on a
    # loaded machine, more than the window)
    classroom = [Client(app_server["url"], analytics_enabled=False, verbose=False) for _ in range(4)]
    visitors = [threading.Thread(target=lambda i=i: texts.__setitem__(i, generate(classroom[i], LIVE, n=100,
                                                                                 seed=5)[0])) for i in range(4)]
    for v in visitors:
        v.start()
    for v in visitors:
        v.join()
    assert texts[0] is not None and len(texts[0]) == len("ROMEO:") + 100 and texts.count(texts[0]) == 4

    assert "Stopping" in client.predict(api_name="/stop_training")
    status = wait_for(client, lambda s: s["state"] == "stopped")
    assert (app_server["weights"] / "api-run" / "model.safetensors").exists()

    text, _ = generate(client, "api-run", seed=3)
    assert text.startswith("ROMEO:") and len(text) == 66
    assert generate(client, "api-run", seed=3)[0] == text  # same seed, same text
    text, stats = generate(client, "default", n=200)
    assert len(text) == 206 and "weights: default" in stats


def test_a_timed_run_counts_down_and_finishes_on_time_with_its_weights(client, app_server):
    assert "Started **timed-run**" in start(client, run_name="timed-run", minutes=0.1)  # 6 seconds
    status = wait_for(client, lambda s: s["state"] == "running" and s["step"] > 0)
    assert status["max_time"] == 6.0 and 0 < status["eta"] <= 6.0  # the ETA is the time left on the clock
    later = wait_for(client, lambda s: s["step"] > status["step"] + 5)
    assert later["eta"] < status["eta"]
    done = wait_for(client, lambda s: s["state"] == "finished", timeout=60)
    assert done["step"] < TINY["max_iters"] and done["elapsed"] < 6.0  # the clock ended it, not the iterations
    assert (app_server["weights"] / "timed-run" / "model.safetensors").exists()
    assert (app_server["weights"] / "timed-run" / "README.md").exists()
    with pytest.raises(Exception, match="minimum|Train for"):  # refused, with a reason the script sees
        start(client, run_name="bad-time", minutes=-1)


def test_generation_streams(client):
    job = client.submit("default", "KING", 600, 0.8, 40, 1.0, 0, api_name="/generate")  # past block_size (256)
    lengths = [len(out[0]) for out in job]
    assert len(lengths) > 3 and lengths == sorted(lengths) and lengths[-1] == 604


def test_odd_input_gets_a_message(client, tmp_path):
    assert "divisible by n_head" in refusal(start, client, n_embd=100, n_head=6)
    assert "learning_rate must be above 0" in refusal(start, client, learning_rate=0)
    assert "run name" in refusal(start, client, run_name="../escape")
    assert "upload a .txt file" in refusal(start, client, text_source="My own text")
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("Grüße aus Köln\n".encode("latin-1") * 2000)
    assert "not UTF-8" in refusal(start, client, text_source="My own text", text_file=handle_file(latin1))
    short = tmp_path / "short.txt"
    short.write_text("Too short.\n", encoding="utf-8")
    assert "characters" in refusal(start, client, text_source="My own text", text_file=handle_file(short))
    assert client.predict(api_name="/training_status")["state"] != "running"  # none of these started a run

    for args, message in [(dict(prompt="Café ☕"), "does not know: 'é'"), (dict(top_p=0), "minimum value 0.05"),
                          (dict(temperature=-1), "minimum value 0"), (dict(n=10**9), "maximum value 5000"),
                          (dict(weights="../../etc"), "no weights named")]:
        with pytest.raises(Exception, match=message):
            generate(client, **{"weights": "default", **args})
    text, _ = generate(client, "default", prompt="")  # an empty prompt works: it starts from a newline
    assert len(text) == 60


def test_a_broken_weights_folder_is_explained_without_the_servers_paths(client, app_server):
    broken = app_server["weights"] / "broken"
    shutil.copytree(app_server["weights"] / "default", broken)
    (broken / "config.json").write_text("{not json", encoding="utf-8")
    try:
        message = refusal(generate, client, "broken")
    finally:
        shutil.rmtree(broken)
    assert "weights/broken/config.json is not valid JSON" in message
    assert str(app_server["weights"].parent) not in message and str(Path.home()) not in message


def test_training_on_an_uploaded_text(client, tmp_path, shakespeare):
    mine = tmp_path / "mine.txt"
    mine.write_text(shakespeare[:30_000].upper(), encoding="utf-8")
    assert "Started" in start(client, text_source="My own text", text_file=handle_file(mine), run_name="upper",
                              max_iters=30, eval_interval=10)
    wait_for(client, lambda s: s["state"] == "finished")
    text, _ = generate(client, "upper", prompt="ROMEO:")
    assert text[6:] == text[6:].upper()  # it only knows capitals


def test_the_charts_have_axes_to_fill_before_anything_is_measured():
    """Before a run (what a visitor of a Space sees most of the time) the loss chart spans an untrained model's loss
    down to the lecture's and a hundred steps, and the ladder's shows each rung's number: not one value on each axis."""
    import math

    from webapp.ladder import ladder_frame
    from webapp.train import loss_frame

    frame = loss_frame({"steps": [], "evals": [], "step": 0})
    assert frame["loss"].min() == 1.48 and frame["loss"].max() == pytest.approx(math.log(65))
    assert frame["step"].max() == 100 and set(frame["series"]) == {"train (each batch)", "train", "val", "lecture: 1.48"}
    running = loss_frame({"steps": [(1, 4.1), (250, 2.0)], "evals": [], "step": 250})
    assert running["loss"].max() == 4.1 and running["step"].max() == 250  # then the run's own figures set them
    ladder = ladder_frame({"ladder": []})
    levels = ladder.groupby("rung")["val loss"].agg(["min", "max"])
    assert levels.loc["1 lecture 2.5"].tolist() == [2.5, 2.5] and levels.loc["7 lecture 1.48"].tolist() == [1.48, 1.48]
    assert ladder["step"].max() == 5000


def test_ladder_runs_in_the_background_and_fills_its_table(client):
    message = client.predict(["1", "2", "3", "4", "5", "6"], 20, api_name="/start_ladder")
    assert message.startswith("Climbing rungs 1, 2, 3, 4, 5, 6")
    assert "already going" in refusal(start, client, run_name="during-ladder")  # one run at a time, ladder included
    status = wait_for(client, lambda s: s["state"] == "finished")
    rows = status["ladder"]
    assert [r["rung"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert all(r["val"] and r["time"] and r["curve"][-1][0] == 20 and r["sample"] for r in rows)
    assert [r["lecture_val"] for r in rows] == [2.5, 2.4, 2.28, 2.24, 2.08, 2.06]
    assert "choose at least one rung" in refusal(client.predict, [], None, api_name="/start_ladder")


def test_attention_heatmap_for_a_prompt(client):
    from PIL import Image

    path = client.predict("default", "ROMEO: what light", api_name="/attention")
    image = Image.open(path)
    assert image.width > 500 and image.height > 500  # a map of 17 x 17 characters per layer and head
    one, every = Image.open(client.predict("default", "ROMEO: what light", 2, api_name="/attention")), \
        Image.open(client.predict("default", "ROMEO: what light", 0, api_name="/attention"))
    assert one.height < every.height and one.width / 3 >= 17 * 20  # one layer: three heads a row, 20 px a character
    with pytest.raises(Exception, match="layer must be 0 .all. or 1 to 6, not 7"):
        client.predict("default", "ROMEO:", 7, api_name="/attention")
    with pytest.raises(Exception, match="does not know"):
        client.predict("default", "Café", api_name="/attention")


def test_next_characters_are_what_the_sampler_draws_from(client, app_server):
    """/next_characters: the ten likeliest characters after the prompt, after the settings, for our model."""
    import torch

    from gpt import GPT, CharTokenizer

    model = GPT.from_pretrained(app_server["weights"] / "default").eval()  # the weights the app serves
    prompt = "ROMEO:\nWhat light through yonder window b"
    with torch.no_grad():
        logits = model(torch.tensor([CharTokenizer(model.vocab).encode(prompt)]))[0][0, -1]  # (V,)

    def ask(temperature, top_k, top_p):
        rows = client.predict("default", prompt, temperature, top_k, top_p, api_name="/next_characters")
        assert len(rows) == 10 and [r["char"] for r in rows] == [model.vocab[i] for i in logits.topk(10).indices]
        return {r["char"]: r["probability"] for r in rows}

    at_07 = torch.softmax(logits / 0.7, dim=-1)
    assert all(abs(p - float(at_07[model.vocab.index(ch)])) < 1e-4 for ch, p in ask(0.7, 0, 1.0).items())
    top_5 = ask(1.0, 5, 1.0)
    assert sum(p > 0 for p in top_5.values()) == 5 and abs(sum(top_5.values()) - 1) < 1e-5
    # top-p: the smallest set of the likeliest characters whose probabilities reach 0.9 (the likeliest always kept)
    ranked = torch.softmax(logits, dim=-1).sort(descending=True)
    kept = int((ranked.values.cumsum(0) - ranked.values < 0.9).sum())
    nucleus = {model.vocab[i]: float(p) / float(ranked.values[:kept].sum())
               for p, i in zip(ranked.values[:kept], ranked.indices[:kept])}
    top_p = ask(1.0, 0, 0.9)
    assert 1 < kept < 10 and {ch for ch, p in top_p.items() if p > 0} == set(nucleus)
    assert all(abs(top_p[ch] - p) < 1e-4 for ch, p in nucleus.items())
    for args, message in [(("default", "Café", 1.0, 0, 1.0), "does not know: 'é'"),
                          (("nothing-here", "ROMEO:", 1.0, 0, 1.0), "no weights named 'nothing-here'"),
                          (("default", "a" * 10_001, 1.0, 0, 1.0), "at most 10,000"),
                          (("default", "ROMEO:", 1.0, 0, 0.0), "top_p must be above 0"),
                          (("default", "ROMEO:", "hot", 0, 1.0), "temperature must be a number")]:
        assert message in refusal(client.predict, *args, api_name="/next_characters")
    assert client.predict("default", "", 0, 0, 1.0, api_name="/next_characters")[0]["probability"] == 1.0


def test_the_server_s_follow_view_is_what_its_newest_character_was_drawn_from(monkeypatch):
    """Generate's follow view of a server's stream: the sampler's distribution at the position before the newest
    character; nothing before a character is generated."""
    import json

    from gpt import GPT
    from gpt.insides.characters import next_logits
    from conftest import ROOT
    from gpt.generation.sampling import Settings, probabilities
    from webapp import insides
    from webapp.insides import follow_view

    model = GPT.from_pretrained(ROOT / "weights" / "default").eval()  # the float32 weights: measuring no precision
    monkeypatch.setattr(insides, "load_weights",
                        lambda name, inference=False: model if name == "default" else insides.weights_folder(name))
    text = "ROMEO:\nWhat light through yonder window b"
    view = json.loads(follow_view("default", text, "ROMEO:", 0.8, 40, 1.0))
    sampler = probabilities(next_logits(model, text[:-1])[None], [Settings(0.8, top_k=40)])[0]  # (V,)
    assert view["drawn"] == "b" and len(view["rows"]) == 40  # top-k 40: the kept characters, most likely first
    assert all(abs(r["p"] - float(sampler[model.vocab.index(r["char"])])) < 1e-4 for r in view["rows"])
    assert [r["p"] for r in view["rows"]] == sorted((r["p"] for r in view["rows"]), reverse=True)
    assert follow_view("default", "ROMEO:", "ROMEO:", 0.8, 40, 1.0) == ""  # the prompt alone: nothing drawn yet
    assert follow_view("nothing-here", text, "ROMEO:", 0.8, 40, 1.0) == ""  # says nothing, never a toast a tick


def test_two_tabs_pressing_start_at_once_start_one_run(client, app_server):
    from concurrent.futures import ThreadPoolExecutor

    other = Client(app_server["url"], analytics_enabled=False, verbose=False)
    def press_start(c):
        try:
            return start(c, run_name=f"race-{id(c)}")
        except AppError as e:  # the refused one raises, as gr.Error does for a script
            return str(e)

    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(press_start, [client, other]))
    assert sorted(a.startswith("Started") for a in answers) == [False, True]
    assert any("already going" in a for a in answers)


def test_odd_prompts(client):
    text, _ = generate(client, "default", prompt="To be, or not to be " * 500, n=20)  # far past the block
    assert len(text) == len("To be, or not to be " * 500) + 20
    text, _ = generate(client, "default", prompt="\n\n\n", n=20)
    assert len(text) == 23
    with pytest.raises(Exception, match="does not know"):
        generate(client, "default", prompt="ROMEO 🗡️")


def test_the_seed_can_be_empty_typed_text_or_an_int_through_the_api(client):
    from gradio_client.exceptions import AppError

    assert generate(client, "default", seed=7)[0] == generate(client, "default", seed="7")[0]
    assert generate(client, "default", seed="")[0] != generate(client, "default", seed=None)[0]  # new each time
    with pytest.raises(AppError, match="seed must be a whole number"):
        generate(client, "default", seed="seven")


def test_every_text_names_its_seed_and_the_seed_makes_it_again(client):
    """An empty seed draws one; the figures name it, so a good sample can be made again."""
    import re

    text, figures = generate(client, "default", seed="")
    seed = re.search(r"seed (\d+)", figures).group(1)
    assert generate(client, "default", seed=seed)[0] == text
