"""The Generate tab: pick weights, type a prompt, and read the text as it streams in."""

from __future__ import annotations

import html
import random
import time

import gradio as gr

from gpt.generation.engine import MAX_STREAMS
from gpt.errors import GPTError
from webapp import access
from webapp.insides import follow_view
from webapp.state import optional_number, refresh_weights, refused, text_stream, weights_choices

MAX_NEW_TOKENS = 5000
RUN_ON = ["this browser", "the server"]
# a weights choice that is never a folder (a name has no spaces): the run this browser trained (train_browser.js keeps
# it). Offered when the page says it holds one (HAS_RUN_JS); it generates in the page, whatever "Run on" says
BROWSER_RUN = "trained in this browser"
HAS_RUN_JS = "(current, has) => [current, Boolean(window.gptTrain && window.gptTrain.state().zip)]"
# Generate's click, in the page: webapp/browser.js generates, streaming into the text box; the server's event
# (the hidden button) runs when the server is chosen, or when the browser cannot, and the page says why
GENERATE_JS = """
(runOn, name, prompt, maxNew, temperature, topK, topP, seedText) => {
  const box = document.querySelector('#gen-output textarea');
  document.querySelector('#gen-output')?.scrollIntoView({ block: 'nearest' });  // a phone: the text, not the settings
  const stats = document.querySelector('#gen-stats');
  const where = document.querySelector('#gen-where');
  const say = (html) => { where.innerHTML = `<div class='gen-where'>${html}</div>`; };
  const put = (text) => { box.value = text; box.dispatchEvent(new Event('input', { bubbles: true })); };
  const escape = (t) => t.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
  document.querySelector('#gen-follow').innerHTML = '';  // the view of an earlier text goes
  const server = (why) => {
    stats.style.display = '';
    say(why ? `Generated on the server: ${escape(why)}.` : 'Generated on the server.');
    document.querySelector('#generate-server').click();
    document.querySelector('#follow-start').click();  // the follow view, from the server while its text streams
  };
  const kept = name === 'BROWSER_RUN';  // the run this browser trained: only here, never on the server
  if (!kept && (runOn !== 'this browser' || !window.gptBrowser)) { server(window.gptBrowser ? '' : 'the page could not load its browser code'); return []; }
  const seed = /^\\s*\\d+\\s*$/.test(seedText || '') ? Number(seedText) % 2147483648 : Math.floor(Math.random() * 2147483647);
  const opts = { name, prompt: prompt || '', maxNew: Math.max(1, Math.min(Number(maxNew) || 1, MAX_NEW)), temperature: Number(temperature),
                 topK: Number(topK) || 0, topP: Number(topP) || 1, seed };
  stats.style.display = 'none'; put(opts.prompt);  // the server's figures of an earlier text go (the line below says)
  say('Generating in this browser…');
  const rate = (n, s) => `${n.toLocaleString()} characters in ${s.toFixed(2)} s · <b>${Math.round(n / Math.max(s, 1e-3)).toLocaleString()} characters/s</b>`;
  let followed = 0;  // the follow view: at most 4 updates a second, so that it never slows the text
  const show = (text, n, s, follow) => {
    put(text); say(`Generating in this browser · ${rate(n, s)}`);
    if (follow && performance.now() - followed > 250) { followed = performance.now(); window.gptBrowser.showFollow(follow()); }
  };
  if (kept && !(window.gptBrowser && window.gptTrain)) { say("<span class='gen-error'>⚠ <b>Nothing generated:</b> the page could not load its browser code</span>"); return []; }
  (kept ? window.gptTrain.generate(opts, show) :
   window.gptBrowser.generate(opts, show, (model, runtime) => say(`Loading the model into this browser: ${(model / 1e6).toFixed(1)} MB` +
                               (runtime ? ` and onnxruntime-web, ${(runtime / 1e6).toFixed(1)} MB` : '') + ', once; then it is cached…')))
    .then((r) => { put(r.text); if (r.follow) window.gptBrowser.showFollow(r.follow()); say(`▶ Generated in this browser: ${rate(r.n, r.seconds)} · weights: ${escape(name)} · ` +
                   `<b>seed ${seed}</b> (type it in Seed to make this text again in this browser)`); })
    .catch((e) => {
      if (kept || e instanceof window.gptBrowser.Refusal) { put(''); say(`<span class='gen-error'>⚠ <b>Nothing generated:</b> ${escape(e.message || String(e))}</span>`); }
      else server(e instanceof window.gptBrowser.Fallback ? e.message : `the browser failed (${e.message || e})`);
    });
  return [];
}
""".replace("MAX_NEW", str(MAX_NEW_TOKENS)).replace("BROWSER_RUN", BROWSER_RUN)
FOLLOW_S = 0.5  # the server's follow view: twice a second, one forward pass each, while its text streams
SHOW_FOLLOW_JS = "(data) => { if (data && window.gptBrowser) window.gptBrowser.showFollow(JSON.parse(data)); return []; }"
MAX_SEED = 2**31 - 1  # a seed drawn for an empty field: short enough to read and type again


def failed(error: gr.Error):
    """What the page shows for a refused generation, where the text would be: the old text and figures go."""
    return "", f"<div class='gen-error'>⚠ <b>Nothing generated:</b> {html.escape(error.message)}</div>"


def generate(weights_name, prompt, max_new_tokens, temperature, top_k, top_p, seed):
    """Stream a continuation of prompt. Yields the text so far and a line of figures, which names the seed
    (drawn here when the field is empty) so that any text can be made again."""
    try:
        if weights_name == BROWSER_RUN:
            raise GPTError("a run trained in a visitor's browser stays there: that page generates with it, the server "
                           "cannot")
        prompt = prompt or ""
        seed = optional_number("seed", seed)
        seed = random.randint(0, MAX_SEED) if seed is None else seed  # empty: a different text every time
        stream = text_stream(weights_name, prompt, max_new_tokens=int(max_new_tokens), temperature=float(temperature),
                             top_k=int(top_k or 0) or None, top_p=float(top_p or 1.0),  # 0 and 1 mean off
                             seed=seed)
    except (GPTError, ValueError, TypeError) as e:
        error = refused(e)
        yield failed(error)  # shown on the page; the raise is what an API caller sees (and the page as a toast)
        raise error
    text, start, shown, n = prompt, time.perf_counter(), 0.0, 0
    try:
        for n, ch in enumerate(stream, start=1):
            text += ch
            now = time.perf_counter()
            if now - shown > 0.2:  # 5 updates a second: smooth to read, light on a server that many visitors share
                shown = now
                yield text, f"{n:,} tokens · {n / (now - start):,.0f} tokens/s · seed {seed}"
    except GPTError as e:  # the engine's process stopped under this stream: say so
        error = refused(e)
        yield failed(error)
        raise error
    finally:
        stream.close()  # Stop generating: this visitor's stream leaves the batch, everyone else's goes on
    elapsed = time.perf_counter() - start
    rate = f" · **{n / elapsed:,.0f} tokens/s**" if n else ""
    yield text, (f"{n:,} tokens (characters) in {elapsed:.2f} s{rate} · weights: {weights_name} · "
                 f"**seed {seed}** (type it in Seed to make this text again)")


def build(demo: gr.Blocks, tab: gr.Tab) -> gr.Dropdown:
    """The Generate tab's components and events; returns its weights dropdown (pulling weights selects them)."""
    choices = weights_choices()
    with gr.Row():  # the text beside the settings on a wide window, under them on a phone: in view as it streams
        with gr.Column(scale=1, min_width=360):
            with gr.Row():
                weights_dd = gr.Dropdown(choices, value=(choices or [None])[0], label="Weights",
                                         allow_custom_value=True,  # the list changes as runs finish: generate checks
                                         info="the shipped default, your runs, the model training right now, or the "
                                              "run trained in this browser", scale=4)
                refresh_btn = gr.Button("↻ Refresh list", scale=1)
            prompt = gr.Textbox(label="Prompt", value="ROMEO:", lines=2,
                                placeholder="empty: start from a new line, as in the lecture")
            with gr.Row():
                max_new_tokens = gr.Slider(1, MAX_NEW_TOKENS, value=500, step=1, label="Characters to generate")
                temperature = gr.Slider(0, 2, value=0.8, step=0.05, label="Temperature",
                                        info="0 = always the likeliest")
            with gr.Row():
                top_k = gr.Slider(0, 100, value=40, step=1, label="Top-k", info="0 = off")
                top_p = gr.Slider(0.05, 1, value=1.0, step=0.05, label="Top-p", info="1 = off")
                seed = gr.Textbox("", label="Seed", placeholder="empty = different every time", max_lines=1,
                                  info="a whole number repeats a text")  # may be empty: a gr.Number would send 0
            with gr.Row():
                gen_btn = gr.Button("Generate", variant="primary", scale=3)
                gen_stop = gr.Button("Stop generating", scale=1, elem_id="gen-stop")  # the browser's too (browser.js)
                run_on = gr.Radio(RUN_ON, value=RUN_ON[1], label="Run on", scale=2, elem_id="run-on",
                                  info="this browser: the model comes to you once, then runs here")
        with gr.Column(scale=1, min_width=360):
            output = gr.Textbox(label="Generated text", lines=16, max_lines=40, elem_id="gen-output")
            stats = gr.Markdown(elem_id="gen-stats")
            where = gr.HTML(elem_id="gen-where")  # which of the two made the text, how fast (written by browser.js)
            # the distribution the newest character was drawn from, following the text (drawn by browser.js)
            gr.HTML(elem_id="gen-follow")

    # the server's generation: what Generate runs on the server (and where the browser cannot), and the API
    server_btn = gr.Button("Generate on the server", elem_id="generate-server", elem_classes=["gpt-hidden"])
    has_run = gr.Checkbox(False, elem_classes=["gpt-hidden"], container=False)  # set by the page (HAS_RUN_JS)
    gr.on([demo.load, tab.select, refresh_btn.click], weights_list, [weights_dd, has_run], weights_dd, js=HAS_RUN_JS,
          api_visibility="private", concurrency_limit=None, show_progress="hidden")
    demo.load(default_run_on, None, run_on, api_visibility="private", concurrency_limit=None)
    # Generate: in this browser when chosen (no request to the server but for the model file), else the server
    gr.on([gen_btn.click, prompt.submit], None,
          [run_on, weights_dd, prompt, max_new_tokens, temperature, top_k, top_p, seed], None, js=GENERATE_JS)
    generating = server_btn.click(generate, [weights_dd, prompt, max_new_tokens, temperature, top_k, top_p, seed],
                                  [output, stats], api_name="generate",
                                  concurrency_limit=MAX_STREAMS)  # nobody queues: the engine batches them
    # the server's follow view: while its text streams, twice a second, the distribution of the newest character
    follow_data = gr.Textbox("", elem_classes=["gpt-hidden"], container=False)  # its JSON, drawn by browser.js
    follow_timer = gr.Timer(FOLLOW_S, active=False)
    follow_start = gr.Button("Follow", elem_id="follow-start", elem_classes=["gpt-hidden"])  # clicked with the server's
    follow_start.click(lambda: gr.Timer(active=True), None, follow_timer, api_visibility="private",
                       concurrency_limit=None, show_progress="hidden")
    follow_inputs = [weights_dd, output, prompt, temperature, top_k, top_p]
    follow_timer.tick(follow_view, follow_inputs, follow_data, api_visibility="private", concurrency_limit=4,
                      trigger_mode="always_last", show_progress="hidden")
    generating.then(follow_last, follow_inputs, [follow_data, follow_timer], api_visibility="private",
                    show_progress="hidden")
    follow_data.change(None, follow_data, None, js=SHOW_FOLLOW_JS)
    gen_stop.click(lambda: gr.Timer(active=False), None, follow_timer, cancels=[generating],
                   api_visibility="private")
    return weights_dd


def follow_last(*inputs):
    """The follow view of the finished text, and the timer stopped."""
    return follow_view(*inputs), gr.Timer(active=False)


def weights_list(current, browser_has_run: bool = False):
    """The weights dropdown, up to date; "trained in this browser" first where the page holds such a run."""
    choices = weights_choices()
    return refresh_weights(current, [BROWSER_RUN, *choices] if browser_has_run else choices)


def default_run_on() -> str:
    """A public app lets each visitor's browser generate; a laptop's own server is as close as its browser."""
    return RUN_ON[0] if access.current().public else RUN_ON[1]
