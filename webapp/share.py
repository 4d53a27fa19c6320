"""The Share tab: push weights to the Hugging Face Hub, pull anyone's, publish this app as a Space."""

from __future__ import annotations

import gradio as gr

from gpt.sharing import hub, weights
from gpt.errors import GPTError
from webapp import access, space
from webapp.state import MAX_UPLOAD_MB, WEIGHTS, refresh_weights, refused, weights_choices, weights_folder
from webapp.uploads import uploaded_file


def _reporter(progress: gr.Progress):
    return lambda fraction, message: progress(fraction, desc=message)


def push_to_hub(weights_name, repo_id, token, private, message, profile: gr.OAuthProfile | None,
                oauth_token: gr.OAuthToken | None, progress=gr.Progress()):
    """Upload weights/<weights_name> to the Hub model repo repo_id. Returns a message with the repo's URL."""
    token = access.hub_token(profile, oauth_token, token, "push", into=repo_id)
    try:
        url = hub.push(weights_folder(weights_name), repo_id, token=token, private=bool(private),
                       message=message or None, progress=_reporter(progress))
    except GPTError as e:
        raise refused(e)
    return f"✅ Pushed **{weights_name}** to [{repo_id}]({url}). Anyone can load it with " \
           f"`GPT.from_pretrained(\"{repo_id}\")`{' (once they have access: it is private)' if private else ''}."


def push_browser_run(files, repo_id, private=False, message="", profile: gr.OAuthProfile | None = None,
                     oauth_token: gr.OAuthToken | None = None, request: gr.Request = None, progress=gr.Progress()):
    """Upload a run trained in the visitor's browser (its model.safetensors, config.json and metrics.jsonl, as
    its Download holds them) and push it to the Hub model repo repo_id: the signed-in visitor's own namespace and
    token in public. The files are checked before anything touches them (gpt.sharing.hub.check_upload); a refusal writes
    nothing. Returns a message with the repo's URL."""
    token = access.hub_token(profile, oauth_token, None, "push", into=repo_id)
    try:
        if not files:
            raise GPTError("no files came: train a run in this browser first (Train on: this browser), or upload "
                           "the model.safetensors and config.json of its Download")
        paths = [uploaded_file(f, request) for f in files]  # only files this app's upload route stored
        named = {path.name: path for path in paths}
        if len(named) != len(paths):
            raise GPTError("two files have the same name: upload each of model.safetensors, config.json and "
                           "metrics.jsonl once")
        url = hub.push_upload(named, repo_id, token=token, private=bool(private), progress=_reporter(progress),
                              message=message or "Upload a character-level GPT trained in a web browser",
                              max_bytes=3 * MAX_UPLOAD_MB * 1_000_000)
    except GPTError as e:
        raise refused(e)
    return f"✅ Pushed the run trained in this browser to [{repo_id}]({url}). Anyone can load it with " \
           f"`GPT.from_pretrained(\"{repo_id}\")`{' (once they have access: it is private)' if private else ''}."


def pull_from_hub(repo_id, revision, name, overwrite, token, profile: gr.OAuthProfile | None,
                  oauth_token: gr.OAuthToken | None, progress=gr.Progress()):
    """Download the Hub repo repo_id into weights/<name> and select it for generation. Returns a message."""
    access.require_owner(profile, "pull weights onto this server")
    token = access.hub_token(profile, oauth_token, token, "pull")  # in public: the owner's own sign-in
    access.make_room(WEIGHTS, keep=(name or "").strip() or None)
    try:
        dest = hub.pull(repo_id, revision=revision, name=name, root=WEIGHTS, token=token, overwrite=bool(overwrite),
                        progress=_reporter(progress), max_bytes=access.max_pull_bytes())
    except GPTError as e:
        raise refused(e)
    return (f"✅ Pulled **{repo_id}** into weights/{dest.name}: it is selected in the Generate tab.",
            gr.Dropdown(choices=weights_choices(), value=dest.name))


def publish_space(space_id, weights_name, token, private, profile: gr.OAuthProfile | None,
                  oauth_token: gr.OAuthToken | None, progress=gr.Progress()):
    """Publish this app with weights/<weights_name> as its default weights to the Gradio Space space_id."""
    access.require_owner(profile, "publish a Space from this server")
    token = access.hub_token(profile, oauth_token, token, "publish", into=space_id)
    try:
        url = space.publish_space(space_id, weights_folder(weights_name), token=token, private=bool(private),
                                  progress=_reporter(progress))
    except GPTError as e:
        raise refused(e)
    return f"✅ Published: [{url}]({url}) builds and starts in a few minutes, with **{weights_name}** as its weights."


def build(demo: gr.Blocks, tab: gr.Tab, generate_weights: gr.Dropdown) -> None:
    """The Share tab's components and events; a pull selects its weights in `generate_weights`."""
    gr.Markdown("### Share on the Hugging Face Hub\n"
                "Push your weights to a model repo (with a model card, loss curve and a sample), pull anyone's, "
                "or publish this whole app as a Space running your weights.")
    token = gr.Textbox(label="Hugging Face token", type="password", placeholder="empty: use HF_TOKEN",
                       info="a write token from huggingface.co/settings/tokens; used for this request only, "
                            "never stored")
    saved = weights.list_weights(WEIGHTS)
    with gr.Row():
        with gr.Column():
            gr.Markdown("#### Push weights")
            push_weights = gr.Dropdown(saved, value="default", label="Weights", allow_custom_value=True)
            push_repo = gr.Textbox(label="Model repo", placeholder="user/my-shakespeare-gpt")
            push_private = gr.Checkbox(False, label="Private")
            push_message = gr.Textbox(label="Commit message", placeholder="empty: a description of the weights")
            push_btn = gr.Button("Push to the Hub", variant="primary")
            push_result = gr.Markdown()
        with gr.Column():
            gr.Markdown("#### Pull weights")
            pull_repo = gr.Textbox(label="Model repo", placeholder="user/their-gpt")
            pull_revision = gr.Textbox(label="Revision", placeholder="empty: main (or a branch, tag, commit)")
            pull_name = gr.Textbox(label="Save as weights/…", placeholder="empty: the repo's name")
            pull_overwrite = gr.Checkbox(False, label="Replace it if it exists")
            pull_btn = gr.Button("Pull from the Hub", variant="primary")
            pull_result = gr.Markdown()
        with gr.Column():
            gr.Markdown("#### Publish the app as a Space")
            space_repo = gr.Textbox(label="Space", placeholder="user/my-gpt-space")
            space_weights = gr.Dropdown(saved, value="default", label="Weights it serves", allow_custom_value=True)
            space_private = gr.Checkbox(False, label="Private")
            space_btn = gr.Button("Publish the Space", variant="primary")
            space_result = gr.Markdown()

    def controls(profile: gr.OAuthProfile | None):
        """What this visitor may do here, shown before a click; the handlers check again."""
        a = access.current()
        return (gr.Textbox(visible=not a.public), gr.Button(interactive=access.may_push(profile)),
                gr.Button(interactive=access.is_owner(profile)), gr.Button(interactive=access.is_owner(profile)))

    demo.load(controls, None, [token, push_btn, pull_btn, space_btn], api_visibility="private",
              concurrency_limit=None, show_progress="hidden")
    for dropdown in (push_weights, space_weights):
        gr.on([demo.load, tab.select], lambda current: refresh_weights(current, weights_choices(live=False)),
              dropdown, dropdown, api_visibility="private", concurrency_limit=None, show_progress="hidden")
    push_btn.click(push_to_hub, [push_weights, push_repo, token, push_private, push_message], push_result,
                   api_name="push_to_hub", concurrency_limit=2)
    pull_btn.click(pull_from_hub, [pull_repo, pull_revision, pull_name, pull_overwrite, token],
                   [pull_result, generate_weights], api_name="pull_from_hub", concurrency_limit=2)
    space_btn.click(publish_space, [space_repo, space_weights, token, space_private], space_result,
                    api_name="publish_space", concurrency_limit=2)
