"""The Runs endpoints through gradio_client, against `python app.py`: list, carry on, start from weights."""

import pytest
from gradio_client import handle_file
from safetensors.torch import load_file

from test_app import client, start, wait_for  # noqa: F401  (client is a fixture)

STEPS = 120  # enough that a stop lands before the end; small for 2 busy CPU cores


def finish(client, **settings):
    assert "Started" in start(client, **settings)
    return wait_for(client, lambda s: s["state"] == "finished", timeout=300)


def runs_by_name(client, sort="newest"):
    return {r["name"]: r for r in client.predict(sort, api_name="/list_runs")}


def test_two_runs_are_listed_with_their_best_val(client):
    finish(client, run_name="list-a", max_iters=20, eval_interval=10)
    finish(client, run_name="list-b", max_iters=30, eval_interval=10, n_layer=1)
    listed = runs_by_name(client)
    for name, steps in [("list-a", 20), ("list-b", 30)]:
        run = listed[name]
        assert run["state"] == "finished" and run["steps"] == steps and run["resumable"]
        assert run["best_val"] == min(val for _, _, val in run["curve"]) and run["sample"]
    assert listed["list-b"]["differs"]["n_layer"] == 1 and "n_layer" not in listed["list-a"]["differs"]
    by_val = [r["best_val"] for r in client.predict("best val", api_name="/list_runs") if r["group"] == "runs"]
    assert by_val == sorted(by_val, key=lambda v: float("inf") if v is None else v)
    with pytest.raises(Exception, match="sort by 'newest' or 'best val'"):
        client.predict("oldest", api_name="/list_runs")


def test_a_stopped_run_carried_on_ends_with_the_weights_of_a_run_that_never_stopped(client, app_server):
    finish(client, run_name="straight", max_iters=STEPS, eval_interval=40)

    assert "Started" in start(client, run_name="carried", max_iters=STEPS, eval_interval=40)
    wait_for(client, lambda s: s["run"] == "carried" and s["step"] >= 3)
    client.predict(api_name="/stop_training")
    stopped = wait_for(client, lambda s: s["state"] == "stopped")
    assert 3 <= stopped["step"] < STEPS
    assert runs_by_name(client)["carried"]["state"] == "stopped"

    with pytest.raises(Exception, match="already at step"):
        client.predict("carried", stopped["step"], api_name="/resume_training")
    with pytest.raises(Exception, match="no training state"):
        client.predict("default", STEPS, api_name="/resume_training")
    assert "Carrying **carried** on" in client.predict("carried", STEPS, api_name="/resume_training")
    with pytest.raises(Exception, match="already going"):
        client.predict("carried", STEPS, api_name="/resume_training")
    done = wait_for(client, lambda s: s["state"] == "finished", timeout=300)
    assert done["run"] == "carried" and done["step"] == STEPS

    folder = app_server["weights"]
    for file in ("model.safetensors", "training_state.safetensors"):
        straight, carried = load_file(str(folder / "straight" / file)), load_file(str(folder / "carried" / file))
        model = [k for k in straight if not k.startswith(("optimizer.", "rng."))]
        assert model and all((straight[k] == carried[k]).all() for k in model), file
    assert runs_by_name(client)["carried"]["steps"] == STEPS


def test_fine_tune_the_default_weights_on_an_uploaded_text(client, app_server, tmp_path, shakespeare):
    fits = tmp_path / "fits.txt"
    fits.write_text(shakespeare[-20_000:], encoding="utf-8")
    message = start(client, run_name="tuned", max_iters=2, eval_interval=2, text_source="My own text",
                    text_file=handle_file(fits), init_from="default")
    assert "from the weights of **default**" in message
    status = wait_for(client, lambda s: s["state"] == "finished", timeout=300)
    assert (status["config"]["n_layer"], status["config"]["n_embd"]) == (6, 192)  # the default's shape, not tiny's
    assert status["evals"][0]["val_loss"] < 2.0  # it starts where the default weights are, not from noise
    card = (app_server["weights"] / "tuned" / "README.md").read_text()
    assert "Started from the weights of weights/default (fine-tuned)" in card
    assert runs_by_name(client)["tuned"]["init_from"] == "weights/default"

    foreign = tmp_path / "foreign.txt"
    foreign.write_text(shakespeare[:20_000] + "Ça va? Größe ☕\n", encoding="utf-8")
    with pytest.raises(Exception) as raised:  # a refused call raises (gr.Error), with the message
        start(client, run_name="refused", text_source="My own text", text_file=handle_file(foreign), init_from="default")
    refused = str(raised.value)
    for c in "Çöß☕":
        assert f"'{c}' (U+{ord(c):04X})" in refused
    assert "weights/default cannot represent" in refused
    with pytest.raises(Exception, match="no weights named"):
        start(client, run_name="nowhere", init_from="../../etc")
    assert client.predict(api_name="/training_status")["run"] != "refused"
