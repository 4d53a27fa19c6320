"""A public app: strangers may watch and generate, and nothing else; no visitor's request uses the server's token.

The app runs exactly as a Space starts it (see conftest.space_app), against the Hub stand-in of tests/hub_server.py
(not the Hub). Visitors are gradio_client scripts: anonymous, or signed in with a session cookie.
"""

import time

import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from conftest import OWNER, VISITOR, signed_in_cookie

TINY = ["tiny", 2, 2, 32, 32, 16, 3e-3, 100_000, 0.0, 20, 1337, "Tiny Shakespeare", None]


def client(url, user=None, token=None, **kwargs):
    cookies = {"session": signed_in_cookie(user, token)} if user else {}
    return Client(url, analytics_enabled=False, verbose=False, httpx_kwargs={"cookies": cookies}, **kwargs)


def refusal(call, *args, **kwargs) -> str:
    with pytest.raises(AppError) as e:
        call(*args, **kwargs)
    return str(e.value)


def wait_for(c, condition, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        status = c.predict(api_name="/training_status")
        if condition(status):
            return status
        time.sleep(0.3)
    raise AssertionError(f"timed out; last status: {status}")


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

    assert "Only the owner may train" in refusal(anon.predict, *TINY, "vandal", api_name="/start_training")
    assert "Sign in with Hugging Face" in refusal(anon.predict, *TINY, "vandal", api_name="/start_training")
    assert "Only whoever started this run (alice)" in refusal(anon.predict, api_name="/stop_training")
    assert "Only the owner" in refusal(anon.predict, [1, 2], 10, api_name="/start_ladder")
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
