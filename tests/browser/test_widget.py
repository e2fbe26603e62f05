"""The website chat widget, embedded in a plain HTML page served from another origin and
driven in headless Chromium the way a visitor uses it: by role and accessible name (the
widget lives in an open shadow root, which Playwright's locators pierce)."""

import html
import json
import re
import sqlite3
import threading
import uuid
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from playwright.sync_api import expect

from conftest import screenshot

# What the desk must never tell a visitor.
INTERNAL_FIELDS = ("author", "customer_id", "provider_message_id")
# Generous waits: the budgets are 2 s for an auto-reply and 5 s for an agent's reply;
# a slow shared machine must not make the tests flaky.
REPLY_WAIT = 15_000


class HostSite:
    """A tiny web site on another loopback port: a different origin from the desk."""

    def __init__(self):
        self.pages = {}
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                body = site.pages.get(self.path.split("?")[0])
                if body is None:
                    self.send_response(404)
                    self.end_headers()
                    return
                data = body.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def page(self, desk, path="/", attrs=None, head=""):
        """Publishes a page carrying the widget's script tag; returns its URL."""
        extra = "".join(
            f' data-{k}="{html.escape(v, quote=True)}"' for k, v in (attrs or {}).items()
        )
        self.pages[path] = (
            "<!doctype html><html><head><meta charset='utf-8'><title>Shop</title>"
            f"{head}</head><body><h1>A shop</h1><p>Products and prices.</p>"
            f'<script src="{desk.base}/widget.js" data-desk="{desk.base}"{extra} async></script>'
            "</body></html>"
        )
        return self.base + path

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def site():
    s = HostSite()
    yield s
    s.stop()


def webchat_requests(page):
    """Every request the page makes to the desk's webchat routes, as (method, url)."""
    seen = []
    page.on(
        "request",
        lambda r: seen.append((r.method, r.url)) if "/webchat/" in r.url else None,
    )
    return seen


def open_chat(page, name="Open chat"):
    bubble = page.get_by_role("button", name=name)
    expect(bubble).to_be_visible()
    bubble.click()
    return page.get_by_role("textbox", name="Message" if name == "Open chat" else "消息")


def conversation(page):
    return page.get_by_role("log")


def ask(page, site, desk, text):
    """Opens the host page, opens the chat, sends `text`; returns the conversation."""
    page.goto(site.page(desk))
    box = open_chat(page)
    box.fill(text)
    box.press("Enter")
    return conversation(page)


def only_ticket(desk):
    status, body, _ = desk.api("GET", "/tickets?channel=webchat")
    assert status == 200, body
    return body["tickets"]


def test_a_page_on_another_origin_shows_the_bubble_and_a_chinese_faq_is_answered(
    desk, site, page
):
    polls = []

    def keep_poll(response):
        if "/webchat/messages" in response.url and response.request.method == "GET":
            polls.append(response.json())

    page.on("response", keep_poll)
    requests = webchat_requests(page)
    page.goto(site.page(desk))
    assert not site.base.startswith(desk.base), "the host page is on another origin"
    expect(page.get_by_role("button", name="Open chat")).to_be_visible()
    # Page views cost nothing: no session until the visitor writes.
    assert requests == []

    box = open_chat(page)
    expect(box).to_be_focused()
    box.fill("我忘记密码了，怎么重置？")
    box.press("Enter")
    log = conversation(page)
    expect(log).to_contain_text("我忘记密码了，怎么重置？")
    expect(log).to_contain_text("重置密码链接", timeout=REPLY_WAIT)
    expect(log).to_contain_text("Sent")
    assert [m for m, _ in requests].count("POST") == 2, requests  # a session, a message
    screenshot(page, "widget")

    # The visitor's poll holds the visitor's view only.
    assert polls, "the widget polled"
    messages = [m for p in polls for m in p["messages"]]
    kinds = {m["kind"] for m in messages}
    assert "auto_reply" in kinds, messages
    for m in messages:
        for field in INTERNAL_FIELDS:
            assert field not in m, m
    assert not any(
        re.search(r"author|customer_id|provider", json.dumps(p)) for p in polls
    ), polls

    # A reload (or another page of the site) continues the conversation.
    page.reload()
    log = conversation(page)
    expect(log).to_contain_text("我忘记密码了，怎么重置？")
    expect(log).to_contain_text("重置密码链接")
    other = site.page(desk, path="/pricing")
    page.goto(other)
    expect(conversation(page)).to_contain_text("重置密码链接")
    assert [m for m, _ in requests].count("POST") == 2, "no second session"


def test_agent_reply_appears_live_then_the_survey_records_a_rating(desk, site, context):
    page = context.new_page()
    page.goto(site.page(desk, attrs={"name": "李雷", "email": "li.lei@example.com"}))
    box = open_chat(page)
    box.fill("我这个月被重复扣款了两次，请帮我查一下")
    box.press("Enter")
    log = conversation(page)
    expect(log).to_contain_text("转交人工客服", timeout=REPLY_WAIT)
    tickets = desk.wait_for("the ticket", lambda: only_ticket(desk))
    ticket_id = tickets[0]["id"]
    # The site told the widget who the visitor is; the agent sees it.
    status, customer, _ = desk.api("GET", f"/customers/{tickets[0]['customer_id']}")
    assert status == 200, customer
    assert customer["name"] == "李雷 <li.lei@example.com>", customer

    # Closed panel: the reply shows as an unread badge on the bubble.
    page.get_by_role("button", name="Close chat").click()
    bubble = page.get_by_role("button", name="Open chat")
    status, body, _ = desk.api(
        "POST", f"/tickets/{ticket_id}/replies", {"text": "您好，重复的扣款已经退回。"}
    )
    assert status == 202, body
    expect(bubble).to_have_accessible_description("1 unread message", timeout=REPLY_WAIT)
    bubble.click()
    expect(log).to_contain_text("您好，重复的扣款已经退回。")
    expect(page.get_by_role("button", name="Close chat")).to_have_accessible_description("")

    # A second tab of the same visitor, to answer the survey twice.
    second = context.new_page()
    second.goto(site.page(desk))
    expect(conversation(second)).to_contain_text("您好，重复的扣款已经退回。")

    status, body, headers = desk.api("GET", f"/tickets/{ticket_id}")
    assert status == 200, body
    version = body["ticket"]["version"]
    status, body, _ = desk.api(
        "PATCH",
        f"/tickets/{ticket_id}",
        {"status": "closed"},
        headers={"If-Match": str(version)},
    )
    assert status == 200, body

    five = page.get_by_role("button", name="5 stars")
    expect(five).to_be_visible(timeout=REPLY_WAIT)
    two = second.get_by_role("button", name="2 stars")
    expect(two).to_be_visible(timeout=REPLY_WAIT)
    page.get_by_role("textbox", name="Anything to add? (optional)").fill("很快解决了")
    screenshot(page, "widget-survey")
    five.click()
    expect(log.get_by_role("status")).to_contain_text("Thank you for your feedback!")
    status, body, _ = desk.api("GET", f"/tickets/{ticket_id}")
    assert body["ticket"]["survey"]["rating"] == 5, body["ticket"]
    assert body["ticket"]["survey"]["comment"] == "很快解决了", body["ticket"]

    # The other tab still shows the stars; a second rating is the thank-you, not an error.
    two.click()
    expect(conversation(second).get_by_role("status")).to_contain_text(
        "Thank you for your feedback!"
    )
    status, body, _ = desk.api("GET", f"/tickets/{ticket_id}")
    assert body["ticket"]["survey"]["rating"] == 5, "the first answer stands"

    # After a reload the answered survey is the thank-you, with no stars to press.
    page.reload()
    expect(conversation(page).get_by_role("status")).to_contain_text("You rated us 5 of 5.")
    expect(page.get_by_role("button", name="5 stars")).to_have_count(0)


def test_enter_never_sends_while_an_input_method_is_composing(desk, site, page):
    requests = webchat_requests(page)
    page.goto(site.page(desk))
    box = open_chat(page)
    cdp = page.context.new_cdp_session(page)

    # Pinyin being composed: Enter confirms the candidate, it does not send.
    cdp.send(
        "Input.imeSetComposition",
        {"text": "nihao", "selectionStart": 5, "selectionEnd": 5},
    )
    page.keyboard.press("Enter")
    cdp.send(
        "Input.imeSetComposition",
        {"text": "你好", "selectionStart": 2, "selectionEnd": 2},
    )
    page.keyboard.press("Enter")
    # The composition ends with the chosen characters in the box, still unsent.
    cdp.send("Input.insertText", {"text": "你好"})
    expect(box).to_have_value(re.compile(r"^你好"))
    assert requests == [], "nothing was sent while composing"
    expect(conversation(page)).not_to_contain_text("你好")

    # Shift+Enter adds a line; Enter, with no composition, sends.
    box.fill("你好")
    box.press("Shift+Enter")
    box.type("世界")
    expect(box).to_have_value("你好\n世界")
    assert requests == []
    box.press("Enter")
    expect(box).to_have_value("")
    expect(conversation(page)).to_contain_text("你好\n世界")
    expect(conversation(page)).to_contain_text("Sent", timeout=REPLY_WAIT)
    posts = [u for m, u in requests if m == "POST" and u.endswith("/webchat/messages")]
    assert len(posts) == 1, requests


def test_hostile_host_css_leaves_the_widget_intact(desk, site, page):
    hostile = "<style>* { display: block !important; font-size: 40px }</style>"
    page.goto(site.page(desk, head=hostile))
    bubble = page.get_by_role("button", name="Open chat")
    expect(bubble).to_be_visible()
    size = bubble.bounding_box()
    assert size["width"] == 56 and size["height"] == 56, size
    # Bottom right corner of the 1280x800 viewport, not pushed into the page's flow.
    assert size["x"] + size["width"] == 1280 - 20 and size["y"] + size["height"] == 800 - 20, size
    box = open_chat(page)
    assert box.evaluate("e => getComputedStyle(e).fontSize") == "14px"
    send = page.get_by_role("button", name="Send")
    assert send.evaluate("e => getComputedStyle(e).display") == "block"
    panel = page.get_by_role("region", name="Chat with us")
    width = panel.bounding_box()["width"]
    assert width == 360, width
    box.fill("What are your working hours?")
    send.click()
    expect(conversation(page)).to_contain_text("Monday to Friday", timeout=REPLY_WAIT)
    # And the widget's own styles stay inside: the page's heading keeps the page's font.
    heading = page.get_by_role("heading", name="A shop")
    assert heading.evaluate("e => getComputedStyle(e).fontSize") == "40px"


def test_chinese_interface_from_the_attribute_and_from_the_browser(desk, site, browser):
    for attrs, browser_locale in (({"locale": "zh-CN"}, "en-US"), ({}, "zh-CN")):
        ctx = browser.new_context(locale=browser_locale, viewport={"width": 1280, "height": 800})
        ctx.set_default_timeout(10_000)
        page = ctx.new_page()
        page.goto(site.page(desk, attrs=attrs))
        box = open_chat(page, name="打开对话")
        expect(page.get_by_role("button", name="关闭对话")).to_be_visible()
        box.fill("退款政策是怎样的")
        page.get_by_role("button", name="发送").click()
        expect(conversation(page)).to_contain_text("30 天内", timeout=REPLY_WAIT)
        expect(conversation(page)).to_contain_text("已发送")
        if browser_locale == "zh-CN":
            screenshot(page, "widget-zh")
        ctx.close()


def test_keyboard_alone_opens_writes_sends_and_closes(desk, site, page):
    page.goto(site.page(desk, attrs={"greeting": "Welcome to the shop!"}))
    bubble = page.get_by_role("button", name="Open chat")
    expect(bubble).to_be_visible()
    page.keyboard.press("Tab")
    expect(bubble).to_be_focused()
    page.keyboard.press("Enter")
    box = page.get_by_role("textbox", name="Message")
    expect(box).to_be_focused()
    expect(conversation(page)).to_contain_text("Welcome to the shop!")
    page.keyboard.type("How do I get a refund?")
    page.keyboard.press("Enter")
    expect(conversation(page)).to_contain_text("30 days", timeout=REPLY_WAIT)
    # The box takes what the desk takes (4,096 characters), no more, and no less.
    page.keyboard.insert_text("长" * 4100)
    assert len(box.input_value()) == 4096
    box.fill("")
    page.keyboard.press("Escape")
    expect(page.get_by_role("region", name="Chat with us")).to_be_hidden()
    expect(page.get_by_role("button", name="Open chat")).to_be_focused()


def test_a_failed_send_offers_a_retry_that_is_taken_once(desk, site, page):
    page.goto(site.page(desk))
    box = open_chat(page)

    tries = []

    def lose_the_answer(route):
        # The desk takes the message but the answer never reaches the browser.
        if route.request.method == "POST":
            tries.append(json.loads(route.request.post_data)["client_message_id"])
            route.fetch()
            route.abort()
        else:
            route.continue_()

    page.route("**/webchat/messages", lose_the_answer)
    box.fill("Where is my order?")
    box.press("Enter")
    log = conversation(page)
    expect(log).to_contain_text("Not sent")
    # The next poll that gets through sends it again by itself, once, and it is lost again.
    for _ in range(300):
        if len(tries) >= 2:
            break
        page.wait_for_timeout(50)
    assert len(tries) == 2 and tries[0] == tries[1], tries
    expect(log).to_contain_text("Not sent")
    page.unroute("**/webchat/messages")
    page.get_by_role("button", name="Retry").click()
    expect(log).to_contain_text("Sent", timeout=REPLY_WAIT)
    expect(page.get_by_role("button", name="Retry")).to_have_count(0)
    expect(log).to_contain_text("tracking", timeout=REPLY_WAIT)
    token = page.evaluate(
        "() => JSON.parse(localStorage.getItem(Object.keys(localStorage)[0])).token"
    )
    inbound = [m for m in desk.webchat_messages(token) if m["direction"] == "inbound"]
    assert [m["text"] for m in inbound] == ["Where is my order?"], inbound


def posted_ids(page):
    """The client_message_id of each message the page posts, as it leaves the browser."""
    ids = []

    def seen(r):
        if r.method == "POST" and r.url.endswith("/webchat/messages"):
            ids.append(json.loads(r.post_data)["client_message_id"])

    page.on("request", seen)
    return ids


def inbound_texts(desk, page):
    token = page.evaluate(
        "() => JSON.parse(localStorage.getItem(Object.keys(localStorage)[0])).token"
    )
    return [m["text"] for m in desk.webchat_messages(token) if m["direction"] == "inbound"]


def test_a_message_not_sent_offline_goes_by_itself_when_the_page_is_back_online(
    desk, site, context
):
    page = context.new_page()
    page.goto(site.page(desk))
    box = open_chat(page)
    log = conversation(page)
    context.set_offline(True)
    box.fill("Where is my order?")
    box.press("Enter")
    expect(log).to_contain_text("Not sent")
    expect(page.get_by_role("button", name="Retry")).to_be_visible()
    waiting = page.evaluate(
        "() => JSON.parse(localStorage.getItem(Object.keys(localStorage)[0])).outbox"
    )
    assert [o["text"] for o in waiting] == ["Where is my order?"], waiting
    ids = posted_ids(page)
    # Back online: sent again by itself, under the id it was first given; no Retry needed.
    context.set_offline(False)
    expect(log).to_contain_text("Sent ·", timeout=REPLY_WAIT)
    expect(page.get_by_role("button", name="Retry")).to_have_count(0)
    expect(log).to_contain_text("tracking", timeout=REPLY_WAIT)
    assert inbound_texts(desk, page) == ["Where is my order?"]
    assert ids == [waiting[0]["cid"]], (ids, waiting)


def test_a_refused_send_goes_again_once_when_the_next_poll_gets_through(desk, site, page):
    page.goto(site.page(desk))
    box = open_chat(page)
    log = conversation(page)
    box.fill("What are your working hours?")
    box.press("Enter")
    expect(log).to_contain_text("Monday to Friday", timeout=REPLY_WAIT)
    tries = []

    def refuse_once(route):
        if route.request.method != "POST":
            return route.continue_()
        tries.append(json.loads(route.request.post_data)["client_message_id"])
        if len(tries) == 1:
            # The desk is briefly unable to take it: it never arrives.
            return route.fulfill(
                status=503,
                content_type="application/json",
                body='{"error":{"code":"unavailable","message":"try again"}}',
            )
        return route.continue_()

    page.route("**/webchat/messages", refuse_once)
    box.fill("Where is my order?")
    box.press("Enter")
    # The polls keep going; the next one that gets through sends it again, with its id.
    expect(log).to_contain_text("tracking", timeout=REPLY_WAIT)
    expect(log.get_by_text("Not sent")).to_have_count(0)
    expect(page.get_by_role("button", name="Retry")).to_have_count(0)
    assert len(tries) == 2 and tries[0] == tries[1], tries
    assert inbound_texts(desk, page) == ["What are your working hours?", "Where is my order?"]


def test_did_you_mean_choices_are_buttons_that_ask_again(desk, site, page):
    # Two articles asked the same way: the desk answers with one and offers the other.
    titles = {
        "gift-card-balance": "Checking a gift card balance",
        "gift-card-redeem": "Redeeming a gift card",
    }
    answers = {
        "gift-card-balance": "Enter the card number on the Gift cards page to see its balance.",
        "gift-card-redeem": "Enter the gift card code at checkout.",
    }
    for article_id, title in titles.items():
        status, body, _ = desk.api(
            "PUT",
            f"/kb/articles/{article_id}",
            {
                "id": article_id,
                "title": title,
                "questions": ["I have a question about my gift card", "gift card"],
                "answer": answers[article_id],
                "locale": "en",
            },
        )
        assert status in (200, 201), body
    log = ask(page, site, desk, "I have a question about my gift card")
    expect(log).to_contain_text("Did you mean:", timeout=REPLY_WAIT)
    choice = log.get_by_role("button", name=re.compile("gift card"))
    expect(choice).to_have_count(1)
    offered = choice.inner_text()
    assert offered in titles.values(), offered
    answered = next(a for i, a in answers.items() if titles[i] != offered)
    expect(log).to_contain_text(answered)
    # The choice is asked as the visitor's next message, and answered.
    with page.expect_request(
        lambda r: r.method == "POST" and r.url.endswith("/webchat/messages")
    ) as sent:
        choice.click()
    assert json.loads(sent.value.post_data)["text"] == offered
    offered_id = next(i for i, t in titles.items() if t == offered)
    expect(log).to_contain_text(answers[offered_id], timeout=REPLY_WAIT)


def test_polling_slows_while_idle_and_hurries_after_the_visitor_writes(desk, site, page):
    # The page's timers run on Playwright's clock, so the test counts polls per second of
    # the page's time, not of the machine's. `now` is that time, as far as the test moved it.
    in_flight = set()
    polls = []
    now = [0]

    def started(r):
        if "/webchat/" in r.url:
            in_flight.add(r)
            if r.method == "GET":
                polls.append(now[0])

    page.on("request", started)
    page.on("requestfinished", lambda r: in_flight.discard(r))
    page.on("requestfailed", lambda r: in_flight.discard(r))
    page.clock.install()
    page.goto(site.page(desk))
    box = open_chat(page)

    def settle():
        # Playwright delivers its events while the test waits on it, not in time.sleep.
        for _ in range(400):
            if not in_flight:
                return
            page.wait_for_timeout(25)
        raise AssertionError("the widget's requests did not finish")

    def advance(ms, step=250):
        for _ in range(ms // step):
            page.clock.run_for(step)
            now[0] += step
            settle()

    box.fill("What are your working hours?")
    box.press("Enter")
    expect(conversation(page)).to_contain_text("Sent")
    settle()
    advance(3_000)
    expect(conversation(page)).to_contain_text("Monday to Friday", timeout=REPLY_WAIT)

    # Idle: a minute of the page's time holds far fewer polls than one a second, and the
    # gaps grow to the idle pace.
    polls.clear()
    advance(60_000, step=500)
    gaps = [b - a for a, b in zip(polls, polls[1:])]
    assert 8 <= len(polls) <= 30, polls
    assert gaps[-1] > gaps[0], gaps
    assert max(gaps) <= 4_500, gaps

    # Writing again brings the next poll within about a second.
    box.fill("And on Saturdays?")
    box.press("Enter")
    expect(conversation(page)).to_contain_text("And on Saturdays?")
    settle()
    polls.clear()
    wrote_at = now[0]
    advance(1_500)
    assert polls and polls[0] - wrote_at <= 1_000, (wrote_at, polls)


def store_late_reply(desk, text, seconds_before):
    """Stores, in the desk's own database, an agent's reply dated `seconds_before` the
    newest auto-reply: what a writer that made its reply first and wrote it last leaves."""
    db = sqlite3.connect(Path(desk.data_dir) / "helpdesk.sqlite3", timeout=10)
    try:
        customer, channel, ticket, body = db.execute(
            "SELECT customer_id, channel, ticket_id, body FROM messages"
            " WHERE json_extract(body, '$.kind') = 'auto_reply' ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        reply = json.loads(body)
        # chrono writes up to nanoseconds; Python reads up to microseconds.
        at = re.sub(r"(\.\d{6})\d*", r"\1", reply["created_at"]).replace("Z", "+00:00")
        at = datetime.fromisoformat(at) - timedelta(seconds=seconds_before)
        reply.update(
            id=str(uuid.uuid4()),
            kind="agent_reply",
            text=text,
            created_at=at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        )
        sk = at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z#{reply['id']}"
        with db:
            db.execute(
                "INSERT INTO messages (id, customer_id, channel, direction, ticket_id, body, sk)"
                " VALUES (?, ?, ?, 'outbound', ?, ?, ?)",
                (reply["id"], customer, channel, ticket, json.dumps(reply), sk),
            )
    finally:
        db.close()


def test_a_reply_stored_after_a_later_one_was_read_shows_once(desk, site, page):
    # Two writers race: an agent's reply made just before the auto-reply is stored just
    # after the widget read the auto-reply. The widget's next polls still bring it, and the
    # moments before its bookmark, which the desk sends again, are not shown twice.
    log = ask(page, site, desk, "What are your working hours?")
    expect(log).to_contain_text("Monday to Friday", timeout=REPLY_WAIT)

    store_late_reply(desk, "抱歉久等了，我来帮您", seconds_before=2)
    expect(log).to_contain_text("抱歉久等了，我来帮您", timeout=REPLY_WAIT)
    page.wait_for_timeout(5_000)  # a few more polls, each sending the same moments again
    expect(log.get_by_text("抱歉久等了，我来帮您")).to_have_count(1)
    expect(log.get_by_text("Monday to Friday")).to_have_count(1)
    expect(log.get_by_text("What are your working hours?")).to_have_count(1)

    # All of it was read with the panel open: closed and the page loaded again, nothing is
    # unread, though the late reply came last and sits first.
    page.get_by_role("button", name="Close chat").click()
    with page.expect_response(lambda r: "/webchat/messages" in r.url) as history:
        page.reload()
    assert "抱歉久等了，我来帮您" in history.value.text()
    page.wait_for_timeout(500)  # the history is drawn and counted
    expect(page.get_by_role("button", name="Open chat")).to_have_accessible_description("")
