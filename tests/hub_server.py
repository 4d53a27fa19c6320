"""A stand-in for the Hugging Face Hub, for tests: it speaks the Hub's HTTP protocol for what this project uses.

It is NOT the Hub: repos live in memory, there is no git, no Xet, no web pages. It answers the real
`huggingface_hub` client (pointed at it with HF_ENDPOINT, uploads with HF_HUB_DISABLE_XET=1) for:
whoami, create repo, validate-yaml, preupload, LFS batch + PUT, commit (NDJSON), repo info at a revision, tree
listing, resolve (HEAD/GET), and answers 401/403/404 the way the Hub does.

    python -m tests.hub_server --port 8765 --token hf_user_write:user:write   # to try it by hand
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlparse

LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".png", ".jpg", ".gif", ".zip", ".gz", ".npy")


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Repo:
    kind: str  # "model" | "space"
    repo_id: str
    private: bool
    owner: str
    sdk: str | None = None
    commits: list[tuple[str, dict[str, bytes]]] = field(default_factory=list)  # (commit sha, files), oldest first
    lfs: set[str] = field(default_factory=set)  # paths stored as LFS

    def files_at(self, revision: str) -> tuple[str, dict[str, bytes]] | None:
        if revision == "main":
            return self.commits[-1] if self.commits else ("0" * 40, {})
        return next((c for c in self.commits if c[0] == revision), None)


class HubState:
    def __init__(self, tokens: dict[str, tuple[str, str]]):
        self.tokens = tokens  # token -> (user, "read" | "write")
        self.repos: dict[tuple[str, str], Repo] = {}
        self.blobs: dict[str, bytes] = {}  # LFS objects by sha256
        self.requests: list[tuple[str, str, dict]] = []  # method, path, headers: what clients sent
        self.lock = threading.Lock()


ROUTES = [
    ("GET", r"/api/whoami-v2", "whoami"),
    ("POST", r"/api/repos/create", "create_repo"),
    ("POST", r"/api/validate-yaml", "validate_yaml"),
    ("POST", r"/api/(?P<kind>model|space)s/(?P<repo>[^/]+/[^/]+)/preupload/(?P<rev>[^/]+)", "preupload"),
    ("POST", r"/api/(?P<kind>model|space)s/(?P<repo>[^/]+/[^/]+)/commit/(?P<rev>[^/]+)", "commit"),
    ("GET", r"/api/(?P<kind>model|space)s/(?P<repo>[^/]+/[^/]+)/revision/(?P<rev>[^/]+)", "repo_info"),
    ("GET", r"/api/(?P<kind>model|space)s/(?P<repo>[^/]+/[^/]+)", "repo_info"),
    ("GET", r"/api/(?P<kind>model|space)s/(?P<repo>[^/]+/[^/]+)/tree/(?P<rev>[^/]+)(?P<path>/.*)?", "tree"),
    ("POST", r"/(?P<space>spaces/)?(?P<repo>[^/]+/[^/]+)\.git/info/lfs/objects/batch", "lfs_batch"),
    ("PUT", r"/lfs-upload/(?P<oid>[0-9a-f]{64})", "lfs_put"),
    ("HEAD", r"/(?P<space>spaces/)?(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)", "resolve"),
    ("GET", r"/(?P<space>spaces/)?(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)", "resolve"),
]


class HubError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, **body):
        self.status, self.message, self.code, self.body = status, message, code, body


class Handler(BaseHTTPRequestHandler):
    server: "HubServer"
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # quiet
        pass

    def _dispatch(self):
        url = urlparse(self.path)
        self.query = url.query
        state = self.server.state
        with state.lock:
            state.requests.append((self.command, self.path, dict(self.headers)))
        for method, pattern, name in ROUTES:
            match = re.fullmatch(pattern, url.path)
            if method == self.command and match:
                length = int(self.headers.get("Content-Length") or 0)
                self.body = self.rfile.read(length) if length else b""
                try:
                    getattr(self, name)(**{k: unquote(v) for k, v in match.groupdict().items() if v is not None})
                except HubError as e:
                    self._send(e.status, {"error": e.message, **e.body}, headers={"X-Error-Message": e.message,
                                                                        **({"X-Error-Code": e.code} if e.code else {})})
                return
        self._send(404, {"error": f"no route {self.command} {url.path}"})

    do_GET = do_POST = do_PUT = do_HEAD = _dispatch

    def _send(self, status: int, body, headers: dict | None = None, content_type="application/json"):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    # --- who is asking ---

    def _user(self, need: str | None = None) -> str | None:
        """The token's user; need="write" demands a write token, need="read" any valid one."""
        auth = self.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ").strip() if auth.startswith("Bearer ") else None
        if token is None:
            if need:
                raise HubError(401, "You must be authenticated to do this (missing token)")
            return None
        if token not in self.server.state.tokens:
            raise HubError(401, "Invalid credentials in Authorization header")
        user, role = self.server.state.tokens[token]
        if need == "write" and role != "write":
            raise HubError(403, "You don't have the rights to write with this token (it is read-only)")
        return user

    def _repo(self, kind: str, repo_id: str, write: bool = False) -> Repo:
        user = self._user("write" if write else None)
        repo = self.server.state.repos.get((kind, repo_id))
        if repo is None or (repo.private and user != repo.owner):
            if user is None:
                raise HubError(401, "Repository not found", "RepoNotFound")
            raise HubError(404, "Repository not found", "RepoNotFound")
        if write and user != repo.owner:
            raise HubError(403, f"You don't have the rights to write to {repo_id}")
        return repo

    def _files(self, repo: Repo, rev: str) -> tuple[str, dict[str, bytes]]:
        found = repo.files_at(rev)
        if found is None:
            raise HubError(404, f"Invalid rev id: {rev}", "RevisionNotFound")
        return found

    def _url(self, path: str) -> str:
        return f"http://{self.headers.get('Host')}{path}"

    # --- endpoints ---

    def create_repo(self):
        user = self._user("write")
        payload = json.loads(self.body)
        namespace = payload.get("organization") or user
        if namespace != user:
            raise HubError(403, f"You don't have the rights to create a repo under the namespace {namespace!r}")
        kind = payload.get("type") or "model"
        repo_id = f"{namespace}/{payload['name']}"
        prefix = "spaces/" if kind == "space" else ""
        state = self.server.state
        with state.lock:
            if (kind, repo_id) in state.repos:
                raise HubError(409, "You already created this repo", url=self._url(f"/{prefix}{repo_id}"))
            state.repos[(kind, repo_id)] = Repo(kind, repo_id, payload.get("visibility") == "private", user,
                                                payload.get("sdk"))
        self._send(200, {"url": self._url(f"/{prefix}{repo_id}"), "name": repo_id})

    def whoami(self):
        """Who the token belongs to (the fields huggingface_hub and Gradio's sign-in read)."""
        user = self._user("read")
        role = self.server.state.tokens[self.headers["Authorization"].removeprefix("Bearer ").strip()][1]
        self._send(200, {"type": "user", "id": hashlib.sha1(user.encode()).hexdigest()[:24], "name": user,
                         "fullname": user.title(), "avatarUrl": f"/avatars/{user}.svg", "orgs": [],
                         "auth": {"type": "access_token", "accessToken": {"displayName": "test", "role": role}}})

    def validate_yaml(self):
        self._send(200, {"errors": [], "warnings": []})

    def preupload(self, kind, repo, rev):
        self._repo(kind, repo, write=True)
        files = []
        for f in json.loads(self.body)["files"]:
            sample = base64.b64decode(f["sample"])
            lfs = f["path"].endswith(LFS_SUFFIXES) or b"\0" in sample or f["size"] > 10_000_000
            files.append({"path": f["path"], "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False})
        self._send(200, {"files": files, "commitOid": None})

    def lfs_batch(self, repo, space=None):
        self._repo("space" if space else "model", repo, write=True)
        objects = []
        for obj in json.loads(self.body)["objects"]:
            entry = {"oid": obj["oid"], "size": obj["size"], "authenticated": True}
            if obj["oid"] not in self.server.state.blobs:  # no actions: the Hub has it already
                entry["actions"] = {"upload": {"href": self._url(f"/lfs-upload/{obj['oid']}")}}
            objects.append(entry)
        self._send(200, {"transfer": "basic", "objects": objects}, content_type="application/vnd.git-lfs+json")

    def lfs_put(self, oid):
        if hashlib.sha256(self.body).hexdigest() != oid:
            raise HubError(400, "uploaded bytes do not match their sha256")
        with self.server.state.lock:
            self.server.state.blobs[oid] = self.body
        self._send(200, {})

    def commit(self, kind, repo, rev):
        repo = self._repo(kind, repo, write=True)
        if rev != "main":
            raise HubError(400, "this stand-in only commits to main")
        _, current = self._files(repo, "main")
        files, lfs, summary = dict(current), set(repo.lfs), ""
        for line in self.body.decode().splitlines():
            item = json.loads(line)
            key, value = item["key"], item["value"]
            if key == "header":
                summary = value.get("summary", "")
            elif key == "file":
                files[value["path"]] = base64.b64decode(value["content"])
                lfs.discard(value["path"])
            elif key == "lfsFile":
                if value["oid"] not in self.server.state.blobs:
                    raise HubError(400, f"LFS object {value['oid']} for {value['path']} was never uploaded")
                files[value["path"]] = self.server.state.blobs[value["oid"]]
                lfs.add(value["path"])
            elif key == "deletedFile":
                files.pop(value["path"], None)
        sha = hashlib.sha1(f"{repo.repo_id}{len(repo.commits)}{summary}{time.time()}".encode()).hexdigest()
        with self.server.state.lock:
            repo.commits.append((sha, files))
            repo.lfs = lfs
        prefix = "spaces/" if repo.kind == "space" else ""
        self._send(200, {"commitUrl": self._url(f"/{prefix}{repo.repo_id}/commit/{sha}"), "commitOid": sha,
                         "pullRequestUrl": None})

    def repo_info(self, kind, repo, rev="main"):
        repo = self._repo(kind, repo)
        sha, files = self._files(repo, rev)
        info = {"id": repo.repo_id, "sha": sha, "private": repo.private, "author": repo.owner,
                "siblings": [{"rfilename": p} for p in sorted(files)], "lastModified": "2026-11-21T00:00:00.000Z"}
        if repo.kind == "space":
            info["sdk"] = repo.sdk
        self._send(200, info)

    def tree(self, kind, repo, rev, path=None):
        repo = self._repo(kind, repo)
        _, files = self._files(repo, rev)
        entries, folders = [], set()
        for p, data in sorted(files.items()):
            parts = p.split("/")
            folders.update("/".join(parts[:i]) for i in range(1, len(parts)))
            entry = {"type": "file", "path": p, "size": len(data), "oid": git_blob_id(data)}
            if p in repo.lfs:
                entry["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
            entries.append(entry)
        entries += [{"type": "directory", "path": f, "size": 0, "oid": "0" * 40} for f in sorted(folders)]
        self._send(200, entries)

    def resolve(self, repo, rev, path, space=None):
        repo = self._repo("space" if space else "model", repo)
        sha, files = self._files(repo, rev)
        if path not in files:
            raise HubError(404, f"{path} does not exist at {rev}", "EntryNotFound")
        data = files[path]
        headers = {"X-Repo-Commit": sha, "ETag": f'"{git_blob_id(data)}"'}
        if path in repo.lfs:
            headers.update({"X-Linked-Etag": f'"{hashlib.sha256(data).hexdigest()}"', "X-Linked-Size": str(len(data))})
        self._send(200, data, headers=headers, content_type="application/octet-stream")


class HubServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int = 0, tokens: dict[str, tuple[str, str]] | None = None):
        super().__init__(("127.0.0.1", port), Handler)
        self.state = HubState(tokens or {})
        self.url = f"http://127.0.0.1:{self.server_address[1]}"

    def start(self) -> "HubServer":
        threading.Thread(target=self.serve_forever, name="hub-server", daemon=True).start()
        return self


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--token", action="append", default=[], help="TOKEN:USER:read|write (repeatable)")
    args = parser.parse_args()
    tokens = {t: (u, r) for t, u, r in (spec.split(":") for spec in args.token)}
    server = HubServer(args.port, tokens)
    print(f"Hub protocol stand-in at {server.url} (set HF_ENDPOINT={server.url} HF_HUB_DISABLE_XET=1)", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
