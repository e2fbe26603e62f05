#!/usr/bin/env python3
"""Measures what a website visitor waits for, in headless Chromium, through the widget:
from pressing Enter on a question to seeing its auto-reply, and from an agent's reply (sent
through the API) to seeing it in the widget. Each round is a new visitor on a host page of
another origin. Prints p50, p95 and max in milliseconds.

    cargo build --release
    HELPDESK_BIN=target/release/helpdesk ~/.cache/helpdesk/venv/bin/python \
        scripts/measure-widget-reply.py 20

Times are taken in the page, each animation frame, so the measurement adds at most a frame.
"""

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "browser"))

from conftest import Desk  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402
from test_widget import HostSite  # noqa: E402

QUESTION = "我忘记密码了，怎么重置？"
ANSWER = "重置密码链接"
HANDOFF = "我要投诉，快递三天了还没到"

SHOWN = """needle => [...document.querySelectorAll('*')]
    .some(e => e.shadowRoot && e.shadowRoot.textContent.includes(needle))"""


def summary(name, ms):
    ms = sorted(ms)
    p95 = ms[min(len(ms) - 1, int(round(0.95 * (len(ms) - 1))))]
    print(f"{name}: p50 {statistics.median(ms):.0f} ms, p95 {p95:.0f} ms, max {ms[-1]:.0f} ms ({len(ms)} rounds)")


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    desk, site = Desk(), HostSite()
    auto, agent = [], []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path="/usr/bin/chromium",
                args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
            )
            url = site.page(desk)
            for i in range(rounds):
                ctx = browser.new_context(locale="zh-CN")
                page = ctx.new_page()
                page.goto(url)
                page.get_by_role("button", name="打开对话").click()
                box = page.get_by_role("textbox", name="消息")
                box.fill(QUESTION)
                start = time.perf_counter()
                box.press("Enter")
                page.wait_for_function(SHOWN, arg=ANSWER, polling="raf", timeout=30_000)
                auto.append((time.perf_counter() - start) * 1000)

                box.fill(HANDOFF)
                box.press("Enter")
                ticket = desk.wait_for(
                    "the hand-off",
                    lambda: next(
                        (t for t in desk.api("GET", "/tickets?status=active&assignee=none")[1]["tickets"]), None
                    ),
                )
                text = f"您好，第 {i} 号回复"
                # Let the widget's polling slow down, as it does while a visitor waits.
                time.sleep(3)
                start = time.perf_counter()
                status, body, _ = desk.api("POST", f"/tickets/{ticket['id']}/replies", {"text": text})
                assert status == 202, body
                page.wait_for_function(SHOWN, arg=text, polling="raf", timeout=30_000)
                agent.append((time.perf_counter() - start) * 1000)
                _, t, headers = desk.api("GET", f"/tickets/{ticket['id']}")
                desk.api("PATCH", f"/tickets/{ticket['id']}", {"status": "resolved"}, headers={"If-Match": headers["ETag"]})
                ctx.close()
            browser.close()
    finally:
        site.stop()
        desk.stop()
    summary("question → auto-reply shown in the widget", auto)
    summary("agent reply (API) → shown in the widget, 3 s after the visitor last wrote", agent)


if __name__ == "__main__":
    main()
