"""A public app: strangers may watch and generate, and nothing else; no visitor's request uses the server's token.

The app runs exactly as a Space starts it (see conftest.space_app), against the Hub stand-in of tests/hub_server.py
(not the Hub). Visitors are gradio_client scripts: anonymous, or signed in with a session cookie.
"""

import time

import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from conftest import OWNER, VISITOR, signed_in_cookie
from test_app import wait_for

TINY = ["tiny", 2, 2, 32, 32, 16, 3e-3, 100_000, 0.0, 20, 1337, "Tiny Shakespeare", None]


def client(url, user=None, token=None, **kwargs):
    cookies = {"session": signed_in_cookie(user, token)} if user else {}
    return Client(url, analytics_enabled=False, verbose=False, httpx_kwargs={"cookies": cookies}, **kwargs)


def refusal(call, *args, **kwargs) -> str:
    with pytest.raises(AppError) as e:
        call(*args, **kwargs)
    return str(e.value)


@pytest.fixture
def owners_run(space_app):
    """A long run that the owner (alice, signed in) started."""
    owner = client(space_app["url"], "alice", OWNER)
    name = f"owners-{time.time_ns()}"
    assert "Started" in owner.predict(*TINY, name, api_name="/start_training")
    wait_for(owner, lambda s: s["step"] > 0)
    yield name
    owner.predict(api_name="/stop_training")
    wait_for(owner, lambda s: s["state"] not in ("running", "stopping"))


def hub_snapshot(hub_server):
    return {key: len(repo.commits) for key, repo in hub_server.state.repos.items()}


def folders(weights):
    return sorted(p.name for p in weights.iterdir())


def test_an_anonymous_visitor_watches_and_generates_and_can_do_nothing_else(space_app, hub_server, owners_run):
    repos, disk = hub_snapshot(hub_server), folders(space_app["weights"])
    seen = len(hub_server.state.requests)
    anon = client(space_app["url"])
    status = anon.predict(api_name="/training_status")
    assert status["state"] == "running" and status["started_by"] == "alice" and status["deadline"] is None
    text, _ = anon.predict("default", "ROMEO:", 40, 0.8, 40, 1.0, 1, api_name="/generate")
    assert text.startswith("ROMEO:") and len(text) == 46

    assert "Only the owner may train on this server — train in your browser here instead" in refusal(
        anon.predict, *TINY, "vandal", api_name="/start_training")
    assert "Sign in with Hugging Face" in refusal(anon.predict, *TINY, "vandal", api_name="/start_training")
    assert "Only whoever started this run (alice)" in refusal(anon.predict, api_name="/stop_training")
    assert "Only the owner" in refusal(anon.predict, ["1", "2"], 10, api_name="/start_ladder")
    for typed in ("", VISITOR):  # an empty field must not fall back to HF_TOKEN; a typed token is not used either
        message = refusal(anon.predict, "default", "alice/vandalised", typed, False, "", api_name="/push_to_hub")
        assert "Sign in with Hugging Face" in message and "never used" in message
    assert "Only the owner may pull" in refusal(anon.predict, "alice/anything", "", "visitor-pull", False, "",
                                                api_name="/pull_from_hub")
    assert "Only the owner may publish" in refusal(anon.predict, "alice/vandal-space", "default", "", False,
                                                   api_name="/publish_space")
    # a token sent with the call (gradio_client's oauth_token=) is not a sign-in: no profile, no push
    with_token = client(space_app["url"], oauth_token=VISITOR)
    assert "Sign in" in refusal(with_token.predict, "default", "bob/sneaky", "", False, "", api_name="/push_to_hub")

    assert hub_snapshot(hub_server) == repos and folders(space_app["weights"]) == disk
    assert not any(OWNER in str(headers) for _, _, headers in hub_server.state.requests[seen:])
    later = wait_for(anon, lambda s: s["step"] > status["step"])  # the owner's run went on
    assert later["state"] == "running" and later["run"] == owners_run


def test_a_signed_in_visitor_pushes_to_their_own_namespace_with_their_own_token(space_app, hub_server, owners_run):
    bob = client(space_app["url"], "bob", VISITOR)
    seen = len(hub_server.state.requests)
    message = bob.predict("default", "bob/from-the-space", "", False, "", api_name="/push_to_hub")
    assert "Pushed **default** to [bob/from-the-space]" in message
    assert hub_server.state.repos[("model", "bob/from-the-space")].owner == "bob"
    sent = [v for _, _, headers in hub_server.state.requests[seen:] for k, v in headers.items()
            if k.lower() == "authorization"]
    assert f"Bearer {VISITOR}" in sent and f"Bearer {OWNER}" not in sent  # bob's token, never the Space's

    assert "only into your own namespace" in refusal(bob.predict, "default", "alice/by-bob", "", False, "",
                                                     api_name="/push_to_hub")
    assert ("model", "alice/by-bob") not in hub_server.state.repos
    assert "Only whoever started this run (alice)" in refusal(bob.predict, api_name="/stop_training")
    assert bob.predict(api_name="/training_status")["started_by"] == "alice"
    assert "Duplicate this Space" in refusal(bob.predict, *TINY, "bobs", api_name="/start_training")
    assert "Only the owner may pull" in refusal(bob.predict, "bob/from-the-space", "", "", False, "",
                                                api_name="/pull_from_hub")
    assert bob.predict(api_name="/training_status")["state"] == "running"


def test_the_owner_may_pull_with_their_own_sign_in(space_app, hub_server):
    owner = client(space_app["url"], "alice", OWNER)
    owner.predict("default", "alice/for-pull", "", False, "", api_name="/push_to_hub")
    message, selected = owner.predict("alice/for-pull", "", "pulled", False, "", api_name="/pull_from_hub")
    assert "Pulled" in message and selected["value"] == "pulled"
    assert (space_app["weights"] / "pulled" / "model.safetensors").is_file()


# --- the policy itself, in-process: each deployment and policy from its environment variables ---

ENV = ["SYSTEM", "SPACE_ID", "SPACE_AUTHOR_NAME", "OAUTH_CLIENT_ID", "GPT_PUBLIC", "GPT_OWNERS", "GPT_TRAINING_POLICY",
       "GPT_MAX_STEPS", "GPT_MAX_MINUTES", "GPT_MAX_PARAMS", "GPT_MAX_RUNS"]


@pytest.fixture
def deploy(monkeypatch):
    """Set the deployment's environment (everything else about it unset)."""
    for name in ENV:
        monkeypatch.delenv(name, raising=False)

    def deploy(**env):
        for name, value in env.items():
            monkeypatch.setenv(name, value)
    return deploy


SPACE = dict(SYSTEM="spaces", SPACE_ID="alice/demo", SPACE_AUTHOR_NAME="alice", OAUTH_CLIENT_ID="x")


def profile(user):
    import gradio as gr

    return gr.OAuthProfile({"name": user, "preferred_username": user, "profile": f"https://huggingface.co/{user}",
                            "picture": ""})


def test_a_laptop_trusts_its_one_user(deploy):
    from webapp import access

    deploy()
    assert access.is_owner(None) and access.may_train(None) is None and access.caps(None) is None
    assert access.hub_token(None, None, "typed", "push", into="anyone/repo") == "typed"
    assert access.hub_token(None, None, "", "push") is None  # huggingface_hub then uses the user's own HF_TOKEN
    assert access.notice(None) == "" and access.starter(None, None) is None


def test_on_a_space_the_owners_policy_decides_who_trains(deploy):
    from webapp import access

    deploy(**SPACE)
    alice, bob = profile("alice"), profile("bob")
    assert access.may_train(alice) is None and access.caps(alice) is None
    assert "Only the owner" in access.may_train(bob) and "Sign in" in access.may_train(None)
    deploy(GPT_OWNERS="carol, bob")
    assert access.may_train(bob) is None
    deploy(GPT_OWNERS="", GPT_TRAINING_POLICY="signed-in", GPT_MAX_STEPS="800", GPT_MAX_MINUTES="2")
    assert access.may_train(bob) is None and "Sign in with Hugging Face" in access.may_train(None)
    assert "or train in your browser here instead" in access.may_train(None)
    caps = access.caps(bob)
    assert (caps.max_steps, caps.max_minutes, caps.max_params) == (800, 2.0, 3_000_000)
    assert "800 steps, 2 minutes" in access.notice(bob)
    deploy(GPT_TRAINING_POLICY="anyone")
    assert access.may_train(None) is None
    deploy(GPT_TRAINING_POLICY="everyone!", GPT_MAX_STEPS="lots")  # a typo keeps the safe defaults
    assert "Only the owner" in access.may_train(bob) and access.caps(bob).max_steps == 5000


def test_outside_a_space_sign_in_is_not_trusted(deploy):
    from webapp import access

    deploy(GPT_PUBLIC="1", GPT_OWNERS="alice")  # `python app.py --public`: Gradio's local sign-in is a mock
    assert access.visitor(profile("alice")) is None and not access.is_owner(profile("alice"))
    assert "python app.py" in access.may_train(profile("alice"))
    with pytest.raises(Exception, match="never used"):
        access.hub_token(profile("alice"), None, "hf_typed", "push", into="alice/x")
    deploy(GPT_TRAINING_POLICY="anyone")  # a classroom server
    assert access.may_train(None) is None and access.caps(None).max_minutes == 15


def test_only_the_starter_or_the_owner_may_stop(deploy):
    from types import SimpleNamespace

    from webapp import access

    deploy(**SPACE, GPT_TRAINING_POLICY="anyone")
    tab, other_tab = SimpleNamespace(session_hash="abc"), SimpleNamespace(session_hash="xyz")
    started_by = access.starter(None, tab)
    assert access.may_stop(None, tab, started_by) and not access.may_stop(None, other_tab, started_by)
    assert access.may_stop(profile("alice"), other_tab, started_by)  # the owner
    assert not access.may_stop(profile("bob"), other_tab, started_by) and access.shown_name(started_by) == "a visitor"


def test_a_public_deployment_keeps_at_most_max_runs(deploy, tmp_path):
    import os

    from webapp import access

    for i, name in enumerate(["default", "ladder", "r1", "r2", "r3", "r4", "r5"]):
        (tmp_path / name).mkdir()
        os.utime(tmp_path / name, (1000 + i, 1000 + i))  # r1 is the oldest run
    deploy()
    assert access.make_room(tmp_path) == []  # a laptop keeps everything
    deploy(GPT_PUBLIC="1", GPT_MAX_RUNS="3")
    assert access.make_room(tmp_path, keep="r1") == ["r2", "r3"]  # room for r1 (being replaced): 3 runs
    assert folders(tmp_path) == ["default", "ladder", "r1", "r4", "r5"]
    assert access.make_room(tmp_path, keep="new") == ["r1"]  # room for a new run: 2 + the new one
    assert folders(tmp_path) == ["default", "ladder", "r4", "r5"]


def wait(runner, seconds=120):
    deadline = time.time() + seconds
    while runner.running and time.time() < deadline:
        time.sleep(0.1)
    return runner.status()


def test_every_way_a_visitor_starts_a_run_is_held_to_the_steps_and_the_minutes(tmp_path):
    from gpt.sharing.card import params_text
    from gpt.errors import ConfigError
    from gpt.training.log import events
    from gpt.training.background import Limits, TrainingRunner
    from gpt.training.trainer import SteadyClock, TrainConfig

    runner = TrainingRunner(tmp_path, clock=SteadyClock(0.02))  # the same steps on any machine, in seconds
    limits = Limits(max_steps=100_000, max_seconds=5, max_params=3_000_000)
    with pytest.raises(ConfigError, match="at most 100,000 steps here"):  # Start
        runner.start(TrainConfig.from_preset("tiny", max_iters=1_000_000), "greedy", limits=limits)
    config = TrainConfig.from_preset("tiny", max_iters=100_000, eval_interval=50)
    runner.start(config, "limited", started_by="bob", limits=limits)
    while runner.running and runner.status()["step"] < 2:
        time.sleep(0.01)
    running = runner.status()
    assert running["max_time"] == 5 and 0 < running["eta"] <= 5  # one clock: the minutes are the run's, the ETA too
    status = wait(runner)
    lrs = [e["lr"] for e in events(tmp_path / "limited") if e["event"] == "step"]
    assert status["state"] == "finished" and status["started_by"] == "bob"  # ended by its clock, not cut off
    assert lrs[-1] < config.min_lr + 0.15 * (config.learning_rate - config.min_lr)  # annealed
    assert status["deadline"] == pytest.approx(status["started_at"] + 5)
    assert status["step"] < 100_000 and (tmp_path / "limited" / "model.safetensors").is_file()
    # carrying it on: the steps, and only the minutes allowed on top of the time it has had
    with pytest.raises(ConfigError, match="at most 100,000 steps here"):
        runner.resume("limited", 1_000_000, limits=limits)
    runner.resume("limited", 100_000, limits=limits)
    resumed = wait(runner)
    starts = [e for e in events(tmp_path / "limited") if e["event"] == "start"]
    assert resumed["state"] == "finished" and starts[-1]["max_time"] == pytest.approx(starts[-1]["elapsed"] + 5)
    assert resumed["elapsed"] < starts[-1]["elapsed"] + 5 + 1
    # the ladder: the same steps, the minutes shared between the rungs, and no model above the size allowed
    with pytest.raises(ConfigError, match="rung 7 would have 10.79M parameters"):
        runner.start_ladder([6, 7], limits=limits)
    with pytest.raises(ConfigError, match="at most 10 steps here"):
        runner.start_ladder([1, 2], 20, limits=Limits(10, 2, 3_000_000))
    runner.start_ladder([1, 2], 10_000, limits=Limits(10_000, 2, 3_000_000))
    ladder = wait(runner)
    rungs = [events(tmp_path / "ladder" / f"rung-{n}")[0] for n in (1, 2)]
    assert ladder["state"] == "finished" and [r["max_time"] for r in rungs] == [1.0, 1.0]
    # a big model is refused before anything is built, with the count the built model had
    with pytest.raises(ConfigError, match=rf"would have {params_text(status['params'])} parameters; the limit here is "
                                          r"0.001M"):
        runner.start(config, "big", limits=Limits(100_000, 60, 1000))
    runner.start(config, "small-enough", limits=Limits(100_000, 60, status["params"]))
    runner.stop()
    wait(runner)


def test_a_signed_in_visitor_pushes_a_run_trained_in_their_browser_once_the_server_has_checked_it(
        space_app, hub_server, tmp_path):
    """The Train tab's Push for a run kept in the browser: its files are uploaded, checked, pushed with bob's token to
    bob's namespace; a pickle in their place is refused and nothing is written, on the Hub or on the server."""
    import pickle

    from gradio_client import handle_file

    from conftest import small_gpt
    from gpt import GPT
    from gpt.sharing.weights import save_weights

    run = save_weights(small_gpt(), tmp_path / "run")
    files = [handle_file(run / name) for name in ("model.safetensors", "config.json")]
    (tmp_path / "evil").mkdir()
    (tmp_path / "evil" / "model.safetensors").write_bytes(pickle.dumps({"not": "weights"}))
    bob, anon = client(space_app["url"], "bob", VISITOR), client(space_app["url"])
    repos, disk = hub_snapshot(hub_server), folders(space_app["weights"])
    evil = [handle_file(tmp_path / "evil" / "model.safetensors"), files[1]]
    message = refusal(bob.predict, evil, "bob/evil", False, "", api_name="/push_browser_run")
    assert "model.safetensors is not a safetensors file" in message and "upload the model.safetensors" in message
    assert "Sign in with Hugging Face" in refusal(anon.predict, files, "bob/anon", False, "",
                                                  api_name="/push_browser_run")
    assert "only into your own namespace" in refusal(bob.predict, files, "alice/by-bob", False, "",
                                                     api_name="/push_browser_run")
    assert hub_snapshot(hub_server) == repos and folders(space_app["weights"]) == disk

    seen = len(hub_server.state.requests)
    assert "Pushed the run trained in this browser to [bob/browser-run]" in bob.predict(
        files, "bob/browser-run", False, "", api_name="/push_browser_run")
    assert hub_server.state.repos[("model", "bob/browser-run")].owner == "bob"
    sent = [v for _, _, headers in hub_server.state.requests[seen:] for k, v in headers.items()
            if k.lower() == "authorization"]
    assert f"Bearer {VISITOR}" in sent and f"Bearer {OWNER}" not in sent
    pulled = GPT.from_pretrained("bob/browser-run", token=VISITOR)
    assert pulled.vocab == small_gpt().vocab and folders(space_app["weights"]) == disk  # pushed, not kept here
