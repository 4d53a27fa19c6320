"""Generation in the visitor's browser (webapp/browser.py, browser.js): a public app, Chromium whose network
reaches the app alone, onnxruntime-web served from the pinned npm copy (GPT_JS_DIR), and the server's
generation requests counted."""

import base64
import hashlib
import json
import re

import pytest
from playwright.sync_api import expect

from conftest import ROOT
from gpt import GPT
from gpt.config import read_config
from gpt.tokenizer import CharTokenizer
from test_browser import ARTIFACTS, browser  # noqa: F401 - the browser fixture
from test_export import ours_greedy

DEFAULT = ROOT / "weights" / "default"


def generate_fn(url: str) -> int:
    """The fn_index of the server's generation (api_name "generate"), as the page's requests name it."""
    import urllib.request

    config = json.loads(urllib.request.urlopen(url + "config").read())
    return next(d["id"] for d in config["dependencies"] if d.get("api_name") == "generate")


class Page:
    """A visitor's page whose requests can reach the app alone; it counts the server generations it asks for."""

    def __init__(self, browser, app, fail_model=False):
        self.context = browser.new_context(viewport={"width": 1280, "height": 900})
        self.url, self.fn, self.generations, self.outside = app["url"], generate_fn(app["url"]), 0, []
        self.context.route("**/*", self.route)
        self.fail_model = fail_model
        self.page = self.context.new_page()
        self.page.goto(self.url, wait_until="load")
        expect(self.page.locator("#train-progress .status")).to_be_visible(timeout=30_000)
        self.page.get_by_role("tab", name="Generate").click()

    def route(self, route):
        request = route.request
        if not request.url.startswith(self.url):
            self.outside.append(request.url)
            return route.abort()
        if self.fail_model and "/browser/model/" in request.url:
            return route.abort()
        if request.method == "POST" and "/queue/join" in request.url:
            if json.loads(request.post_data or "{}").get("fn_index") == self.fn:
                self.generations += 1
        return route.continue_()

    def generate(self, prompt="ROMEO:", n=200, temperature=None, seed="7", done="Generated in this browser"):
        page = self.page
        page.get_by_label("Prompt").fill(prompt)
        for label, value in (("Characters to generate", n), ("Temperature", temperature)):
            if value is not None:
                page.get_by_label(f"number input for {label}").fill(str(value))
                page.get_by_label(f"number input for {label}").press("Tab")
        page.get_by_label("Seed").fill(seed)
        page.get_by_label("Seed").press("Tab")
        page.get_by_role("button", name="Generate", exact=True).click()
        expect(page.locator("#gen-where")).to_contain_text(done, timeout=120_000)
        return page.get_by_label("Generated text").input_value()


@pytest.fixture(scope="module")
def visitor(chromium, public_app):  # noqa: F811
    """One visitor's page for the tests below, in order: a fresh browser (nothing cached) at the first."""
    page = Page(chromium, public_app)
    yield page
    page.context.close()


FETCHED = """() => performance.getEntriesByType('resource').filter((e) => e.name.includes('/browser/') &&
  !e.name.includes('/browser/info/')).reduce((bytes, e) => bytes + e.transferSize, 0)"""


def test_a_stranger_s_browser_writes_the_text_and_the_server_only_hands_out_the_file(visitor):
    page = visitor.page
    expect(page.locator("#run-on input[value='this browser']")).to_be_checked()  # a public app: the visitor's browser, by default
    first = visitor.generate()
    assert first.startswith("ROMEO:") and len(first) == len("ROMEO:") + 200
    where = page.locator("#gen-where").inner_text()
    assert re.search(r"200 characters in [\d.]+ s · [\d,]+ characters/s", where) and "seed 7" in where
    page.screenshot(path=ARTIFACTS / "browser-generate.png", full_page=True)
    assert page.evaluate(FETCHED) > 20e6  # the model (11 MB) and the runtime's WebAssembly (14 MB), once
    again = visitor.generate()
    assert again == first  # a seed repeats its text in the same browser
    other = visitor.generate(seed="8")
    assert other != first
    assert visitor.generations == 0 and visitor.outside == []  # nothing generated on the server, nothing fetched elsewhere

    page.get_by_label("Prompt").fill("ROMEO: héllo")  # named before anything runs, where the text would be
    page.get_by_role("button", name="Generate", exact=True).click()
    expect(page.locator("#gen-where")).to_contain_text("'é' (U+00E9)")
    expect(page.locator("#gen-where")).to_contain_text("Nothing generated")
    expect(page.get_by_label("Generated text")).to_have_value("")
    assert visitor.generations == 0


def test_the_model_comes_once_and_a_later_visit_reads_it_from_the_browser(visitor):
    visitor.generate(n=20)  # (the test above fetched the model already; this one may run alone)
    visitor.page.reload(wait_until="load")  # a later visit, in the same browser
    expect(visitor.page.locator("#train-progress .status")).to_be_visible(timeout=30_000)
    visitor.page.get_by_role("tab", name="Generate").click()
    text = visitor.generate(n=20)
    assert visitor.page.evaluate(FETCHED) < 100e3  # the library's small script at most: the rest from the cache
    # the follow view, at the end: what the newest character was drawn from, the sampler's distribution (our model's
    # float32 logits at that position, temperature 0.8, top-k 40) within 1e-4
    from gpt.insides.characters import next_logits
    from gpt.generation.sampling import Settings, probabilities

    model = GPT.from_pretrained(DEFAULT)
    sampler = probabilities(next_logits(model, text[:-1])[None], [Settings(0.8, top_k=40)])[0]  # (V,)
    bars = visitor.page.locator("#gen-follow .follow-bar")
    shown = {chr(int(b.get_attribute("data-code"))): float(b.get_attribute("data-p")) for b in bars.all()}
    assert len(shown) >= 10 and text[-1] in shown  # the ten likeliest, and the one drawn
    assert all(abs(p - float(sampler[model.vocab.index(ch)])) < 1e-4 for ch, p in shown.items())


def test_stop_ends_a_long_text_in_the_browser(visitor):
    page = visitor.page
    page.get_by_label("number input for Characters to generate").fill("5000")
    page.get_by_label("number input for Characters to generate").press("Tab")
    page.get_by_label("Seed").fill("3")
    page.get_by_role("button", name="Generate", exact=True).click()
    page.wait_for_function("() => document.querySelector('#gen-output textarea').value.length > 60", timeout=120_000)
    follow = page.locator("#follow-inner")  # the newest character's distribution follows the text, a few times a second
    expect(follow.locator(".follow-bar").first).to_be_visible()
    seen = follow.inner_html()
    page.wait_for_function("(seen) => document.querySelector('#follow-inner').innerHTML !== seen", arg=seen,
                           timeout=10_000)
    page.screenshot(path=ARTIFACTS / "browser-generate-follow.png", full_page=True)
    page.get_by_role("button", name="Stop generating").click()
    expect(page.locator("#gen-where")).to_contain_text("Generated in this browser", timeout=30_000)
    n = int(re.search(r"([\d,]+) characters in", page.locator("#gen-where").inner_text())[1].replace(",", ""))
    stopped = page.get_by_label("Generated text").input_value()
    page.wait_for_timeout(1500)
    assert page.get_by_label("Generated text").input_value() == stopped and n < 5000  # it stopped, and stays
    assert len(stopped) == len("ROMEO:") + n and visitor.generations == 0


def test_greedy_text_in_the_browser_is_our_model_s_past_block_size(visitor):
    """Temperature 0: the browser's graph writes what our own model writes, through a cache rebuild (128
    positions; 6 + 200 characters)."""
    model = GPT.from_pretrained(DEFAULT)
    tokenizer = CharTokenizer(model.vocab)
    ids = tokenizer.encode("ROMEO:")
    expected = "ROMEO:" + tokenizer.decode(ours_greedy(model, ids, 200, model.config.block_size // 2))
    assert visitor.generate(temperature=0) == expected


def test_where_the_model_file_fails_the_server_generates_and_says_why(browser, public_app):
    visitor = Page(browser, public_app, fail_model=True)
    visitor.generate(done="Generated on the server: the model file did not load in this browser")
    expect(visitor.page.locator("#gen-stats")).to_contain_text("seed 7 (type it in Seed",
                                                                 timeout=60_000)  # the server's last line
    text = visitor.page.get_by_label("Generated text").input_value()
    assert text.startswith("ROMEO:") and len(text) == len("ROMEO:") + 200
    assert visitor.generations == 1
    expect(visitor.page.locator("#follow-inner")).to_contain_text("was drawn from")  # the server's follow view
    assert visitor.page.locator("#follow-inner .follow-bar").count() >= 10
    visitor.context.close()


def test_the_model_file_is_named_by_its_content_and_cached_for_good(public_app):
    import urllib.error
    import urllib.request

    info = json.loads(urllib.request.urlopen(public_app["url"] + "browser/info/default").read())
    data = (DEFAULT / "onnx" / "model.onnx").read_bytes()
    assert info["bytes"] == len(data) and info["vocab"] == read_config(DEFAULT)[1]
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()[:12]).decode()
    assert info["url"] == f"/browser/model/default/{digest}.onnx"
    response = urllib.request.urlopen(public_app["url"] + info["url"][1:])
    assert response.read() == data and "immutable" in response.headers["Cache-Control"]
    for path in ("browser/model/default/stale.onnx", "browser/model/..%2F..%2Fetc/x.onnx",
                 "browser/ort/..%2Fpackage.json", "browser/ort/ort.all.min.js"):  # nothing else is served
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(public_app["url"] + path)
        assert e.value.code == 404
    for name in ("nonexistent", "the%20model%20training%20now"):  # the live model has no export: the server
        answer = json.loads(urllib.request.urlopen(public_app["url"] + "browser/info/" + name).read())
        assert "runs on the server" in answer["reason"] and "url" not in answer


def test_the_cdn_copy_is_the_pinned_npm_file(node_modules):
    """On a Space the page loads onnxruntime-web from the CDN, checked by its hash: the hash of the npm file."""
    from webapp.browser import ORT_SCRIPT, ORT_SCRIPT_SRI, ORT_VERSION, ORT_WASM_BYTES

    dist = node_modules / "onnxruntime-web"
    assert json.loads((dist / "package.json").read_text())["version"] == ORT_VERSION
    script = (dist / "dist" / ORT_SCRIPT).read_bytes()
    assert ORT_SCRIPT_SRI == "sha384-" + base64.b64encode(hashlib.sha384(script).digest()).decode()
    assert (dist / "dist" / "ort-wasm-simd-threaded.wasm").stat().st_size == ORT_WASM_BYTES  # the size the page says
