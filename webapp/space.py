"""Publish this app as a Gradio Space on the Hugging Face Hub, serving chosen weights as its default:

    python -m webapp.space user/my-space --weights weights/my-run [--private] [--message "..."]

The token comes from HF_TOKEN (or `hf auth login`), as for `python -m gpt.hub`. The Space is safe by default:
its front matter turns on "Sign in with Hugging Face", and the app runs in public mode there (webapp/access.py).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from huggingface_hub import SpaceCardData

from gpt.sharing import hub
from gpt.sharing.card import params_text
from gpt.errors import command
from gpt.sharing.pretrained import GPT

ROOT = Path(__file__).resolve().parent.parent  # the project: app.py, webapp/, gpt/, requirements.txt, README.md
# the Space's settings (its README's front matter); the project's README.md opens with the same, so the project
# itself runs as a Space (a test keeps the two equal: editing the docs cannot break publishing)
SPACE = {
    "title": "GPT from scratch", "emoji": "🎭", "colorFrom": "indigo", "colorTo": "yellow", "sdk": "gradio",
    "sdk_version": "6.31.0", "python_version": "3.11", "app_file": "app.py", "suggested_hardware": "cpu-basic",
    "short_description": "Train a GPT from scratch, watch it learn, write Shakespeare", "hf_oauth": True,
    "hf_oauth_scopes": ["read-repos", "write-repos", "manage-repos"],
}


def space_files(folder: Path, model: GPT, space_id: str) -> dict[str, bytes | Path]:
    """The app, its packages, requirements and the chosen weights as weights/default, with a Space README."""
    # the export extra too: a visitor's push from the Space then loads in transformers and ONNX as well
    requirements = b"\n".join((ROOT / f).read_bytes() for f in ("requirements.txt", "requirements-export.txt"))
    files: dict[str, bytes | Path] = {"app.py": ROOT / "app.py", "requirements.txt": requirements}
    for pattern in ("gpt/**/*.py", "webapp/*.py"):  # gpt's wings too (webapp/js holds no Python of ours)
        files.update({p.relative_to(ROOT).as_posix(): p for p in sorted(ROOT.glob(pattern))})
    # the code that runs in visitors' browsers (generating, training) and the lock of the libraries it loads
    files.update({f"webapp/{p.name}": p for p in sorted((ROOT / "webapp").glob("*.js"))})
    files.update({f"webapp/js/{name}": ROOT / "webapp" / "js" / name for name in ("package.json", "package-lock.json")})
    files.update({f"weights/default/{k}": v for k, v in hub.repo_files(folder, model, "weights/default").items()})
    graph = folder / hub.BROWSER_FILE  # (already there when the export ran): visitors' browsers generate with it
    if graph.is_file() and f"weights/default/{hub.BROWSER_FILE}" not in files:
        files[f"weights/default/{hub.BROWSER_FILE}"] = graph
    source = hub.origin(folder)
    # weights pulled from the Hub: the Space links their model repo, whose page then lists the Space
    front = f"---\n{SpaceCardData(**SPACE, models=[source] if source else None).to_yaml()}\n---\n"
    served = f"\n\nThe weights are [{source}](https://huggingface.co/{source})." if source else ""
    files["README.md"] = f"""{front}

# GPT from scratch

The decoder-only transformer of Andrej Karpathy's lecture "Let's build GPT: from scratch, in code, spelled
out", as an app: **Generate** Shakespeare from the weights in `weights/default` ({params_text(model.num_params())}
parameters, {model.config.n_layer} layers, {model.config.n_embd} channels), or **Train** a new one and watch
it learn.{served}

Anyone may watch the run and generate; sign in with Hugging Face to push weights to your own namespace. Who
may train is the owner's choice (`GPT_TRAINING_POLICY`: `owner`, `signed-in` or `anyone`, with caps), set under
Settings → Variables.

Published from the gpt-from-scratch project with `python -m webapp.space {space_id}`.
""".encode()
    return files


def publish_space(space_id: str, weights: str | Path, *, token: str | None = None, private: bool = False,
                  message: str | None = None, progress: hub.Progress | None = None) -> str:
    """Create or update a Gradio Space running this app with the chosen weights. Returns the Space's URL."""
    progress = hub.quiet(progress)
    space_id = hub.check_repo_id(space_id, "Space")
    progress(0.05, "checking the weights")
    folder, model = hub.check_weights(weights)
    return hub.upload(space_id, lambda: space_files(folder, model, space_id), repo_type="space", token=token or None,
                      private=private, message=message or f"Publish the app with weights {folder.name}",
                      action="publish the Space", progress=progress)


@command
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m webapp.space", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("space_id", help="user/name")
    parser.add_argument("--weights", default="weights/default", help="the weights folder the Space serves")
    parser.add_argument("--private", action="store_true")
    parser.add_argument("--message", help="commit message")
    args = parser.parse_args(argv)
    say = hub.terminal_progress()
    print(publish_space(args.space_id, args.weights, private=args.private, message=args.message, progress=say))
    return 0


if __name__ == "__main__":
    sys.exit(main())
