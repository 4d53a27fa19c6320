"""The app in a real browser (Chromium, driven by Playwright), as a learner uses it.

Screenshots land in artifacts/ (or $ARTIFACTS_DIR) for a person to look at.
"""

import re

import pytest
from playwright.sync_api import BrowserContext, expect

from gpt.ladder import rungs as ladder
from conftest import ARTIFACTS


@pytest.fixture
def browser(chromium):
    """The session's Chromium, and after each test the pages it opened closed: an open page listens to the app,
    and a module's pages left open took most of the two cores from every later test."""
    before = set(chromium.contexts)
    yield chromium
    for context in chromium.contexts:
        if context not in before:  # not the ones a longer-lived fixture holds (test_browser_train.py's minute run)
            context.close()


def open_app(browser, url, viewport=None, trains=True):
    """browser: a Browser (the page in a browser of its own), or a BrowserContext (one more tab in that browser)."""
    size = viewport or {"width": 1400, "height": 1000}
    page = browser.new_page() if isinstance(browser, BrowserContext) else browser.new_page(viewport=size)
    page.goto(url, wait_until="load")  # not "networkidle": the page polls every second
    expect(page.locator("#train-progress .status")).to_be_visible(timeout=30_000)
    if trains:
        expect(page.get_by_role("button", name="Start")).to_be_visible(timeout=30_000)
    return page


def advanced(page):
    """Open the Train tab's fold of settings (everything but the preset and the minutes)."""
    page.get_by_text("Advanced settings").click()
    expect(page.get_by_label("Layers")).to_be_visible()


def step_shown(page) -> int:
    match = re.search(r"step ([\d,]+) /", page.locator(".status").inner_text())
    return int(match.group(1).replace(",", "")) if match else -1


def test_train_watch_stop_and_generate_in_the_browser(browser, app_server):
    page = open_app(browser, app_server["url"])
    other = open_app(browser, app_server["url"])  # a second tab, idle: it learns of the run when it starts
    joins = []
    other.on("request", lambda r: "/queue/join" in r.url and joins.append(r.url))
    expect(page.get_by_text("Runs on:")).to_be_visible()
    page.screenshot(path=ARTIFACTS / "1-train-tab.png", full_page=True)

    page.get_by_label("Preset").click()
    page.get_by_role("option", name="tiny").click()
    advanced(page)
    expect(page.get_by_label("Layers")).to_have_value("2")  # the preset fills in its settings
    estimate = page.locator("#time-estimate")
    expect(estimate).to_contain_text(re.compile(r"steps on .*: ((about|roughly) \d|under 1 s)"), timeout=60_000)  # before Start
    page.get_by_label("Iterations").fill("100000")
    page.get_by_label("Eval every").fill("20")
    page.get_by_label("Run name").fill("browser-run")
    page.get_by_role("button", name="Start").click()
    expect(page.get_by_text("Started browser-run")).to_be_visible(timeout=30_000)

    expect(page.locator(".status")).to_contain_text("Training browser-run", timeout=30_000)
    first = step_shown(page)
    page.wait_for_function("() => /step [0-9,]+ \\//.test(document.querySelector('.status').innerText)")
    page.wait_for_timeout(2500)
    assert step_shown(page) > first  # the progress moves without a reload
    expect(page.locator("text=/tokens\\/s/").first).to_be_visible()
    expect(page.locator("text=/ETA/").first).to_be_visible()
    page.screenshot(path=ARTIFACTS / "2-training.png", full_page=True)
    expect(page.locator("#loss-chart canvas, #loss-chart svg.marks").first).to_be_visible()  # the chart is drawn

    # the second tab sees the same run without a reload (webapp/live.py wakes it), and cannot start another
    expect(other.locator(".status")).to_contain_text("Training browser-run", timeout=15_000)
    expect(other.get_by_role("button", name="Start")).to_be_disabled()
    page.screenshot(path=ARTIFACTS / "2-training.png", full_page=True)
    other.screenshot(path=ARTIFACTS / "3-second-tab.png", full_page=True)

    page.get_by_role("button", name="Stop").click()
    expect(page.locator(".status")).to_contain_text("Stopped browser-run", timeout=60_000)
    expect(other.locator(".status")).to_contain_text("Stopped browser-run", timeout=15_000)
    other.wait_for_timeout(1_500)  # the poll that saw the end
    joins.clear()
    other.wait_for_timeout(3_000)
    assert joins == []  # nothing moves: an open tab asks the server nothing
    page.screenshot(path=ARTIFACTS / "4-stopped.png", full_page=True)

    page.get_by_role("tab", name="Generate").click()
    weights = page.get_by_role("combobox", name="Weights")
    weights.click()
    page.get_by_role("option", name="browser-run").click()
    weights.click()
    page.get_by_role("option", name="default").click()
    page.get_by_label("number input for Characters to generate").fill("800")
    page.get_by_label("number input for Characters to generate").press("Tab")
    page.get_by_role("button", name="Generate").click()
    text = page.get_by_label("Generated text")
    expect(text).to_have_value(re.compile(r"^ROMEO:.{20,}", re.S), timeout=30_000)
    partial = len(text.input_value())
    expect(page.get_by_text(re.compile(r"800 tokens \(characters\) in"))).to_be_visible(timeout=60_000)
    assert len(text.input_value()) == len("ROMEO:") + 800 > partial  # it streamed in before it was complete
    page.screenshot(path=ARTIFACTS / "5-generate.png", full_page=True)


def test_the_tabs_of_one_browser_share_one_live_stream(browser, app_server):
    """Over HTTP/1.1 a browser opens 6 connections to a server. A tab held two for good (its /live stream, and the
    heartbeat Gradio opens in every tab of an app with a gr.State): the fourth tab of `python app.py` never loaded,
    and with one stream a browser the sixth did not. Now the tabs share the first one's stream (webapp/live.js) and
    the app has no gr.State: six tabs load, the others hear the stream through the first, and when the first closes
    another takes the stream over."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    requested = []
    context.on("request", lambda r: requested.append(r.url))
    first = open_app(context, app_server["url"])
    tabs = [open_app(context, app_server["url"]) for _ in range(5)]
    for tab in tabs:
        tab.wait_for_function("() => gptLive.heard()")  # through the first tab's stream
    assert sum(url.endswith("/live") for url in requested) == 1  # one stream for the browser
    assert not [url for url in requested if "/heartbeat/" in url]  # no tab holds a connection of its own
    with context.expect_event("request", lambda r: r.url.endswith("/live"), timeout=10_000):
        first.close()  # another tab takes the stream over
    assert sum(url.endswith("/live") for url in requested) == 2
    context.close()


def test_train_for_minutes_in_the_browser(browser, app_server):
    page = open_app(browser, app_server["url"])
    page.get_by_label("Preset").click()
    page.get_by_role("option", name="tiny").click()
    advanced(page)
    expect(page.get_by_label("Layers")).to_have_value("2")
    page.get_by_label("Train for (minutes)").fill("0.25")
    page.get_by_label("Train for (minutes)").press("Tab")
    # the estimate follows: about how many steps fit in the time, not how long the iterations take
    expect(page.locator("#time-estimate")).to_contain_text(re.compile(r"Trains for 15 s on .*: (about|roughly) [\d,]+ steps"),
                                                           timeout=60_000)
    page.get_by_label("Run name").fill("timed-browser-run")
    page.get_by_role("button", name="Start").click()
    status = page.locator(".status")
    expect(status).to_contain_text("training for 15 s", timeout=30_000)  # the clock, not the iterations
    expect(status).to_contain_text("ETA", timeout=15_000)
    page.screenshot(path=ARTIFACTS / "2b-training-for-minutes.png", full_page=True)
    page.get_by_label("Train for (minutes)").fill("0.5")  # the next run's: no measuring while this one trains
    page.get_by_label("Train for (minutes)").press("Tab")
    estimate = page.locator("#time-estimate")
    expect(estimate).to_contain_text("waits for the current run to end", timeout=15_000)
    expect(status).to_contain_text("Finished timed-browser-run", timeout=60_000)
    expect(status).to_contain_text("100%")
    # the run's end brings the estimate back, without touching a setting
    expect(estimate).to_contain_text(re.compile(r"Trains for 30 s on .*: (about|roughly) [\d,]+ steps"), timeout=60_000)
    page.screenshot(path=ARTIFACTS / "2c-timed-run-finished.png", full_page=True)


def pick_rung(page, label):
    box = page.locator("#rung-pick input")
    box.click()
    box.fill(label)
    page.get_by_role("option", name=label).click()


def test_ladder_climb_and_each_rungs_code_in_the_browser(browser, app_server):
    page = open_app(browser, app_server["url"])
    page.get_by_role("tab", name="Ladder").click()
    code = page.locator("#rung-code")
    # before a climb (rung 11: no other test climbs it): the code a rung adds, its idea, its figures
    expect(code).to_contain_text("Rung 2 · self-attention head", timeout=30_000)
    pick_rung(page, "11 · rotary positions")
    expect(code).to_contain_text("climbed here: not yet")
    expect(code).to_contain_text("RotaryAttention.forward")
    expect(code).to_contain_text("replaces MultiHeadAttention.forward of gpt/model.py")
    code.scroll_into_view_if_needed()
    page.screenshot(path=ARTIFACTS / "6a-rung-code-before-a-climb.png", full_page=True)
    pick_rung(page, "6 · layer norm")
    expect(code).to_contain_text("the lecture's val")
    page.get_by_label("Steps per rung").fill("30")
    page.get_by_label("Steps per rung").press("Tab")
    for rung in ladder.RUNGS[:4]:  # rungs 5 and 6 alone: the view compares rung 6 with the rung before it
        page.locator(f"#ladder-rungs input[type=checkbox][name='{rung.number}']").uncheck()
    page.get_by_role("button", name="Climb the ladder").click()
    expect(page.get_by_text("Climbing rungs 5, 6 ")).to_be_visible(timeout=30_000)
    expect(page.get_by_text("LayerNorm before attention").locator("visible=true").first).to_be_visible(timeout=30_000)  # the table
    climb = page.get_by_role("button", name="Climb the ladder")
    expect(climb).to_be_disabled(timeout=30_000)  # the climb is going (not the button before the page knew it)
    expect(climb).to_be_enabled(timeout=300_000)  # both rungs done
    expect(page.locator("#ladder-chart canvas, #ladder-chart svg.marks").first).to_be_visible()
    # after it: the view fills in what the rung reached, against the rung before
    expect(code).to_contain_text(re.compile(r"climbed here: val \d\.\d{3}, [+-]\d\.\d{3} against rung 5"),
                                 timeout=30_000)
    code.scroll_into_view_if_needed()
    page.screenshot(path=ARTIFACTS / "6b-rung-code-after-a-climb.png", full_page=True)
    page.screenshot(path=ARTIFACTS / "6-ladder.png", full_page=True)


def test_insides_bars_follow_the_temperature_a_click_appends_and_the_map_labels_every_character(browser, app_server):
    import shutil

    import torch

    from gpt import GPT
    from gpt.sharing import weights

    run = app_server["weights"] / "insides-run"  # the shipped weights, as a run that kept its table of step 0
    shutil.copytree(app_server["weights"] / "default", run)
    model = GPT.from_pretrained(run)
    torch.manual_seed(0)
    weights.save_start_embedding(run, GPT(model.config, model.vocab).token_embedding_table.weight)
    try:
        insides(browser, app_server)
    finally:
        shutil.rmtree(run)


def insides(browser, app_server):
    page = open_app(browser, app_server["url"], {"width": 1280, "height": 900})
    page.get_by_role("tab", name="Insides").click()
    after = page.locator("#next-bars-inner > div").nth(1)  # the distribution after the settings
    expect(after.locator(".next-bar")).to_have_count(10, timeout=30_000)
    expect(page.locator("#char-map text.char-label")).to_have_count(65, timeout=30_000)  # every character, labelled
    expect(page.locator("#char-map")).to_contain_text("⏎")  # newline and space, made visible
    expect(page.locator("#char-map")).to_contain_text("␣")
    expect(page.locator("#char-map")).to_contain_text("No map at step 0: the shipped weights")  # none kept: one line
    page.locator("#insides-weights input").click()
    page.get_by_role("option", name="insides-run").click()
    expect(page.locator("#char-map svg")).to_have_count(2, timeout=30_000)  # step 0 beside the end
    expect(page.locator("#char-map text.char-label")).to_have_count(130)
    start, end = (page.locator("#char-map .char-map-one").nth(i) for i in (0, 1))
    expect(start).to_contain_text("Step 0")
    assert start.locator("svg").inner_html() != end.locator("svg").inner_html()
    before = after.inner_text()
    temperature = page.locator("#insides-temperature input[type=number]")
    temperature.fill("1.6")
    temperature.press("Tab")
    expect(after).to_contain_text("temperature 1.6", timeout=30_000)
    assert after.inner_text() != before  # the bars changed with it
    prompt = page.locator("#insides-prompt textarea")
    text = prompt.input_value()
    bar = after.locator(".next-bar").first
    char, shown = chr(int(bar.get_attribute("data-code"))), after.inner_text()
    bar.click()  # sampling by hand: the character is appended, and the bars move on to the next one
    expect(prompt).to_have_value(text + char)
    expect(after).not_to_have_text(shown, timeout=30_000)
    page.get_by_role("button", name="Show attention").click()  # the affinities wei, for the same text
    expect(page.locator("#attention-maps img").first).to_be_visible(timeout=30_000)
    page.screenshot(path=ARTIFACTS / "10-insides-1280.png", full_page=True)
    page.set_viewport_size({"width": 390, "height": 844})
    page.wait_for_timeout(500)
    page.screenshot(path=ARTIFACTS / "10-insides-390.png", full_page=True)


def test_share_push_and_pull_in_the_browser(browser, app_server, hub_server):
    from conftest import TOKENS

    token = next(t for t, (user, role) in TOKENS.items() if user == "alice" and role == "write")
    page = open_app(browser, app_server["url"])
    page.get_by_role("tab", name="Share").click()
    page.get_by_label("Hugging Face token").fill(token)
    expect(page.get_by_label("Hugging Face token")).to_have_attribute("type", "password")  # never shown
    page.get_by_label("Model repo").locator("visible=true").first.fill("alice/from-browser")
    page.get_by_role("button", name="Push to the Hub").click()
    expect(page.get_by_text("Pushed default to alice/from-browser")).to_be_visible(timeout=60_000)
    assert ("model", "alice/from-browser") in hub_server.state.repos

    page.get_by_label("Model repo").locator("visible=true").nth(1).fill("alice/from-browser")
    page.get_by_label("Save as weights/…").fill("browser-pulled")
    page.get_by_role("button", name="Pull from the Hub").click()
    expect(page.get_by_text("into weights/browser-pulled")).to_be_visible(timeout=60_000)
    page.get_by_label("Model repo").locator("visible=true").first.fill("bob/not-mine")
    page.get_by_role("button", name="Push to the Hub").click()
    expect(page.get_by_text("(403)").first).to_be_visible(timeout=60_000)
    page.screenshot(path=ARTIFACTS / "7-share.png", full_page=True)
    page.get_by_role("tab", name="Generate").click()
    expect(page.get_by_label("Weights", exact=True).locator("visible=true").first).to_have_value("browser-pulled")


def test_a_public_space_shows_each_visitor_what_they_may_do_and_why_not(browser, space_app):
    from conftest import VISITOR, signed_in_cookie

    page = open_app(browser, space_app["url"], trains=False)  # anonymous
    notice = page.locator("#access-notice")
    expect(notice).to_contain_text("Public app. You are not signed in.", timeout=30_000)
    expect(notice).to_contain_text("You may watch the run, generate and look at attention maps.")
    expect(notice).to_contain_text("Only the owner may train on this server — train in your browser here instead "
                                   "(the Train tab's Train on: this browser). Sign in with Hugging Face if you own "
                                   "this Space")
    expect(page.get_by_role("button", name="Sign in with Hugging Face")).to_be_visible()
    # not on the server: their Start trains in their own browser (tests/test_browser_train.py runs it)
    expect(page.locator("#train-on input[value='this browser']")).to_be_checked()
    expect(page.get_by_role("button", name="Write with the shipped weights →")).to_be_visible()
    page.screenshot(path=ARTIFACTS / "public-1-anonymous-train.png", full_page=True)
    page.get_by_role("tab", name="Share").click()
    for button in ("Push to the Hub", "Pull from the Hub", "Publish the Space"):
        expect(page.get_by_role("button", name=button)).to_be_disabled()
    expect(page.get_by_label("Hugging Face token")).to_have_count(0)  # no token field: the server's is never used
    page.screenshot(path=ARTIFACTS / "public-2-anonymous-share.png", full_page=True)
    page.get_by_role("tab", name="Runs").click()  # looking is open to everyone, changing runs is not
    for button in ("Carry on", "Delete…"):
        expect(page.get_by_role("button", name=button)).to_be_disabled()
    page.get_by_role("tab", name="Generate").click()
    page.get_by_role("button", name="Generate").click()  # what a stranger may do, they can do
    expect(page.get_by_label("Generated text")).to_have_value(re.compile(r"^ROMEO:.{20,}", re.S), timeout=60_000)

    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.add_cookies([{"name": "session", "value": signed_in_cookie("bob", VISITOR), "url": space_app["url"]}])
    bob = context.new_page()
    bob.goto(space_app["url"], wait_until="load")
    expect(bob.locator("#access-notice")).to_contain_text("Signed in as bob.", timeout=30_000)
    expect(bob.get_by_role("button", name="Logout (bob)")).to_be_visible()
    bob.get_by_role("tab", name="Share").click()
    expect(bob.get_by_role("button", name="Push to the Hub")).to_be_enabled()
    expect(bob.get_by_role("button", name="Pull from the Hub")).to_be_disabled()
    bob.screenshot(path=ARTIFACTS / "public-3-signed-in-share.png", full_page=True)
    context.close()


def test_a_stranger_with_no_live_run_watches_the_shipped_weights_learn(browser, space_app):
    """A public page with nothing training is not empty: it replays how the shipped weights learned, from their
    own log (curve and samples, noise to Shakespeare), and starts nothing."""
    from gradio_client import Client

    before = sorted(p.name for p in space_app["weights"].iterdir())
    page = open_app(browser, space_app["url"], trains=False)  # anonymous
    expect(page.locator("#train-progress")).to_contain_text("Replay of how the shipped weights learned",
                                                            timeout=30_000)
    expect(page.locator("#train-progress")).to_contain_text("Write with these weights in the Generate tab")
    samples = page.locator("#train-samples")
    expect(samples).to_contain_text("step 0", timeout=60_000)  # the noise it started from
    page.wait_for_function(  # then the samples of later evaluations, as the replay plays on
        "() => (document.querySelector('#train-samples').innerText.match(/step [\\d,]+ · val/g) || []).length >= 3",
        timeout=60_000)
    expect(page.locator("#loss-chart canvas, #loss-chart svg").first).to_be_visible()
    page.screenshot(path=ARTIFACTS / "public-0-replay.png", full_page=True)
    status = Client(space_app["url"], verbose=False).predict(api_name="/training_status")
    assert status["state"] == "idle" and sorted(p.name for p in space_app["weights"].iterdir()) == before


def test_an_empty_seed_gives_a_new_text_each_time_and_a_typed_seed_the_same(browser, app_server):
    page = open_app(browser, app_server["url"])
    page.get_by_role("tab", name="Generate").click()
    seed = page.get_by_role("textbox", name=re.compile(r"^Seed"))  # the Train tab has a numeric Seed too
    expect(seed).to_have_value("")  # empty, as its placeholder promises: not 0
    length = page.get_by_label("number input for Characters to generate")
    output = page.get_by_label("Generated text")

    def generate(n: int) -> str:
        """Generate n characters; each call asks for a new length, so the wait is for the new text, not the last."""
        length.fill(str(n))
        length.press("Tab")
        page.get_by_role("button", name="Generate").click()
        expect(output).to_have_value(re.compile(rf"^ROMEO:.{{{n}}}$", re.S), timeout=60_000)
        return output.input_value()[len("ROMEO:"):]

    first, second = generate(150), generate(151)
    assert first != second[:150]  # an empty seed: a different text every time
    page.screenshot(path=ARTIFACTS / "8-seed-empty.png", full_page=True)
    seed.fill("7")
    seeded = generate(152), generate(153)
    assert seeded[1][:152] == seeded[0] != first  # seed 7 twice: the same text (one character longer)
    seed.fill("seven")
    page.get_by_role("button", name="Generate").click()
    expect(page.get_by_text("seed must be a whole number").first).to_be_visible(timeout=30_000)
    page.screenshot(path=ARTIFACTS / "8-seed-7.png", full_page=True)
    seed.fill("7")
    page.get_by_label("Prompt").fill("Café")  # a character the model does not know: said where the text would be
    page.get_by_role("button", name="Generate").click()
    said = page.locator("#gen-stats .gen-error")  # in the page where the text's figures go: not a toast that fades
    expect(said).to_contain_text("Nothing generated", timeout=30_000)
    expect(said).to_contain_text("does not know: 'é'")
    expect(output).to_have_value("")  # the last text and its figures went with it
    page.wait_for_timeout(1_000)
    expect(said).to_contain_text("does not know: 'é'")  # it stays
    page.screenshot(path=ARTIFACTS / "8-unknown-character.png", full_page=True)


def test_the_ladder_steps_field_starts_empty_not_at_an_invalid_0(browser, app_server):
    page = open_app(browser, app_server["url"])
    page.get_by_role("tab", name="Ladder").click()
    steps = page.get_by_label("Steps per rung")
    expect(steps).to_have_value("")
    expect(steps).to_have_attribute("placeholder", "empty = the lecture's")
    page.screenshot(path=ARTIFACTS / "9-ladder-steps.png", full_page=True)


@pytest.mark.parametrize("viewport", [{"width": 1280, "height": 900}, {"width": 390, "height": 844}],
                         ids=["laptop", "phone"])
def test_start_is_in_view_on_load_and_the_run_is_in_view_after_it(browser, app_server, viewport):
    """The first step needs no scrolling; after Start, what the learner watches is on the screen; so is the text
    Generate writes."""
    page = open_app(browser, app_server["url"], viewport)
    start = page.get_by_role("button", name="Start")
    expect(start).to_be_in_viewport()
    expect(page.get_by_label("Preset")).to_be_in_viewport()
    expect(page.get_by_label("Train for (minutes)")).to_be_in_viewport()
    expect(page.get_by_label("Layers")).to_be_hidden()  # the rest waits in the fold
    page.get_by_label("Preset").click()
    page.get_by_role("option", name="tiny").click()
    page.get_by_label("Train for (minutes)").fill("2")  # stopped below: never over before the page shows it
    page.get_by_label("Train for (minutes)").press("Tab")
    start.click()
    expect(page.locator(".status")).to_contain_text("Training tiny-", timeout=30_000)
    expect(page.locator("#train-progress")).to_be_in_viewport()
    expect(page.locator("#loss-chart")).to_be_in_viewport(ratio=0.5)
    page.screenshot(path=ARTIFACTS / f"start-{viewport['width']}.png")
    page.get_by_role("button", name="Stop").click()
    expect(page.locator(".status")).to_contain_text("Stopped tiny-", timeout=60_000)
    expect(page.locator("#train-message")).to_be_empty(timeout=15_000)  # "Started …" went with its run
    # Generate: the text streams where it is seen (beside the settings, or scrolled to on a phone)
    page.get_by_role("tab", name="Generate").click()
    page.get_by_role("button", name="Generate", exact=True).click()
    output = page.get_by_label("Generated text")
    expect(output).to_have_value(re.compile(r"^ROMEO:.{20,}", re.S), timeout=60_000)
    expect(output).to_be_in_viewport(ratio=0.5)
    page.screenshot(path=ARTIFACTS / f"generate-{viewport['width']}.png")
