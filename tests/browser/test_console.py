"""The agent console in real Chromium, used the way an agent uses it: controls are found by
role and accessible name, never by CSS class. Each test starts its own desk."""

import base64
import hashlib
import json
import re
import threading
import time
import urllib.parse
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from playwright.sync_api import expect

from conftest import ADMIN, ALICE, BOB, Desk, screenshot

COMPLAINT = "我要投诉，快递三天了还没到"


def sign_in(page, desk, token=ADMIN):
    page.goto(desk.base + "/console/")
    page.get_by_label("Agent token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("tab", name=re.compile("^All"))).to_be_visible()


def set_detail(page, name, value):
    """Chooses in one of the ticket's detail boxes (Status, Priority, Skill) and presses its
    button: the box alone changes nothing."""
    page.get_by_role("combobox", name=name).select_option(value)
    page.get_by_role("button", name=f"Set {name.lower()}").click()


def handed_off(desk, text=COMPLAINT):
    """A visitor writes something the desk hands to an agent; returns (session, ticket id)."""
    session = desk.webchat_session()
    desk.webchat_say(session, text)
    handoff = desk.wait_for(
        "the hand-off",
        lambda: next((m for m in desk.webchat_messages(session) if m["kind"] == "handoff"), None),
    )
    return session, handoff["ticket_id"]


def survey_link(desk, session):
    survey = desk.wait_for(
        "the survey",
        lambda: next((m for m in desk.webchat_messages(session) if m["kind"] == "survey"), None),
    )
    link = survey.get("link") or re.search(r"https?://\S+", survey["text"]).group(0)
    return urllib.parse.urlparse(link).path


def test_a_handed_off_question_appears_and_is_answered_from_the_console(desk, page):
    sign_in(page, desk)
    # The ticket is made after the inbox is open: it must arrive without a reload.
    session, ticket_id = handed_off(desk)
    row = page.get_by_role("link", name=re.compile("快递三天了还没到"))
    expect(row).to_be_visible(timeout=5000)
    expect(page.get_by_role("tab", name=re.compile("^Unassigned"))).to_contain_text("1")
    screenshot(page, "console-inbox")

    row.click()
    expect(page.get_by_role("heading", name=COMPLAINT)).to_be_visible()
    conversation = page.get_by_role("list", name="Conversation")
    expect(conversation).to_contain_text("Hand-off")

    reply = page.get_by_role("textbox", name="Reply")
    reply.fill("您好，我们已联系快递公司，明天送达。")
    page.get_by_role("button", name="Send").click()
    expect(page.get_by_role("status")).to_contain_text("Reply queued")
    note = page.get_by_role("textbox", name="Internal note")
    note.fill("客户第二次来问了")
    page.get_by_role("button", name="Add note").click()
    expect(conversation).to_contain_text("客户第二次来问了")
    expect(conversation).to_contain_text("您好，我们已联系快递公司")
    # The reply is shown with its delivery state once dispatch has handled it.
    expect(conversation.get_by_text(re.compile("^(sent|delivered)$")).first).to_be_visible()
    screenshot(page, "console-ticket")

    texts = desk.wait_for(
        "the reply to reach the visitor",
        lambda: (lambda t: t if any("明天送达" in x for x in t) else None)(
            [m["text"] for m in desk.webchat_messages(session)]
        ),
    )
    assert not any("第二次" in x for x in texts), "a note must never reach the customer"
    status, body, _ = desk.api("GET", f"/tickets/{ticket_id}")
    assert body["ticket"]["first_response_at"]


def test_enter_while_an_input_method_composes_does_not_send(desk, page):
    sign_in(page, desk)
    _, ticket_id = handed_off(desk)
    page.goto(f"{desk.base}/console/#/tickets/{ticket_id}")
    reply = page.get_by_role("textbox", name="Reply")
    reply.click()
    cdp = page.context.new_cdp_session(page)
    cdp.send("Input.imeSetComposition", {"text": "nihao", "selectionStart": 5, "selectionEnd": 5})
    page.keyboard.press("Enter")  # picks the candidate; must not send
    cdp.send("Input.insertText", {"text": "你好"})
    time.sleep(0.5)
    _, body, _ = desk.api("GET", f"/tickets/{ticket_id}")
    assert not [m for m in body["messages"] if m["kind"] == "agent_reply"]
    expect(reply).to_have_value(re.compile("你好"))
    # Shift+Enter adds a line; a plain Enter, with no composition, sends.
    reply.press("Shift+Enter")
    reply.type("请稍等")
    reply.press("Enter")
    desk.wait_for(
        "the reply",
        lambda: [m for m in desk.api("GET", f"/tickets/{ticket_id}")[1]["messages"] if m["kind"] == "agent_reply"],
    )
    _, body, _ = desk.api("GET", f"/tickets/{ticket_id}")
    sent = [m["text"] for m in body["messages"] if m["kind"] == "agent_reply"]
    assert sent == ["你好\n请稍等"], sent


def test_the_message_that_reopened_a_resolved_ticket_is_marked(desk, page):
    """The customer wrote again after their ticket was resolved: the ticket is open again,
    its row in the inbox says the customer reopened it, and its conversation marks the
    message that brought it back."""
    session, ticket_id = handed_off(desk)
    _, _, headers = desk.api("GET", f"/tickets/{ticket_id}")
    status, body, _ = desk.api("PATCH", f"/tickets/{ticket_id}", {"status": "resolved"}, headers={"If-Match": headers["ETag"]})
    assert status == 200, body
    desk.webchat_say(session, "还是没有解决，转人工")
    desk.wait_for(
        "the reopen",
        lambda: desk.api("GET", f"/tickets/{ticket_id}")[1]["ticket"]["status"] == "open" or None,
    )

    sign_in(page, desk)
    # The inbox's row says so: its date is when the ticket was made, days ago maybe.
    rows = page.get_by_role("list", name="Ticket list").get_by_role("link")
    row = rows.filter(has_text="Reopened by the customer")
    expect(row).to_have_count(1)
    row.click()
    expect(page).to_have_url(re.compile(f"#/tickets/{ticket_id}$"))
    expect(page.get_by_role("combobox", name="Status")).to_have_value("open")
    conversation = page.get_by_role("list", name="Conversation")
    marked = conversation.get_by_role("listitem").filter(has_text="reopened the resolved ticket")
    expect(marked).to_have_count(1)
    expect(marked).to_contain_text("还是没有解决，转人工")


def test_a_reopen_beside_the_customers_active_ticket_says_where_to_go(desk, page):
    """The customer's ticket was resolved, and an agent then made a second one by hand:
    reopening the first says the customer has another active ticket and names it, rather than
    asking to reload, and the first stays resolved."""
    _, first = handed_off(desk)
    _, body, headers = desk.api("GET", f"/tickets/{first}")
    customer_id = body["ticket"]["customer_id"]
    status, body, _ = desk.api("PATCH", f"/tickets/{first}", {"status": "resolved"}, headers={"If-Match": headers["ETag"]})
    assert status == 200, body
    status, body, _ = desk.api("POST", "/tickets", {"customer_id": customer_id, "description": "回电：又出问题了"})
    assert status == 201, body
    second = body["id"]

    sign_in(page, desk)
    page.goto(f"{desk.base}/console/#/tickets/{first}")
    expect(page.get_by_role("combobox", name="Status")).to_have_value("resolved")
    set_detail(page, "Status", "open")
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("another active ticket")
    expect(alert).not_to_contain_text("changed by someone else")
    _, body, _ = desk.api("GET", f"/tickets/{first}")
    assert body["ticket"]["status"] == "resolved"
    # It links to the customer's active ticket by its reference, as customers are told one.
    told = re.sub(r"[^0-9A-Za-z]", "", second)[-8:].upper()
    alert.get_by_role("link", name=f"Open ticket {told}").click()
    expect(page).to_have_url(re.compile(f"#/tickets/{second}$"))
    expect(page.get_by_text(f"Ticket {told}")).to_be_visible()


def test_a_row_says_when_the_customer_awaits_a_reply(desk, page):
    """The inbox shows which customers spoke last: a new ticket awaits its first reply, an
    answered one awaits nothing, and a follow-up puts it back to awaiting; pending (waiting on
    the customer) ends the wait, and their next message starts one."""
    session, ticket_id = handed_off(desk)
    sign_in(page, desk)
    row = page.get_by_role("list", name="Ticket list").get_by_role("link", name=re.compile("快递三天了还没到"))
    expect(row).to_contain_text(re.compile(r"Awaiting reply · (now|\d+ seconds? ago)"))

    status, body, _ = desk.api("POST", f"/tickets/{ticket_id}/replies", {"text": "您好，我们在查。"})
    assert status == 202, body
    expect(row).not_to_contain_text("Awaiting reply", timeout=10_000)

    desk.webchat_say(session, "查到了吗？")
    desk.wait_for("the wait", lambda: desk.api("GET", f"/tickets/{ticket_id}")[1]["ticket"].get("awaiting_reply_since"))
    expect(row).to_contain_text("Awaiting reply", timeout=10_000)

    status, body = desk.patch_ticket(ticket_id, {"status": "pending"})
    assert status == 200, body
    expect(row).not_to_contain_text("Awaiting reply", timeout=10_000)
    # Pending ended the wait; the customer's next message starts one (shown in Chinese).
    page.get_by_role("combobox", name="Language").select_option("zh-CN")
    desk.webchat_say(session, "我补充一下地址")
    zh_row = page.get_by_role("list", name="工单列表").get_by_role("link", name=re.compile("快递三天了还没到"))
    expect(zh_row).to_contain_text("待回复", timeout=10_000)


def test_the_inbox_sorts_the_customers_waiting_longest_first(desk, page):
    """Sorted by waiting, the customer who has waited longest for a reply is at the top: an
    unanswered ticket from its start, an answered one from the follow-up no agent answered,
    and a ticket nobody waits on last."""
    first_session, first = handed_off(desk, "我要投诉，第一单的发票还没开")
    _, second = handed_off(desk, "我要投诉，第二单的快递还没到")
    _, third = handed_off(desk, "我要投诉，第三单少发了一件")
    for ticket_id in (first, third):
        status, body, _ = desk.api("POST", f"/tickets/{ticket_id}/replies", {"text": "您好，我们在查。"})
        assert status == 202, body
    desk.webchat_say(first_session, "查到了吗？")
    desk.wait_for("the wait", lambda: desk.api("GET", f"/tickets/{first}")[1]["ticket"].get("awaiting_reply_since"))

    sign_in(page, desk)
    page.get_by_role("combobox", name="Sort").select_option("waiting")
    rows = page.get_by_role("list", name="Ticket list").get_by_role("link")
    expect(rows).to_have_count(3)
    expect(rows.nth(0)).to_contain_text("第二单")
    expect(rows.nth(1)).to_contain_text("第一单")
    expect(rows.nth(2)).to_contain_text("第三单")
    expect(rows.nth(2)).not_to_contain_text("Awaiting reply")


def test_the_customers_other_tickets_are_listed_beside_the_ticket(desk, page):
    """An agent answering someone who wrote before sees their other tickets, newest first,
    each with its reference, status and date, and opens one from there; a customer with no
    other ticket says so (in English and in Chinese)."""
    session, first = handed_off(desk)
    status, body = desk.patch_ticket(first, {"status": "closed"})
    assert status == 200, body
    customer_id = body["customer_id"]
    status, body, _ = desk.api("POST", "/tickets", {"customer_id": customer_id, "description": "回电：发票抬头写错了"})
    assert status == 201, body
    second = body["id"]
    ref = lambda i: re.sub(r"[^0-9A-Za-z]", "", i)[-8:].upper()  # noqa: E731

    sign_in(page, desk)
    page.goto(f"{desk.base}/console/#/tickets/{second}")
    others = page.get_by_role("list", name="Their other tickets")
    expect(others.get_by_role("listitem")).to_have_count(1)
    expect(others).to_contain_text("Closed")
    others.get_by_role("link", name=re.compile(ref(first))).click()
    expect(page).to_have_url(re.compile(f"#/tickets/{first}$"))
    expect(page.get_by_text(f"Ticket {ref(first)}")).to_be_visible()
    # From the first ticket, the second is the other one.
    others = page.get_by_role("list", name="Their other tickets")
    expect(others.get_by_role("link", name=re.compile(ref(second)))).to_contain_text("回电：发票抬头写错了")

    # Another customer, with one ticket only: said so, in the console's other language.
    _, lone = handed_off(desk)
    page.get_by_role("combobox", name="Language").select_option("zh-CN")
    page.goto(f"{desk.base}/console/#/tickets/{lone}")
    expect(page.get_by_text("没有其他工单。")).to_be_visible()


def test_the_detail_boxes_change_nothing_until_their_button_and_closing_asks_first(desk, page):
    """Arrow keys in the Status box (which a keyboard user meets on the way through the
    page) only choose: nothing is saved, closed or sent until the agent presses "Set
    status", and Closed, which cannot be undone and sends the survey, asks first."""
    session, ticket_id = handed_off(desk)
    sign_in(page, desk)
    page.goto(f"{desk.base}/console/#/tickets/{ticket_id}")
    changes = []
    page.on("request", lambda r: changes.append(r.url) if r.method == "PATCH" else None)
    status = page.get_by_role("combobox", name="Status")
    expect(status).to_have_value("open")
    status.focus()
    for _ in range(4):
        page.keyboard.press("ArrowDown")
    expect(status).to_have_value("closed")
    expect(page.get_by_text("Not changed yet: press “Set status”.")).to_be_visible()
    priority = page.get_by_role("combobox", name="Priority")
    priority.focus()
    page.keyboard.press("ArrowDown")
    expect(page.get_by_text("Not changed yet: press “Set priority”.")).to_be_visible()
    assert changes == [], changes
    _, body, _ = desk.api("GET", f"/tickets/{ticket_id}")
    assert (body["ticket"]["status"], body["ticket"]["priority"]) == ("open", "high"), body["ticket"]

    # The button asks before closing, saying what closing does; Escape leaves it open.
    status.focus()
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Set status")).to_be_focused()
    page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog", name="Close this ticket?")
    expect(dialog).to_contain_text("cannot be undone")
    expect(dialog).to_contain_text("satisfaction survey")
    expect(dialog.get_by_role("button", name="Cancel")).to_be_focused()
    page.keyboard.press("Escape")
    expect(dialog).to_have_count(0)
    expect(status).to_be_focused()
    expect(status).to_have_value("open")
    assert changes == [], changes

    # A change the agent makes, by keyboard alone: choose, Tab to the button, Enter.
    page.keyboard.press("ArrowDown")
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    desk.wait_for("pending", lambda: desk.api("GET", f"/tickets/{ticket_id}")[1]["ticket"]["status"] == "pending")
    expect(status).to_have_value("pending")
    expect(status).to_be_focused()
    expect(page.get_by_text("Not changed yet: press “Set status”.")).to_have_count(0)
    # The priority chosen earlier is still only a choice.
    expect(page.get_by_text("Not changed yet: press “Set priority”.")).to_be_visible()

    # Closing, confirmed: the ticket closes and the customer gets the survey.
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowDown")
    expect(status).to_have_value("closed")
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    expect(dialog.get_by_role("button", name="Cancel")).to_be_focused()
    page.keyboard.press("Shift+Tab")
    expect(dialog.get_by_role("button", name="Close ticket")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.get_by_role("status")).to_have_text("Ticket closed; the survey was sent to the customer.")
    expect(page.get_by_role("heading", level=1)).to_be_focused()
    expect(status).to_be_disabled()
    survey_link(desk, session)


def test_the_status_box_offers_escalated_only_as_the_current_status(desk, page):
    """Escalating takes a reason (the Escalate form); the Status box does not offer it, but
    shows it while the ticket is escalated."""
    _, ticket_id = handed_off(desk)
    sign_in(page, desk)
    page.goto(f"{desk.base}/console/#/tickets/{ticket_id}")
    status = page.get_by_role("combobox", name="Status")
    expect(status.get_by_role("option")).to_have_text(["Open", "Pending", "Resolved", "Closed"])
    code, body, _ = desk.api("POST", f"/tickets/{ticket_id}/escalate", {"reason": "退款"})
    assert code == 200, body
    expect(status).to_have_value("escalated")
    expect(status.get_by_role("option")).to_have_text(["Open", "Pending", "Escalated", "Resolved", "Closed"])
    page.get_by_role("combobox", name="Language").select_option("zh-CN")
    expect(page.get_by_role("button", name="更新状态")).to_be_disabled()
    page.get_by_role("combobox", name="状态").select_option("closed")
    page.get_by_role("button", name="更新状态").click()
    dialog = page.get_by_role("dialog", name="关闭此工单？")
    expect(dialog).to_contain_text("满意度调查")
    dialog.get_by_role("button", name="取消").click()
    expect(page.get_by_role("combobox", name="状态")).to_have_value("escalated")
    _, body, _ = desk.api("GET", f"/tickets/{ticket_id}")
    assert body["ticket"]["status"] == "escalated"


def test_closing_sends_the_survey_and_a_stale_second_browser_gets_the_conflict(desk, browser):
    session, ticket_id = handed_off(desk)
    first = browser.new_context(locale="en-US")
    second = browser.new_context(locale="en-US")
    try:
        a, b = first.new_page(), second.new_page()
        for p in (a, b):
            sign_in(p, desk)
            p.goto(f"{desk.base}/console/#/tickets/{ticket_id}")
            expect(p.get_by_role("combobox", name="Status")).to_have_value("open")
        # The second browser goes stale: it hears nothing more from the desk.
        b.route("**/tickets/*", lambda route: route.abort() if route.request.method == "GET" else route.continue_())

        set_detail(a, "Status", "closed")
        a.get_by_role("dialog", name="Close this ticket?").get_by_role("button", name="Close ticket").click()
        expect(a.get_by_role("combobox", name="Status")).to_have_value("closed")
        survey_link(desk, session)

        set_detail(b, "Priority", "urgent")
        conflict = b.get_by_role("alert").filter(has_text="changed by someone else")
        expect(conflict).to_be_visible()
        expect(conflict.get_by_role("button", name="Reload")).to_be_visible()
        # The stale page also tries a reply, which the closed ticket refuses.
        b.get_by_role("textbox", name="Reply").fill("还在吗？")
        b.get_by_role("button", name="Send").click()
        expect(b.get_by_role("alert").filter(has_text="this ticket is closed and cannot be changed.")).to_be_visible()
        b.get_by_role("textbox", name="Internal note").fill("稍后跟进")
        _, body, _ = desk.api("GET", f"/tickets/{ticket_id}")
        assert body["ticket"]["priority"] == "high", "the stale change must not be applied"

        # The desk answers again: the next poll shows the closed ticket, and the notices
        # that no longer hold go by themselves, with no Reload; what was typed stays.
        b.unroute("**/tickets/*")
        expect(b.get_by_role("combobox", name="Status")).to_have_value("closed")
        expect(b.get_by_role("alert")).to_have_count(0)
        expect(b.get_by_role("status").filter(has_text="it now shows their change")).to_be_visible()
        expect(b.get_by_role("textbox", name="Internal note")).to_have_value("稍后跟进")
        expect(b.get_by_role("textbox", name="Reply")).to_have_value("还在吗？")
        # A closed ticket offers nothing that can only fail.
        for name in ["Priority", "Skill", "Status"]:
            expect(b.get_by_role("combobox", name=name)).to_be_disabled()
            expect(b.get_by_role("button", name=f"Set {name.lower()}")).to_be_disabled()
        expect(b.get_by_role("combobox", name="Assignee")).to_be_disabled()
        expect(b.get_by_role("button", name="Save assignee")).to_be_disabled()
        expect(b.get_by_role("button", name="Assign to me")).to_have_count(0)  # the admin's page
        expect(b.get_by_role("button", name="Send")).to_be_disabled()
        expect(b.get_by_role("textbox", name="Reply")).not_to_be_editable()
        expect(b.get_by_role("button", name="Escalate")).to_have_count(0)
    finally:
        first.close()
        second.close()


def kb_test(page, region="Test a question", hits="Matching articles, best first"):
    """The knowledge page's "Test a question" area, a region named by its heading: its
    short live summary (what the desk would do) and its list of ranked articles."""
    area = page.get_by_role("region", name=region)
    return area.locator("[aria-live=polite]"), area.get_by_role("list", name=hits)


def test_the_kb_test_says_a_short_verdict_and_lists_the_articles_apart(desk, page):
    """A status region is for a short message: the verdict is one polite live line, and the
    ranked articles are a labelled list beside it, in both languages."""
    sign_in(page, desk, BOB)
    page.get_by_role("link", name="Knowledge base").click()
    page.get_by_role("textbox", name="Test a question").fill("I forgot my password")
    page.get_by_role("button", name="Test", exact=True).click()
    summary, hits = kb_test(page)
    expect(summary).to_have_text(re.compile(r"^Would auto-reply \(confidence ≥ [0-9.]+\) · \d+ matching articles?$"))
    expect(hits.get_by_role("listitem").first).to_contain_text("How to reset your password")
    area = page.get_by_role("region", name="Test a question")
    expect(area.get_by_role("status")).to_have_count(0)
    # Nothing close enough: the line says the desk would hand off.
    page.get_by_role("textbox", name="Test a question").fill("qwxz")
    page.get_by_role("button", name="Test", exact=True).click()
    expect(summary).to_contain_text("Would hand off to an agent")

    page.get_by_role("combobox", name="Language").select_option("zh-CN")
    page.get_by_role("textbox", name="测试问题").fill("忘记密码了怎么办")
    page.get_by_role("button", name="测试", exact=True).click()
    summary, hits = kb_test(page, "测试问题", "匹配的文章（按相关度排序）")
    expect(summary).to_have_text(re.compile(r"^将(自动回复|转人工).* · 匹配 \d+ 篇文章$"))
    expect(hits.get_by_role("listitem")).not_to_have_count(0)


def test_an_edited_article_changes_the_test_and_then_the_visitors_answer(desk, page):
    sign_in(page, desk, BOB)
    page.get_by_role("link", name="Knowledge base").click()
    question = page.get_by_role("textbox", name="Test a question")
    question.fill("I forgot my password")
    page.get_by_role("button", name="Test", exact=True).click()
    summary, hits = kb_test(page)
    expect(summary).to_contain_text("Would auto-reply")
    expect(hits).to_contain_text("How to reset your password")

    page.get_by_role("searchbox", name="Search articles").fill("reset your password")
    page.get_by_role("button", name="Edit How to reset your password").click()
    answer = page.get_by_role("textbox", name="Answer", exact=True)
    answer.fill("Open the new account portal at https://account.example.test and choose Reset.")
    page.get_by_role("button", name="Save article").click()
    expect(page.get_by_role("status").filter(has_text="Article saved")).to_be_visible()

    page.get_by_role("button", name="Test", exact=True).click()
    expect(hits).to_contain_text("new account portal")

    session = desk.webchat_session()
    desk.webchat_say(session, "I forgot my password")
    reply = desk.wait_for(
        "the auto-reply",
        lambda: next((m for m in desk.webchat_messages(session) if m["kind"] == "auto_reply"), None),
    )
    assert "new account portal" in reply["text"]

    # A new article, made in the console, answers a question nothing answered before.
    page.get_by_role("button", name="New article").click()
    page.get_by_role("textbox", name="Article id").fill("gift-wrap-zh")
    page.get_by_role("textbox", name="Title").fill("礼品包装")
    page.get_by_role("textbox", name="Questions (one per line)").fill(
        "可以礼品包装吗\n能帮我包装成礼物吗\n有没有礼品包装服务"
    )
    page.get_by_role("textbox", name="Answer", exact=True).fill("可以的，下单时勾选“礼品包装”即可，免费。")
    page.get_by_role("textbox", name="Locale").fill("zh")
    page.get_by_role("button", name="Save article").click()
    # Tested once the desk has it (the first save's notice may still be showing).
    desk.wait_for("the new article", lambda: desk.api("GET", "/kb/articles/gift-wrap-zh")[0] == 200)
    question.fill("可以礼品包装吗")
    page.get_by_role("button", name="Test", exact=True).click()
    expect(hits).to_contain_text("礼品包装")


def test_an_article_answers_in_the_customers_language_and_editing_keeps_it(desk, page):
    sign_in(page, desk, BOB)
    page.get_by_role("link", name="Knowledge base").click()
    page.get_by_role("button", name="New article").click()
    page.get_by_role("textbox", name="Article id").fill("gift-cards")
    page.get_by_role("textbox", name="Title").fill("Gift cards")
    page.get_by_role("textbox", name="Questions (one per line)").fill("Do you sell gift cards?\n礼品卡怎么买")
    page.get_by_role("textbox", name="Answer", exact=True).fill("Yes: buy them under Gift cards in the shop.")
    page.get_by_role("textbox", name="Locale").fill("en")
    page.get_by_role("textbox", name="Answer in Chinese (zh)").fill("有的：在商店的“礼品卡”栏目购买。")
    page.get_by_role("button", name="Save article").click()
    expect(page.get_by_role("status").filter(has_text="Article saved")).to_be_visible()

    page.get_by_role("textbox", name="Test a question").fill("礼品卡怎么买")
    page.get_by_role("button", name="Test", exact=True).click()
    summary, hits = kb_test(page)
    expect(summary).to_contain_text("Would auto-reply")
    expect(hits).to_contain_text("“礼品卡”栏目")
    session = desk.webchat_session()
    desk.webchat_say(session, "礼品卡怎么买")
    reply = desk.wait_for(
        "the auto-reply",
        lambda: next((m for m in desk.webchat_messages(session) if m["kind"] == "auto_reply"), None),
    )
    assert "“礼品卡”栏目" in reply["text"]

    # Editing something else keeps the Chinese answer.
    page.get_by_role("searchbox", name="Search articles").fill("Gift cards")
    page.get_by_role("button", name="Edit Gift cards").click()
    expect(page.get_by_role("textbox", name="Answer in Chinese (zh)")).to_have_value("有的：在商店的“礼品卡”栏目购买。")
    page.get_by_role("textbox", name="Title").fill("Gift cards and vouchers")
    page.get_by_role("button", name="Save article").click()
    # Read once the desk has it (the first save's notice may still be showing).
    body = desk.wait_for(
        "the saved title",
        lambda: (lambda b: b if b.get("title") == "Gift cards and vouchers" else None)(
            desk.api("GET", "/kb/articles/gift-cards")[1]
        ),
    )
    assert body["answers"] == {"zh": "有的：在商店的“礼品卡”栏目购买。"}


def test_the_csat_chart_shows_a_rating_from_the_survey_link(desk, page):
    session, ticket_id = handed_off(desk)
    _, body, headers = desk.api("GET", f"/tickets/{ticket_id}")
    status, _, _ = desk.api(
        "PATCH", f"/tickets/{ticket_id}", {"status": "closed"}, headers={"If-Match": headers["ETag"]}
    )
    assert status == 200
    path = survey_link(desk, session)
    status, body, _ = desk.api("POST", path, {"rating": 4, "comment": "很快"}, token=None)
    assert status == 200, body

    sign_in(page, desk, BOB)
    page.get_by_role("link", name="Reports").click()
    chart = page.get_by_role("img", name=re.compile("^Rating distribution"))
    expect(chart).to_have_attribute("aria-label", re.compile("4★: 1"))
    expect(chart.locator("rect.bar")).to_have_count(5)
    expect(page.get_by_role("img", name=re.compile("^Tickets opened and closed per day"))).to_be_visible()
    expect(page.get_by_role("table", name="By channel")).to_contain_text("Web chat")
    expect(page.get_by_role("table", name="By agent").get_by_role("columnheader", name="Agent")).to_be_visible()
    screenshot(page, "console-reports")

    # Agents do not see reports.
    page.get_by_role("button", name="Sign out").click()
    sign_in(page, desk, ALICE)
    expect(page.get_by_role("link", name="Reports")).to_have_count(0)


def test_switching_to_chinese_shows_the_whole_interface_in_chinese(desk, page):
    _, ticket_id = handed_off(desk)
    sign_in(page, desk, BOB)
    tables = page.evaluate("import('./i18n.js').then(m => m.KEYS)")
    assert tables["en"] == tables["zh-CN"], "every text has both languages"

    page.get_by_role("combobox", name="Language").select_option("zh-CN")
    expect(page.get_by_role("link", name="工单", exact=True)).to_be_visible()
    expect(page.get_by_role("tab", name=re.compile("^未分配"))).to_be_visible()
    expect(page.get_by_role("searchbox", name="搜索工单")).to_be_visible()
    screenshot(page, "console-inbox-zh")
    english = ["Tickets", "Knowledge base", "Reports", "Unassigned", "Mine", "Filters", "Sign out", "Search tickets"]

    def no_english():
        text = page.locator("body").inner_text()
        left = [w for w in english if w in text]
        assert not left, f"English left in the Chinese interface: {left}"

    no_english()
    page.goto(f"{desk.base}/console/#/tickets/{ticket_id}")
    expect(page.get_by_role("textbox", name="回复")).to_be_visible()
    expect(page.get_by_role("button", name="发送")).to_be_visible()
    expect(page.get_by_role("textbox", name="内部备注")).to_be_visible()
    expect(page.get_by_role("combobox", name="状态")).to_be_visible()
    expect(page.get_by_role("form", name="升级给主管").get_by_role("button", name="升级")).to_be_visible()
    english += ["Reply", "Send", "Internal note", "Status", "Escalate", "Reason", "Assignee", "supervisor"]
    no_english()
    page.get_by_role("link", name="知识库").click()
    expect(page.get_by_role("textbox", name="测试问题")).to_be_visible()
    page.get_by_role("link", name="报表").click()
    expect(page.get_by_role("img", name=re.compile("^评分分布"))).to_be_visible()
    # A period with no ratings says so in each table, rather than show an empty one.
    for name, heading in [("按渠道", "渠道"), ("按坐席", "坐席")]:
        table = page.get_by_role("table", name=name)
        expect(table.get_by_role("columnheader", name=heading)).to_be_visible()
        expect(table).to_contain_text("该时段内没有评分。")
    english += ["Test a question", "Customer satisfaction", "Rating distribution", "No ratings"]
    no_english()
    # The choice is remembered.
    page.reload()
    expect(page.get_by_role("link", name="工单", exact=True)).to_be_visible()
    # In a narrow window each name in the navigation stays on one line, not one character
    # a line.
    page.set_viewport_size({"width": 760, "height": 800})
    for name in ["工单", "知识库", "坐席", "报表"]:
        box = page.get_by_role("navigation").get_by_role("link", name=name, exact=True).bounding_box()
        assert box["width"] > box["height"], (name, box)


def test_the_keyboard_moves_opens_replies_and_searches(desk, page):
    handed_off(desk, "我要投诉，退款一直没到账")
    handed_off(desk, "I want to talk to a human about my invoice")
    sign_in(page, desk)
    list_ = page.get_by_role("list", name="Ticket list")
    expect(list_.get_by_role("link")).to_have_count(2)
    page.keyboard.press("j")
    expect(list_.get_by_role("link").nth(1)).to_be_focused()
    page.keyboard.press("k")
    expect(list_.get_by_role("link").nth(0)).to_be_focused()
    page.keyboard.press("/")
    expect(page.get_by_role("searchbox", name="Search tickets")).to_be_focused()
    page.keyboard.type("退款")
    expect(list_.get_by_role("link")).to_have_count(1)
    page.keyboard.press("Escape")
    page.keyboard.press("r")
    expect(page.get_by_role("textbox", name="Reply")).to_be_focused()
    expect(page.get_by_role("heading", name=re.compile("退款"))).to_be_visible()
    page.go_back()
    expect(list_.get_by_role("link")).to_have_count(2)
    page.keyboard.press("j")
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name=re.compile("退款"))).to_be_visible()


def test_the_ticket_view_has_keys_for_its_boxes_and_back(desk, page):
    _, ticket_id = handed_off(desk)
    sign_in(page, desk)
    page.goto(f"{desk.base}/console/#/tickets/{ticket_id}")
    heading = page.get_by_role("heading", name=COMPLAINT)
    expect(heading).to_be_focused()
    expect(page.get_by_text("Keys: r reply · n internal note · t tag · e escalate · u back to tickets")).to_be_visible()
    note = page.get_by_role("textbox", name="Internal note")
    page.keyboard.press("n")
    expect(note).to_be_focused()
    # In a box, the letters are the box's: typed, not taken as keys.
    page.keyboard.type("retune")
    expect(note).to_have_value("retune")
    expect(note).to_be_focused()
    for key, box in [
        ("t", page.get_by_role("combobox", name="Add a tag")),
        ("e", page.get_by_role("textbox", name="Reason")),
        ("r", page.get_by_role("textbox", name="Reply")),
    ]:
        heading.focus()
        page.keyboard.press(key)
        expect(box).to_be_focused()
    # An agent who dictates turns the one-letter keys off: a letter then does nothing, the
    # line of keys goes, and the choice is kept.
    switch = page.get_by_role("checkbox", name="Single-key shortcuts")
    expect(switch).to_be_checked()
    switch.uncheck()
    expect(page.get_by_text("Keys: r reply")).to_have_count(0)
    heading.focus()
    page.keyboard.press("n")
    page.keyboard.press("u")
    expect(heading).to_be_focused()
    page.reload()
    expect(heading).to_be_focused()
    expect(switch).not_to_be_checked()
    switch.check()
    heading.focus()
    page.keyboard.press("u")
    list_ = page.get_by_role("list", name="Ticket list")
    expect(list_.get_by_role("link")).to_have_count(1)
    # The inbox's keys go by the same switch.
    inbox_switch = page.get_by_role("checkbox", name="Single-key shortcuts")
    expect(inbox_switch).to_be_checked()
    inbox_switch.uncheck()
    page.locator("body").press("j")
    expect(list_.get_by_role("link")).not_to_be_focused()
    inbox_switch.check()
    page.locator("body").press("j")
    expect(list_.get_by_role("link")).to_be_focused()
    # A closed ticket has no reply, tag or escalation box: the keys do nothing there.
    _, body, _ = desk.api("GET", f"/tickets/{ticket_id}")
    status, _, _ = desk.api(
        "PATCH", f"/tickets/{ticket_id}", {"status": "closed"}, headers={"If-Match": str(body["ticket"]["version"])}
    )
    assert status == 200
    page.goto(f"{desk.base}/console/#/tickets/{ticket_id}")
    expect(heading).to_be_focused()
    for key in ["r", "t", "e"]:
        page.keyboard.press(key)
        expect(heading).to_be_focused()
    page.keyboard.press("n")
    expect(note).to_be_focused()


def test_escalation_takes_a_reason(desk, page):
    _, ticket_id = handed_off(desk)
    sign_in(page, desk)
    page.goto(f"{desk.base}/console/#/tickets/{ticket_id}")
    # Without a reason the console says one is needed, at the box, and sends nothing.
    reason = page.get_by_role("textbox", name="Reason")
    page.get_by_role("button", name="Escalate").click()
    expect(page.get_by_role("alert")).to_have_text("Say why the ticket needs escalating.")
    expect(reason).to_have_attribute("aria-invalid", "true")
    expect(reason).to_be_focused()
    _, body, _ = desk.api("GET", f"/tickets/{ticket_id}")
    assert body["ticket"]["status"] == "open", body["ticket"]
    reason.fill("客户要求退款超过 500 元")
    expect(page.get_by_role("alert")).to_have_count(0)
    expect(reason).not_to_have_attribute("aria-invalid", "true")
    page.get_by_role("button", name="Escalate").click()
    expect(page.get_by_role("combobox", name="Status")).to_have_value("escalated")
    expect(page.get_by_text("Escalated: 客户要求退款超过 500 元")).to_be_visible()
    _, body, _ = desk.api("GET", f"/tickets/{ticket_id}")
    assert body["ticket"]["escalation_reason"] == "客户要求退款超过 500 元"

    # Once the ticket moves on, the reason is its history, said in the past, not its state.
    set_detail(page, "Status", "resolved")
    expect(page.get_by_role("combobox", name="Status")).to_have_value("resolved")
    expect(page.get_by_text("Escalated: 客户要求退款超过 500 元")).to_have_count(0)
    expect(page.get_by_text(re.compile(r"^Was escalated \(.+\): 客户要求退款超过 500 元$"))).to_be_visible()
    # Resolved, it says when it closes by itself (the desk's default: 4 days on).
    _, body, _ = desk.api("GET", f"/tickets/{ticket_id}")
    assert body["ticket"]["closes_at"], body["ticket"]
    expect(page.get_by_text(re.compile(r"^Closes by itself on .+, and the survey goes out then"))).to_be_visible()
    page.get_by_role("combobox", name="Language").select_option("zh-CN")
    expect(page.get_by_text(re.compile(r"^曾升级（.+）：客户要求退款超过 500 元$"))).to_be_visible()
    expect(page.get_by_text(re.compile(r"^将于 .+ 自动关闭并发送满意度调查"))).to_be_visible()
    expect(page.get_by_text(re.compile("^已升级："))).to_have_count(0)


def test_the_notice_after_a_conflict_goes_with_a_newer_version_or_in_time(desk, page):
    """After a change refused for a version conflict, the page shows the other change and
    says so. That notice holds for the version it was said of: a newer version takes it
    away, and so does time, as any notice of something done goes. The page's timers run on
    Playwright's clock, flowing as usual until the test pauses it to step through them."""
    _, ticket_id = handed_off(desk)
    page.clock.install()
    sign_in(page, desk)
    page.goto(f"{desk.base}/console/#/tickets/{ticket_id}")
    status = page.get_by_role("combobox", name="Status")
    expect(status).to_have_value("open")
    shown = page.get_by_role("status").filter(has_text="it now shows their change")

    def change_by_someone_else(patch):
        _, _, headers = desk.api("GET", f"/tickets/{ticket_id}")
        code, body, _ = desk.api("PATCH", f"/tickets/{ticket_id}", patch, headers={"If-Match": headers["ETag"]})
        assert code == 200, body

    def conflict(patch, then):
        # The page hears nothing while someone else changes the ticket, then tries its own.
        page.route("**/tickets/*", lambda r: r.abort() if r.request.method == "GET" else r.continue_())
        change_by_someone_else(patch)
        set_detail(page, "Priority", then)
        expect(page.get_by_role("alert").filter(has_text="changed by someone else")).to_be_visible()
        page.unroute("**/tickets/*")
        expect(shown).to_be_visible()
        # Stopped at once, well within the notice's time.
        page.clock.pause_at(datetime.fromtimestamp(page.evaluate("Date.now()") / 1000 + 0.1))
        expect(page.get_by_role("alert")).to_have_count(0)

    # A newer version, well before the notice's time is up, takes it away.
    conflict({"priority": "high"}, "urgent")
    change_by_someone_else({"skill": "billing"})
    page.clock.run_for(3_500)  # one poll, under half the notice's time
    expect(page.get_by_role("combobox", name="Skill")).to_have_value("billing")
    expect(shown).to_have_count(0)

    # With no newer version, it stays through the polls and goes when its time is up.
    page.clock.resume()
    conflict({"priority": "low"}, "normal")
    page.clock.run_for(3_500)
    expect(shown).to_be_visible()
    page.clock.run_for(6_000)
    expect(shown).to_have_count(0)
    expect(page.get_by_role("combobox", name="Priority")).to_have_value("low")


class FakeIssuer:
    """A small OIDC issuer on loopback: /authorize remembers the PKCE challenge and sends
    the browser back with a code; /token gives the access token only for the verifier whose
    S256 hash is that challenge."""

    def __init__(self, access_token):
        self.codes = {}
        self.exchanges = []
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                url = urllib.parse.urlparse(self.path)
                q = dict(urllib.parse.parse_qsl(url.query))
                if url.path != "/authorize" or q.get("code_challenge_method") != "S256" or q.get("response_type") != "code":
                    self.send_response(400)
                    self.end_headers()
                    return
                code = f"code-{len(issuer.codes)}"
                issuer.codes[code] = q
                back = q["redirect_uri"] + "?" + urllib.parse.urlencode({"code": code, "state": q["state"]})
                self.send_response(302)
                self.send_header("Location", back)
                self.end_headers()

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
                asked = issuer.codes.pop(form.get("code"), None)
                verifier = form.get("code_verifier", "")
                digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
                ok = (
                    asked is not None
                    and form.get("grant_type") == "authorization_code"
                    and form.get("client_id") == asked["client_id"]
                    and form.get("redirect_uri") == asked["redirect_uri"]
                    and digest == asked["code_challenge"]
                )
                issuer.exchanges.append(ok)
                body = json.dumps(
                    {"access_token": access_token, "token_type": "Bearer", "expires_in": 3600}
                    if ok
                    else {"error": "invalid_grant"}
                ).encode()
                self.send_response(200 if ok else 400)
                self.send_header("Content-Type", "application/json")
                self.send_header("Access-Control-Allow-Origin", "*")
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()


def test_sign_in_through_an_oidc_issuer_with_pkce(page):
    issuer = FakeIssuer(access_token=ALICE)
    desk = Desk(
        {
            "HELPDESK_CONSOLE_OIDC_AUTHORIZE_URL": issuer.base + "/authorize",
            "HELPDESK_CONSOLE_OIDC_TOKEN_URL": issuer.base + "/token",
            "HELPDESK_CONSOLE_OIDC_CLIENT_ID": "console-client",
        }
    )
    try:
        page.goto(desk.base + "/console/")
        expect(page.get_by_label("Agent token")).to_have_count(0)
        page.get_by_role("button", name="Sign in with your organisation").click()
        expect(page.get_by_text("Signed in as alice (agent)")).to_be_visible()
        assert issuer.exchanges == [True]
        assert "code=" not in page.url, "the code is taken out of the address bar"
        # A code replayed with another verifier is refused by the issuer.
        page.get_by_role("button", name="Sign out").click()
        page.goto(desk.base + "/console/?code=code-0&state=forged")
        expect(page.get_by_role("alert")).to_contain_text("did not match")
    finally:
        desk.stop()
        issuer.stop()


def test_the_page_runs_under_its_content_security_policy(desk, page):
    refused = []
    page.on("console", lambda m: refused.append(m.text) if "Content Security Policy" in m.text else None)
    response = page.goto(desk.base + "/console/")
    policy = response.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in policy and "'unsafe-inline'" not in policy, policy
    assert response.headers["x-content-type-options"] == "nosniff"
    page.get_by_label("Agent token").fill(BOB)
    page.get_by_role("button", name="Sign in").click()
    _, ticket_id = handed_off(desk)
    for view in ["#/tickets", f"#/tickets/{ticket_id}", "#/kb", "#/reports"]:
        page.goto(f"{desk.base}/console/{view}")
        expect(page.get_by_role("navigation", name="Main")).to_be_visible()
    page.goto(f"{desk.base}/console/#/reports")
    expect(page.get_by_role("img", name=re.compile("^Rating distribution"))).to_be_visible()
    assert refused == [], refused


def test_a_long_conversation_shows_its_newest_page_and_loads_the_earlier_ones(desk, page):
    _, ticket_id = handed_off(desk)
    for i in range(60):
        status, body, _ = desk.api("POST", f"/tickets/{ticket_id}/notes", {"text": f"第 {i} 条备注"})
        assert status == 201, body
    _, everything, _ = desk.api("GET", f"/tickets/{ticket_id}?limit=200")
    total = len(everything["messages"])
    assert total > 60, total
    sign_in(page, desk)
    page.goto(f"{desk.base}/console/#/tickets/{ticket_id}")
    conversation = page.get_by_role("list", name="Conversation")
    expect(conversation).to_contain_text("第 59 条备注")
    expect(conversation.get_by_role("listitem")).to_have_count(50)
    expect(conversation).not_to_contain_text("快递三天了还没到")
    page.get_by_role("button", name="Load earlier messages").click()
    expect(conversation.get_by_role("listitem")).to_have_count(total)
    expect(conversation.get_by_role("listitem").first).to_contain_text("快递三天了还没到")
    expect(page.get_by_role("button", name="Load earlier messages")).to_have_count(0)
    # A new message still arrives at the bottom, by the poll.
    desk.api("POST", f"/tickets/{ticket_id}/notes", {"text": "最新的备注"})
    expect(conversation.get_by_role("listitem").last).to_contain_text("最新的备注", timeout=8000)
    expect(conversation.get_by_role("listitem")).to_have_count(total + 1)


def test_a_suggested_answer_fills_the_reply_box_in_the_rankings_order(desk, page):
    # Half a match for two articles of the sample knowledge base, with the lexical ranking
    # and with the model: a hand-off with suggestions. They come in the ranking's order,
    # its best guess first, which is what accuracy@1 measures; each one's confidence is
    # calibrated for answering alone and need not fall in that order.
    _, ticket_id = handed_off(desk, "发票和退款")
    _, body, _ = desk.api("GET", f"/tickets/{ticket_id}")
    suggestions = body["ticket"]["suggestions"]
    assert len(suggestions) >= 2, suggestions
    best_first = suggestions

    sign_in(page, desk, ALICE)
    page.goto(f"{desk.base}/console/#/tickets/{ticket_id}")
    buttons = page.get_by_role("button", name=re.compile("^Use answer: "))
    expect(buttons).to_have_count(len(suggestions))
    expect(buttons).to_have_text([f"Use answer: {s['title']}" for s in best_first])

    top = best_first[0]
    _, article, _ = desk.api("GET", f"/kb/articles/{top['article_id']}")
    buttons.first.click()
    reply = page.get_by_role("textbox", name="Reply")
    expect(reply).to_have_value(article["answer"])
    expect(reply).to_be_focused()
    expect(page.get_by_role("alert")).to_have_count(0)

    # Closed, the ticket offers no answer to use and no change to make.
    _, _, headers = desk.api("GET", f"/tickets/{ticket_id}")
    status, body, _ = desk.api("PATCH", f"/tickets/{ticket_id}", {"status": "closed"}, headers={"If-Match": headers["ETag"]})
    assert status == 200, body
    expect(page.get_by_role("combobox", name="Status")).to_have_value("closed")
    for button in buttons.all():
        expect(button).to_be_disabled()
    expect(page.get_by_role("button", name="Assign to me")).to_be_disabled()
    expect(page.get_by_role("combobox", name="Priority")).to_be_disabled()
    expect(page.get_by_role("combobox", name="Skill")).to_be_disabled()


def test_the_inbox_pages_through_every_ticket_and_keeps_them_after_a_poll(desk, page):
    total = 115
    sessions = [desk.webchat_session(f"访客 {i}") for i in range(total)]
    for i, session in enumerate(sessions):
        desk.webchat_say(session, f"我要投诉 第{i:03d}号")
    desk.wait_for("the hand-offs", lambda: desk.api("GET", "/tickets/counts")[1]["all"] == total, timeout=60)

    sign_in(page, desk)
    rows = page.get_by_role("list", name="Ticket list").get_by_role("link")
    more = page.get_by_role("button", name="Load more")
    expect(rows).to_have_count(25)
    for shown in [50, 75, 100, total]:
        more.click()
        expect(rows).to_have_count(shown)
    expect(more).to_have_count(0)
    oldest = rows.filter(has_text="我要投诉 第000号")
    expect(oldest).to_have_count(1)

    # A new ticket arrives by the poll, at the top; every page loaded stays listed.
    desk.webchat_say(desk.webchat_session("新访客"), "我要投诉 第115号")
    expect(rows.first).to_contain_text("我要投诉 第115号", timeout=8000)
    expect(rows).to_have_count(total + 1)
    expect(oldest).to_have_count(1)
    expect(more).to_have_count(0)


def test_the_reference_the_customer_was_told_finds_the_ticket(desk, page):
    session, ticket_id = handed_off(desk)
    handed_off(desk, "我要投诉，退款一直没到账")
    handoff = next(m for m in desk.webchat_messages(session) if m["kind"] == "handoff")
    ref = re.search(r"工单号：([0-9A-Z]{8})", handoff["text"]).group(1)

    sign_in(page, desk)
    rows = page.get_by_role("list", name="Ticket list").get_by_role("link")
    expect(rows).to_have_count(2)
    row = rows.filter(has_text="快递三天了还没到")
    expect(row).to_contain_text(f"Ticket {ref}")

    # Typed as the customer read it out, in any case.
    page.get_by_role("searchbox", name="Search tickets").fill(ref.lower())
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("快递三天了还没到")
    rows.first.click()
    expect(page.get_by_role("heading", name=COMPLAINT)).to_be_visible()
    expect(page.get_by_text(f"Ticket {ref}")).to_be_visible()

    # Closed, the ticket leaves the active list; its reference still finds it, from the desk.
    _, _, headers = desk.api("GET", f"/tickets/{ticket_id}")
    status, body, _ = desk.api("PATCH", f"/tickets/{ticket_id}", {"status": "closed"}, headers={"If-Match": headers["ETag"]})
    assert status == 200, body
    page.get_by_role("link", name="Tickets", exact=True).click()
    expect(rows).to_have_count(1)
    page.get_by_role("searchbox", name="Search tickets").fill(f"#{ref.lower()}")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("快递三天了还没到")
    expect(rows.first).to_contain_text("Closed")


def test_a_ticket_found_by_its_reference_is_kept_current(desk, page):
    """A resolved ticket is outside the active list; found by its reference, its row is
    polled like any other, so a change made elsewhere shows (and a bulk change on it goes
    with its version)."""
    _, ticket_id = handed_off(desk)
    status, body = desk.patch_ticket(ticket_id, {"status": "resolved"})
    assert status == 200, body
    ref = re.sub(r"[^0-9A-Za-z]", "", ticket_id)[-8:].upper()
    sign_in(page, desk)
    page.get_by_role("searchbox", name="Search tickets").fill(ref)
    rows = page.get_by_role("list", name="Ticket list").get_by_role("link")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Resolved")
    expect(rows.first).to_contain_text("High")
    status, body = desk.patch_ticket(ticket_id, {"priority": "urgent"})
    assert status == 200, body
    expect(rows.first).to_contain_text("Urgent", timeout=10_000)


def test_the_inbox_row_and_counts_read_right(desk, page):
    _, ticket_id = handed_off(desk)
    _, long_one = handed_off(desk, "我要投诉，" + "我的订单一直显示待发货，" * 9 + "请帮我查一下")
    _, _, headers = desk.api("GET", f"/tickets/{long_one}")
    status, body, _ = desk.api("PATCH", f"/tickets/{long_one}", {"priority": "urgent"}, headers={"If-Match": headers["ETag"]})
    assert status == 200, body
    _, _, headers = desk.api("GET", f"/tickets/{ticket_id}")
    status, body, _ = desk.api("PATCH", f"/tickets/{ticket_id}", {"status": "resolved"}, headers={"If-Match": headers["ETag"]})
    assert status == 200, body

    sign_in(page, desk)
    rows = page.get_by_role("list", name="Ticket list").get_by_role("link")
    expect(rows).to_have_count(1)
    # A subject on two lines leaves the priority pill its one line's height.
    row = rows.first
    subject = row.get_by_text(re.compile("^我要投诉，我的订单")).bounding_box()
    pill = row.get_by_text(re.compile("^(Low|Normal|High|Urgent)$")).bounding_box()
    assert subject["height"] > 1.8 * pill["height"], (subject, pill)
    # The views count active tickets: under another status, the tabs say so.
    expect(page.get_by_role("tab", name=re.compile("^All"))).to_have_text(re.compile(r"^All\s*1$"))
    page.get_by_role("combobox", name="Status").select_option("")
    expect(rows).to_have_count(2)
    expect(page.get_by_role("tab", name=re.compile("^All"))).to_have_text(re.compile(r"^All\s*1 active$"))
    # Under the other filters, each view counts what its list of active tickets holds.
    page.get_by_role("combobox", name="Status").select_option("active")
    tabs = {name: page.get_by_role("tab", name=re.compile("^" + name)) for name in ["Mine", "Unassigned", "All"]}
    page.get_by_role("combobox", name="Priority").select_option("low")
    expect(rows).to_have_count(0)
    for tab in tabs.values():
        expect(tab).to_have_text(re.compile(r"^\w+\s*0$"))
    page.get_by_role("combobox", name="Priority").select_option("urgent")
    expect(rows).to_have_count(1)
    expect(tabs["All"]).to_have_text(re.compile(r"^All\s*1$"))
    expect(tabs["Unassigned"]).to_have_text(re.compile(r"^Unassigned\s*1$"))
    expect(tabs["Mine"]).to_have_text(re.compile(r"^Mine\s*0$"))
    page.get_by_role("combobox", name="Language").select_option("zh-CN")
    expect(page.get_by_role("tab", name=re.compile("^全部"))).to_have_text(re.compile(r"^全部\s*1$"))
    page.get_by_role("combobox", name="状态").select_option("")
    expect(page.get_by_role("tab", name=re.compile("^全部"))).to_have_text(re.compile(r"^全部\s*1 个处理中$"))


def test_a_lost_connection_notice_goes_once_the_desk_answers(desk, page):
    _, ticket_id = handed_off(desk)
    sign_in(page, desk)
    page.goto(f"{desk.base}/console/#/tickets/{ticket_id}")
    expect(page.get_by_role("combobox", name="Status")).to_have_value("open")
    page.route("**/tickets/*", lambda route: route.abort() if route.request.method == "GET" else route.continue_())
    expect(page.get_by_role("alert")).to_have_text("The desk cannot be reached. Retrying…")
    page.unroute("**/tickets/*")
    expect(page.get_by_role("alert")).to_have_count(0)
    expect(page.get_by_role("combobox", name="Status")).to_have_value("open")


def test_a_reply_whose_answer_was_lost_is_sent_once_when_sent_again(desk, page):
    """The connection drops after the desk took the reply: the agent sees it failed and sends
    it again (after a reload, too), and the customer gets it once. The console sends each
    text under one Idempotency-Key until it is sent; a new text gets a new key."""
    session, ticket_id = handed_off(desk)
    sign_in(page, desk)
    page.goto(f"{desk.base}/console/#/tickets/{ticket_id}")
    keys = []

    def take_then_drop(route):
        keys.append(route.request.headers.get("idempotency-key"))
        route.fetch()  # the desk takes it; its answer never reaches the page
        route.abort()

    page.route("**/replies", take_then_drop)
    reply = page.get_by_role("textbox", name="Reply")
    reply.fill("您的包裹明天送达。")
    page.get_by_role("button", name="Send").click()
    expect(page.get_by_role("alert")).to_contain_text("cannot be reached")
    page.unroute("**/replies")

    # The agent reloads, and sends the text still in the box.
    page.reload()
    expect(reply).to_have_value("您的包裹明天送达。")
    page.on("request", lambda r: keys.append(r.headers.get("idempotency-key")) if r.url.endswith("/replies") else None)
    page.get_by_role("button", name="Send").click()
    expect(page.get_by_role("status")).to_contain_text("Reply queued")
    expect(reply).to_have_value("")
    assert len(keys) == 2 and keys[0] and keys[0] == keys[1], keys

    reply.fill("还有其他问题吗？")
    page.get_by_role("button", name="Send").click()
    expect(reply).to_have_value("")
    assert len(keys) == 3 and keys[2] != keys[0], keys
    conversation = page.get_by_role("list", name="Conversation")
    expect(conversation).to_contain_text("还有其他问题吗？")
    texts = desk.wait_for(
        "both replies to reach the visitor",
        lambda: (lambda t: t if any("其他问题" in x for x in t) else None)(
            [m["text"] for m in desk.webchat_messages(session) if m["kind"] == "agent_reply"]
        ),
    )
    assert texts.count("您的包裹明天送达。") == 1, texts


def test_a_long_conversation_opens_at_its_newest_message_and_a_poll_keeps_the_place(desk, page):
    """With dozens of messages the ticket opens at the newest, beside the reply box; a poll's
    new message keeps an agent who scrolled up where they were, and shows itself to one at
    the end."""
    session, ticket_id = handed_off(desk)
    for i in range(56):
        desk.webchat_say(session, f"补充说明 第{i:02d}条")
    desk.wait_for(
        "the messages to join the ticket",
        lambda: any("第55条" in m["text"] for m in desk.api("GET", f"/tickets/{ticket_id}")[1]["messages"]),
    )
    sign_in(page, desk)
    page.goto(f"{desk.base}/console/#/tickets/{ticket_id}")
    conversation = page.get_by_role("list", name="Conversation")
    newest = conversation.get_by_text("补充说明 第55条")
    expect(newest).to_be_in_viewport()
    expect(page.get_by_role("textbox", name="Reply")).to_be_in_viewport()
    older = conversation.get_by_text("补充说明 第10条")
    expect(older).not_to_be_in_viewport()

    # Scrolled up to read, the agent stays there when a new message comes in.
    older.scroll_into_view_if_needed()
    expect(older).to_be_in_viewport()
    top = conversation.evaluate("el => el.scrollTop")
    desk.webchat_say(session, "还有一个问题 A")
    expect(conversation).to_contain_text("还有一个问题 A")
    expect(older).to_be_in_viewport()
    assert conversation.evaluate("el => el.scrollTop") == top
    expect(conversation.get_by_text("还有一个问题 A")).not_to_be_in_viewport()

    # At the end, a new message is shown as it comes.
    conversation.evaluate("el => { el.scrollTop = el.scrollHeight; el.dispatchEvent(new Event('scroll')); }")
    desk.webchat_say(session, "还有一个问题 B")
    expect(conversation.get_by_text("还有一个问题 B")).to_be_in_viewport()


def test_enter_while_an_input_method_composes_a_reason_does_not_escalate(desk, page):
    """A one-line box's Enter submits its form, but not while an input method composes:
    the escalation goes with the whole reason, not the first word picked."""
    sign_in(page, desk)
    _, ticket_id = handed_off(desk)
    page.goto(f"{desk.base}/console/#/tickets/{ticket_id}")
    reason = page.get_by_role("textbox", name="Reason")
    reason.fill("客户")
    reason.press("End")
    cdp = page.context.new_cdp_session(page)
    cdp.send("Input.imeSetComposition", {"text": "yaoqiu", "selectionStart": 6, "selectionEnd": 6})
    page.keyboard.press("Enter")  # picks the candidate; must not escalate
    cdp.send("Input.insertText", {"text": "要求"})
    reason.type("退款")
    expect(reason).to_have_value("客户要求退款")
    time.sleep(0.5)
    _, body, _ = desk.api("GET", f"/tickets/{ticket_id}")
    assert body["ticket"]["status"] != "escalated", body["ticket"]["escalation_reason"]
    reason.press("Enter")
    desk.wait_for(
        "the escalation",
        lambda: desk.api("GET", f"/tickets/{ticket_id}")[1]["ticket"]["escalation_reason"] == "客户要求退款",
    )


def test_a_ticket_shows_the_exchange_with_the_knowledge_base_before_the_hand_off(desk, page):
    """A visitor the knowledge base answered asks for a person: the agent reads their
    question and the answer they got, in order, under "Before the ticket", before the
    message that opened the ticket; in Chinese too."""
    session = desk.webchat_session()
    desk.webchat_say(session, "我忘记密码了，怎么重置？")
    answer = desk.wait_for(
        "the knowledge base's answer",
        lambda: next((m for m in desk.webchat_messages(session) if m["kind"] == "auto_reply"), None),
    )
    desk.webchat_say(session, "还是收不到邮件，转人工")
    handoff = desk.wait_for(
        "the hand-off",
        lambda: next((m for m in desk.webchat_messages(session) if m["kind"] == "handoff"), None),
    )
    sign_in(page, desk, ALICE)
    page.goto(f"{desk.base}/console/#/tickets/{handoff['ticket_id']}")
    entries = page.get_by_role("list", name="Conversation").get_by_role("listitem")
    expect(entries.filter(has_text="转人工")).to_have_count(1)
    texts = entries.all_inner_texts()
    asked = next(i for i, x in enumerate(texts) if "我忘记密码了" in x)
    answered = next(i for i, x in enumerate(texts) if answer["text"][:12] in x)
    handed = next(i for i, x in enumerate(texts) if "转人工" in x)
    before = next(i for i, x in enumerate(texts) if "Before the ticket" in x)
    assert before < asked < answered < handed, texts
    expect(entries.nth(answered)).to_contain_text("Auto-reply")
    page.get_by_role("combobox", name="Language").select_option("zh-CN")
    expect(page.get_by_role("list", name="对话")).to_contain_text("工单之前：知识库的自动回复")


def test_the_conversation_keeps_the_tickets_history_in_either_language(desk, page):
    """The ticket's opening and each change of it is a quiet line of its conversation,
    saying what happened, who did it and when, in the reader's language; the customer never
    sees one."""
    session, ticket_id = handed_off(desk)
    sign_in(page, desk, ALICE)
    page.goto(f"{desk.base}/console/#/tickets/{ticket_id}")
    page.get_by_role("combobox", name="Priority").select_option("urgent")
    page.get_by_role("button", name="Set priority").click()
    conversation = page.get_by_role("list", name="Conversation")
    # Its first line: where it came from, and that the customer's message opened it.
    opened = conversation.get_by_role("listitem").filter(has_text="Opened on Web chat")
    # Who, then when, apart.
    expect(opened).to_contain_text(re.compile(r"by the customer, \d"))
    # A complaint opens high.
    line = conversation.get_by_role("listitem").filter(has_text="Priority: High → Urgent")
    expect(line).to_be_visible()
    expect(line).to_contain_text("by alice")
    status, body = desk.patch_ticket(ticket_id, {"tags": ["退款"]})
    assert status == 200, body
    expect(conversation.get_by_role("listitem").filter(has_text="Tags added: 退款")).to_contain_text("by admin")
    page.get_by_role("combobox", name="Language").select_option("zh-CN")
    zh = page.get_by_role("list", name="对话")
    expect(zh.get_by_role("listitem").filter(has_text="优先级：高 → 紧急")).to_contain_text("由 alice")
    expect(zh.get_by_role("listitem").filter(has_text="通过网页聊天创建")).to_contain_text("由客户")
    assert not [m for m in desk.webchat_messages(session) if "→" in m.get("text", "")]


def test_unassigned_opens_oldest_first_and_keeps_the_agents_own_order(desk, page):
    """The customer who has waited longest comes first in Unassigned, even when the view is
    longer than a page; an order the agent chooses is kept, per view."""
    total = 30
    sessions = [desk.webchat_session(f"访客 {i}") for i in range(total)]
    for i, session in enumerate(sessions):
        desk.webchat_say(session, f"我要投诉 排队{i:02d}号")
    desk.wait_for(
        "every ticket",
        lambda: len(desk.api("GET", "/tickets?limit=100")[1]["tickets"]) == total,
        timeout=60,
    )
    # The order the tickets were made in, which the workers may take a little out of the
    # order the messages were sent in on a loaded machine: the desk's own, oldest first.
    made = [
        re.search(r"排队\d\d号", t["subject"]).group(0)
        for t in desk.api("GET", "/tickets?limit=100&order=oldest")[1]["tickets"]
    ]
    assert len(made) == total
    sign_in(page, desk, BOB)
    rows = page.get_by_role("list", name="Ticket list").get_by_role("link")
    sort = page.get_by_role("combobox", name="Sort")
    expect(sort).to_have_value("newest")
    expect(rows.first).to_contain_text(made[-1])
    page.get_by_role("tab", name=re.compile("^Unassigned")).click()
    expect(sort).to_have_value("oldest")
    # The oldest page first (the API's own order), and the newer ones on "Load more".
    expect(rows.first).to_contain_text(made[0])
    expect(rows).to_have_count(25)
    expect(rows.last).to_contain_text(made[24])
    page.get_by_role("button", name="Load more").click()
    expect(rows).to_have_count(total)
    expect(rows.last).to_contain_text(made[-1])

    sort.select_option("newest")
    expect(rows.first).to_contain_text(made[-1])
    page.get_by_role("tab", name=re.compile("^All")).click()
    expect(sort).to_have_value("newest")
    page.reload()
    page.get_by_role("tab", name=re.compile("^Unassigned")).click()
    expect(sort).to_have_value("newest")
    expect(rows.first).to_contain_text(made[-1])


def test_an_internal_note_looks_unlike_the_hand_off_and_says_it_is_private(desk, page):
    _, ticket_id = handed_off(desk)
    sign_in(page, desk)
    page.goto(f"{desk.base}/console/#/tickets/{ticket_id}")
    page.get_by_role("textbox", name="Internal note").fill("客户第二次来问了")
    page.get_by_role("button", name="Add note").click()
    conversation = page.get_by_role("list", name="Conversation")
    note = conversation.get_by_role("listitem").filter(has_text="客户第二次来问了")
    handoff = conversation.get_by_role("listitem").filter(has_text="Hand-off")
    expect(note).to_contain_text("Internal note")
    expect(note).to_contain_text("only agents see this")

    def colours(entry):
        return entry.evaluate(
            "el => { const s = getComputedStyle(el); const t = getComputedStyle(el.querySelector('.entry-text'));"
            " const h = getComputedStyle(el.querySelector('.entry-head'));"
            " return [s.backgroundColor, t.color, h.color]; }"
        )

    def rgb(css):
        return [int(x) for x in re.findall(r"\d+", css)[:3]]

    def luminance(c):
        def channel(v):
            v /= 255
            return v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4

        r, g, b = (channel(v) for v in c)
        return 0.2126 * r + 0.7152 * g + 0.0722 * b

    def contrast(a, b):
        la, lb = sorted([luminance(a), luminance(b)], reverse=True)
        return (la + 0.05) / (lb + 0.05)

    note_bg, note_text, note_head = colours(note)
    handoff_bg, _, _ = colours(handoff)
    assert rgb(note_bg) != rgb(handoff_bg), (note_bg, handoff_bg)
    # Text and its head stay readable (WCAG AA) on the note's background.
    assert contrast(rgb(note_text), rgb(note_bg)) >= 4.5
    assert contrast(rgb(note_head), rgb(note_bg)) >= 4.5


def test_the_survey_page_speaks_the_customers_language_with_a_switch(desk, page):
    session, ticket_id = handed_off(desk)
    _, _, headers = desk.api("GET", f"/tickets/{ticket_id}")
    status, body, _ = desk.api("PATCH", f"/tickets/{ticket_id}", {"status": "closed"}, headers={"If-Match": headers["ETag"]})
    assert status == 200, body
    path = survey_link(desk, session)
    page.goto(desk.base + path)
    # The customer wrote Chinese: the page is Chinese, with no English beside it.
    expect(page.get_by_role("heading", level=1)).to_have_text("请为我们的服务打分")
    expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
    expect(page.get_by_text("How did we do?")).to_have_count(0)
    page.get_by_role("link", name="English").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("How did we do?")
    expect(page.locator("html")).to_have_attribute("lang", "en")
    page.get_by_role("radio", name="4").check()
    page.get_by_role("button", name="Send").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Thank you")
    expect(page.get_by_text("Your rating was recorded.")).to_be_visible()
    page.get_by_role("link", name="中文").click()
    expect(page.get_by_text("您的评分：4 分（满分 5 分）。")).to_be_visible()
