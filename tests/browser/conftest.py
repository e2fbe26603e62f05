"""Browser tests: the real `helpdesk` binary, driven in headless Chromium by Playwright.

Each test gets its own desk (a `helpdesk serve` on a free loopback port with its own data
directory). Chromium is Debian's (`/usr/bin/chromium`, or `$CHROMIUM`); Playwright only
drives it. Screenshots for the README are written to `docs/screenshots/`.
"""

import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "docs" / "screenshots"
ADMIN = "test-admin-token"
ALICE = "alice-token-123"
BOB = "bob-supervisor-token"


def helpdesk_bin():
    explicit = os.environ.get("HELPDESK_BIN")
    if explicit:
        return explicit
    target = os.environ.get("CARGO_TARGET_DIR", str(ROOT / "target"))
    return str(Path(target) / "debug" / "helpdesk")


class Desk:
    """A running `helpdesk serve` and a small client for its API."""

    def __init__(self, env=None, data_dir=None):
        # `data_dir` starts the desk again on an earlier desk's data (stopped with keep_data).
        self.data_dir = data_dir or tempfile.mkdtemp(prefix="helpdesk-browser-")
        # The desk assigns tickets itself only in the tests of assignment, which pass their
        # own rules: elsewhere an assignment racing a test's If-Match would make it flaky.
        rules = Path(self.data_dir) / "test-rules.toml"
        rules.write_text("[assignment]\nauto = false\n")
        full_env = dict(os.environ)
        full_env["HELPDESK_RULES"] = str(rules)
        full_env.update(
            {
                "HELPDESK_ADMIN_TOKEN": ADMIN,
                "HELPDESK_AGENTS": f"alice:agent:{ALICE},bob:supervisor:{BOB}",
                "HELPDESK_LOG": "warn",
                # The tests open many chat sessions from one address.
                "WEBCHAT_SESSIONS_PER_MINUTE": "100000",
                "WEBCHAT_MESSAGES_PER_MINUTE": "100000",
            }
        )
        full_env.pop("SUPERVISOR_WEBHOOK_URL", None)
        full_env.update(env or {})
        self.proc = subprocess.Popen(
            [helpdesk_bin(), "serve", "--addr", "127.0.0.1:0", "--data-dir", self.data_dir],
            env=full_env,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.base = None
        deadline = time.time() + 30
        while time.time() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            if "listening on " in line:
                self.base = line.split("listening on ", 1)[1].strip()
                break
        if not self.base:
            self.stop()
            raise RuntimeError("helpdesk serve did not start")
        # Keep reading stdout so the child never blocks on a full pipe.
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()

    def api(self, method, path, body=None, token=ADMIN, headers=None):
        """Calls the API; returns (status, parsed JSON body or None, headers)."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method)
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                raw = r.read()
                return r.status, (json.loads(raw) if raw else None), r.headers
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                parsed = json.loads(raw) if raw else None
            except ValueError:
                parsed = raw.decode(errors="replace")
            return e.code, parsed, e.headers

    def patch_ticket(self, ticket_id, change, token=ADMIN):
        """Changes a ticket as the console does, with If-Match at its current version;
        returns the status and body of the answer."""
        _, _, headers = self.api("GET", f"/tickets/{ticket_id}", token=token)
        status, body, _ = self.api(
            "PATCH", f"/tickets/{ticket_id}", change, token=token, headers={"If-Match": headers["ETag"]}
        )
        return status, body

    def webchat_session(self, name="Visitor"):
        status, body, _ = self.api("POST", "/webchat/sessions", {"name": name}, token=None)
        assert status == 201, body
        return body["token"]

    def webchat_say(self, session_token, text):
        status, body, _ = self.api(
            "POST", "/webchat/messages", {"text": text}, token=session_token
        )
        assert status == 202, body
        return body["message_id"]

    def webchat_messages(self, session_token):
        status, body, _ = self.api("GET", "/webchat/messages", token=session_token)
        assert status == 200, body
        return body["messages"]

    def wait_for(self, what, predicate, timeout=15):
        deadline = time.time() + timeout
        while time.time() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}")

    def stop(self, keep_data=False):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        if not keep_data:
            shutil.rmtree(self.data_dir, ignore_errors=True)


@pytest.fixture
def desk():
    d = Desk()
    yield d
    d.stop()


@pytest.fixture(scope="session")
def browser():
    executable = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=executable,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield b
        b.close()


@pytest.fixture
def context(browser):
    ctx = browser.new_context(locale="en-US", viewport={"width": 1280, "height": 800})
    ctx.set_default_timeout(10_000)
    yield ctx
    ctx.close()


@pytest.fixture
def page(context):
    return context.new_page()


def screenshot(page, name):
    """Writes a README screenshot; the README links these files."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))
