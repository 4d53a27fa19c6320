"""The app: train a GPT from scratch and watch it learn; type a prompt and read Shakespeare.
    python app.py [--host 127.0.0.1] [--port 7860] [--share] [--public]

Each tab is a module of webapp/ that builds its components and wires its events; this file composes them.
"""

import argparse
import os
import threading

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls out of the machine at start
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import gradio as gr  # noqa: E402

from webapp import access, browser, generate, insides, ladder, live, runs, share, train  # noqa: E402
from webapp.state import MAX_UPLOAD_MB, engines, startup  # noqa: E402

startup()  # once, before the tabs list the weights: the shipped ones in place, a run a restart cut short found

CSS = """
.status progress { width: 80%; height: 14px; vertical-align: middle; } .status div { margin: 4px 0; }
.status .settings { color: #6b7280; font-size: 0.9em; } #access-notice p { margin: 0; }
.run-samples { display: flex; gap: 12px; overflow-x: auto; } .run-sample { flex: 1 1 0; min-width: 220px; }
.run-sample pre { white-space: pre-wrap; font-size: 0.85em; } .gen-error { color: #b91c1c; }
#runs-table th, #runs-table th * { word-break: keep-all !important; overflow-wrap: normal !important; }
"""

with gr.Blocks(title="GPT from scratch") as demo:
    gr.Markdown(
        "# GPT from scratch\n"
        "The decoder-only transformer of Andrej Karpathy's lecture *Let's build GPT: from scratch, in code, "
        "spelled out*, reading and writing one character at a time. **Train** one and watch its loss fall and "
        "its samples turn from noise into Shakespeare; **Generate** text from the weights that ship with the app "
        "or from your own runs; look at its **Insides**."
    )
    if access.current().sign_in:  # only on a Space, where "Sign in with Hugging Face" is real
        gr.LoginButton()
    notice = gr.Markdown(elem_id="access-notice")  # public: what this visitor may do, and how to get the rest
    demo.load(access.notice, None, notice, api_visibility="private", concurrency_limit=None)
    with gr.Tabs() as tabs:
        with gr.Tab("Train", id="train"):
            train.build(demo, tabs)
        with gr.Tab("Generate", id="generate") as generate_tab:
            generate_weights = generate.build(demo, generate_tab)
        with gr.Tab("Runs", id="runs") as runs_tab:
            runs.build(demo, runs_tab)
        with gr.Tab("Ladder", id="ladder") as ladder_tab:
            ladder.build(demo, ladder_tab)
        with gr.Tab("Insides", id="insides") as insides_tab:
            insides.build(demo, insides_tab)
        with gr.Tab("Share", id="share") as share_tab:
            share.build(demo, share_tab, generate_weights)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default=None, help="default: $GRADIO_SERVER_NAME or 127.0.0.1")
    parser.add_argument("--port", type=int, default=None, help="default: $GRADIO_SERVER_PORT or 7860")
    parser.add_argument("--share", action="store_true", help="also make a public gradio.live link")
    parser.add_argument("--public", action="store_true",
                        help="for a server strangers can reach: everyone watches and generates, only the policy "
                             "decides who trains (see docs/share.md); on a Space this is automatic")
    args = parser.parse_args()
    if args.public or args.share:
        os.environ["GPT_PUBLIC"] = "1"
    threading.Thread(target=engines.start, daemon=True).start()  # ready before the first visitor asks
    live.calm_queue(demo.queue(default_concurrency_limit=4))  # an app nobody uses takes ~no CPU
    # quiet: Gradio's own start-up lines tell the reader to "set share=True in launch()"; ours name the app's flags
    demo.launch(server_name=args.host, server_port=args.port, share=args.share, css=CSS + train.CSS, quiet=True,
                max_file_size=f"{MAX_UPLOAD_MB}mb", prevent_thread_lock=True, show_error=True,  # refusals say why
                head=browser.head(), app_kwargs={"routes": browser.ROUTES + live.routes(train.live_progress)})
    print(f"The app runs on {demo.local_url}" + (f" and on {demo.share_url}" if demo.share_url else
                                                 "  (python app.py --share: a public link too)"), flush=True)
    demo.block_thread()


if __name__ == "__main__":
    main()
