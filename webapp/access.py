"""Who may do what. A laptop trusts its one user; a public deployment lets everyone watch and generate, and
guards everything that changes the server or the Hub.

Public means: on a Hugging Face Space (SPACE_ID is set) or started with `python app.py --public` (GPT_PUBLIC=1).
There, three roles:
- a visitor (anonymous) watches the run, generates, looks at attention maps and the ladder;
- a visitor signed in with Hugging Face (only on a Space, where the sign-in is real) also pushes weights to
  their own namespace with their own OAuth token, and trains if the policy says so;
- the owner (SPACE_AUTHOR_NAME, or a name in GPT_OWNERS, signed in) trains, climbs the ladder, pulls and
  publishes; the owner's HF_TOKEN secret is never used for anyone's request.
Outside a Space Gradio's "Sign in" would sign anyone in as the machine's token owner, so it is not offered:
on `--public`, nobody is the owner through the page (the owner uses the command line on the machine).

The policy is read from the environment at every request (see docs/share.md):
GPT_TRAINING_POLICY=owner|signed-in|anyone, GPT_OWNERS=a,b, GPT_MAX_STEPS, GPT_MAX_MINUTES, GPT_MAX_PARAMS
(caps for runs started by others than the owner), GPT_MAX_RUNS (runs kept on disk), GPT_MAX_PULL_MB.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
from gradio.utils import get_space

from gpt.training import budget
from gpt.training.background import Limits

POLICIES = ("owner", "signed-in", "anyone")
IN_BROWSER = "train in your browser here instead (the Train tab's Train on: this browser)"  # anyone may, anywhere
KEPT = ("default", "ladder")  # folders the disk bound never removes


@dataclass(frozen=True)
class Access:
    public: bool
    sign_in: bool  # "Sign in with Hugging Face" is offered, and its profile can be trusted: on a Space only
    owners: frozenset[str]
    policy: str
    max_steps: int
    max_minutes: float
    max_params: int
    max_runs: int
    max_pull_mb: int


def _number(name: str, default, kind=int):
    try:
        return kind(os.environ.get(name) or default)
    except ValueError:
        return kind(default)  # a typo in a setting must not open the door: keep the safe default


def current() -> Access:
    """The deployment and the owner's policy, from the environment (cheap: read at every request)."""
    policy = os.environ.get("GPT_TRAINING_POLICY", "owner").strip().lower()
    owners = {os.environ.get("SPACE_AUTHOR_NAME", "")} | set(os.environ.get("GPT_OWNERS", "").split(","))
    return Access(public=bool(os.environ.get("SPACE_ID")) or os.environ.get("GPT_PUBLIC") == "1",
                  sign_in=get_space() is not None and bool(os.environ.get("OAUTH_CLIENT_ID")),  # hf_oauth: true
                  owners=frozenset(o.strip() for o in owners if o.strip()),
                  policy=policy if policy in POLICIES else "owner",
                  max_steps=_number("GPT_MAX_STEPS", 5000), max_minutes=_number("GPT_MAX_MINUTES", 15, float),
                  max_params=_number("GPT_MAX_PARAMS", 3_000_000), max_runs=_number("GPT_MAX_RUNS", 10),
                  max_pull_mb=_number("GPT_MAX_PULL_MB", 100))


def visitor(profile: gr.OAuthProfile | None) -> str | None:
    """The signed-in visitor's Hub name, where the sign-in can be trusted; else None.

    Only the session's profile says who someone is: a caller can send a token without signing in.
    """
    return profile.username if profile is not None and current().sign_in else None


def is_owner(profile: gr.OAuthProfile | None) -> bool:
    a = current()
    return not a.public or visitor(profile) in a.owners


def may_push(profile: gr.OAuthProfile | None) -> bool:
    """Whether this caller may push to the Hub at all (hub_token then says with which token, and where to)."""
    return not current().public or visitor(profile) is not None


def how_to_get_it(a: Access, signed_in: bool) -> str:
    if not a.sign_in:
        return "To do that on a server of your own, run the app on your machine: `python app.py`."
    return ("Duplicate this Space to do it on your own copy." if signed_in else
            "Sign in with Hugging Face if you own this Space, or duplicate the Space to do it on your own copy.")


def require_owner(profile: gr.OAuthProfile | None, action: str) -> None:
    """Refuse (gr.Error) unless the caller is the owner, or this is a laptop."""
    a = current()
    if not is_owner(profile):
        raise gr.Error(f"Only the owner may {action} here. {how_to_get_it(a, visitor(profile) is not None)}",
                       print_exception=False)


def may_train(profile: gr.OAuthProfile | None) -> str | None:
    """None if the caller may start a run or the ladder, else the one-line reason."""
    a, user = current(), visitor(profile)
    if is_owner(profile) or a.policy == "anyone" or (a.policy == "signed-in" and user is not None):
        return None
    if a.policy == "signed-in" and a.sign_in:
        return f"Sign in with Hugging Face to train on this server (one run at a time), or {IN_BROWSER}."
    return f"Only the owner may train on this server — {IN_BROWSER}. {how_to_get_it(a, user is not None)}"


def require_training(profile: gr.OAuthProfile | None) -> None:
    reason = may_train(profile)
    if reason:
        raise gr.Error(reason, print_exception=False)


def caps(profile: gr.OAuthProfile | None) -> Access | None:
    """The caps a run started by this caller must keep, or None (the owner, a laptop)."""
    return None if is_owner(profile) else current()


def limits(profile: gr.OAuthProfile | None) -> Limits | None:
    """What a run this caller starts may use, for the runner to hold every kind of run to; None: no limits."""
    a = caps(profile)
    return Limits(a.max_steps, budget.seconds(a.max_minutes, unit=60, what="GPT_MAX_MINUTES"), a.max_params) if a else None


def starter(profile: gr.OAuthProfile | None, request: gr.Request | None) -> str | None:
    """Who starts a run, to decide later who may stop it: the Hub name, or else the page's session."""
    if not current().public:
        return None
    user = visitor(profile)
    return user or f"session:{request.session_hash if request else ''}"


def may_stop(profile: gr.OAuthProfile | None, request: gr.Request | None, started_by: str | None) -> bool:
    """Only whoever started the run, or the owner, may stop it."""
    return is_owner(profile) or (started_by is not None and starter(profile, request) == started_by)


def shown_name(started_by: str | None) -> str:
    if started_by is None:
        return ""
    return "a visitor" if started_by.startswith("session:") else started_by


def hub_token(profile: gr.OAuthProfile | None, oauth_token: gr.OAuthToken | None, typed: str | None,
              action: str, into: str | None = None) -> str | None:
    """The token for a push, pull or publish; never the server's HF_TOKEN in public.

    Laptop: the typed token, else None (huggingface_hub then uses HF_TOKEN, the user's own). Public: the
    signed-in visitor's OAuth token (the typed one is ignored), and writes only `into` their own namespace.
    """
    a = current()
    if not a.public:
        return typed or None
    user = visitor(profile)
    if user is None or oauth_token is None or not oauth_token.token:
        why = (f"Sign in with Hugging Face first: you {action} with your own account." if a.sign_in else
               f"Visitors cannot {action} from this public server. {how_to_get_it(a, False)}")
        raise gr.Error(f"{why} The server's own token is never used for visitors.", print_exception=False)
    if into is not None and (into or "").strip().split("/")[0] != user:
        raise gr.Error(f"Signed in as {user}, you may {action} only into your own namespace: "
                       f"write the repo as {user}/<name>.", print_exception=False)
    return oauth_token.token


def max_pull_bytes() -> int | None:
    a = current()
    return a.max_pull_mb * 1_000_000 if a.public else None


def make_room(root: Path, keep: str | None = None) -> list[str]:
    """On a public deployment, remove the oldest runs so that one more fits under GPT_MAX_RUNS. Returns them.

    Only direct folders of `root` go, never 'default', the ladder, or `keep`.
    """
    a = current()
    if not a.public or not root.is_dir():
        return []
    runs = sorted((p for p in root.iterdir() if p.is_dir() and p.name not in (*KEPT, keep)),
                  key=lambda p: p.stat().st_mtime)
    removed = runs[:max(0, len(runs) - (a.max_runs - 1))]
    for p in removed:
        shutil.rmtree(p, ignore_errors=True)
    return [p.name for p in removed]


def notice(profile: gr.OAuthProfile | None) -> str:
    """One line: who this visitor is here, what they may do, and how to get the rest."""
    a = current()
    if not a.public:
        return ""
    user = visitor(profile)
    who = f"Signed in as **{user}**{' (owner)' if user in a.owners else ''}." if user else "You are not signed in."
    may = ["watch the run", "generate", "look at attention maps"]
    train = may_train(profile)
    if train is None:
        may.append("train" + ("" if is_owner(profile) else f" (up to {a.max_steps:,} steps, {a.max_minutes:g} "
                                                          f"minutes, {a.max_params / 1e6:g}M parameters)"))
    if user is not None:
        may.append(f"push to your own repos ({user}/…)")
    if is_owner(profile):
        may.append("pull and publish")
    return f"**Public app.** {who} You may {', '.join(may[:-1])} and {may[-1]}. {train or ''}".strip()
