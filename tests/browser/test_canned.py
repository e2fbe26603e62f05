"""Canned responses in real Chromium: a supervisor keeps them in their view, an agent puts
one in a reply or note by typing `/` and part of its code, as in Chatwoot. Controls are
found by role and accessible name."""

import re
import time
import urllib.parse

from playwright.sync_api import expect

from conftest import ADMIN, ALICE, BOB, screenshot
from test_console import handed_off, sign_in

REFUND = "您好，退款将在 3 个工作日内原路退回，请留意银行通知。"
RETURNS = "退货地址：上海市南京西路 100 号，收件人：售后部。"
HELLO = "Hello! How can I help you today?"


def put(desk, code, content):
    status, body, _ = desk.api("PUT", "/canned-responses/" + urllib.parse.quote(code), {"content": content}, token=ADMIN)
    assert status == 201, body


def replies(desk, ticket_id):
    _, body, _ = desk.api("GET", f"/tickets/{ticket_id}")
    return [m["text"] for m in body["messages"] if m["kind"] == "agent_reply"]


def test_a_supervisor_adds_edits_and_deletes_canned_responses_in_their_view(desk, page):
    put(desk, "hello", HELLO)
    sign_in(page, desk, BOB)
    page.get_by_role("link", name="Canned responses").click()
    listed = page.get_by_role("list", name="Canned responses")
    expect(listed).to_contain_text("/hello")

    add = page.get_by_role("button", name="Add canned response")
    add.click()
    code = page.get_by_role("textbox", name="Short code")
    expect(code).to_be_focused()
    code.fill("退款")
    page.get_by_role("textbox", name="Content").fill("  " + REFUND + "  ")
    page.get_by_role("button", name="Save canned response").click()
    expect(page.get_by_role("status")).to_contain_text("Saved /退款.")
    expect(add).to_be_focused()
    expect(listed).to_contain_text(REFUND)
    _, body, _ = desk.api("GET", "/canned-responses")
    assert [(c["short_code"], c["content"], c["updated_by"]) for c in body["items"]] == [
        ("hello", HELLO, "admin"),
        ("退款", REFUND, "bob"),
    ]

    # A second one with a code that folds to one there is refused before anything is sent.
    add.click()
    page.get_by_role("textbox", name="Short code").fill("HELLO")
    page.get_by_role("textbox", name="Content").fill("Hi")
    page.get_by_role("button", name="Save canned response").click()
    expect(page.get_by_role("alert")).to_contain_text("already a canned response /hello")
    # The desk's own refusal is said by its code.
    page.get_by_role("textbox", name="Short code").fill("hi there")
    page.get_by_role("button", name="Save canned response").click()
    expect(page.get_by_role("alert")).to_contain_text("A short code is 1 to 32 characters with no space")
    expect(page.get_by_role("textbox", name="Short code")).to_be_focused()
    # Another supervisor makes /hi while this form is open: saving it is refused, not a
    # replace of theirs.
    put(desk, "hi", "Hi from the other supervisor.")
    page.get_by_role("textbox", name="Short code").fill("hi")
    page.get_by_role("button", name="Save canned response").click()
    expect(page.get_by_role("alert")).to_contain_text("already a canned response /hi")
    expect(page.get_by_role("textbox", name="Short code")).to_be_focused()
    kept = [c for c in desk.api("GET", "/canned-responses")[1]["items"] if c["short_code"] == "hi"]
    assert [c["content"] for c in kept] == ["Hi from the other supervisor."]
    assert desk.api("DELETE", "/canned-responses/hi", token=ADMIN)[0] == 204
    page.keyboard.press("Escape")
    expect(page.get_by_role("button", name="Save canned response")).to_have_count(0)
    expect(add).to_be_focused()

    # Edit: the code stays, the content changes.
    page.get_by_role("button", name="Edit /hello").click()
    expect(page.get_by_role("textbox", name="Short code")).to_be_disabled()
    page.get_by_role("textbox", name="Content").fill("Hi! What can I do for you?")
    page.get_by_role("button", name="Save canned response").click()
    expect(listed).to_contain_text("Hi! What can I do for you?")

    # The search box narrows the list, by code or content.
    search = page.get_by_role("searchbox", name="Search canned responses")
    search.fill("银行")
    expect(listed.get_by_role("listitem")).to_have_count(1)
    expect(listed).to_contain_text("/退款")
    search.fill("")

    # Delete asks first: Cancel keeps it, Delete removes it.
    delete = page.get_by_role("button", name="Delete /退款")
    delete.click()
    dialog = page.get_by_role("dialog", name="Delete /退款?")
    expect(dialog.get_by_role("button", name="Cancel")).to_be_focused()
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_have_count(0)
    expect(delete).to_be_focused()
    assert len(desk.api("GET", "/canned-responses")[1]["items"]) == 2
    delete.click()
    page.get_by_role("dialog", name="Delete /退款?").get_by_role("button", name="Delete").click()
    expect(page.get_by_role("status")).to_contain_text("Deleted /退款.")
    expect(listed.get_by_role("listitem")).to_have_count(1)
    assert [c["short_code"] for c in desk.api("GET", "/canned-responses")[1]["items"]] == ["hello"]


def test_an_agent_puts_a_canned_response_in_a_reply_with_the_keyboard(desk, page):
    for code, content in [("退款", REFUND), ("退货地址", RETURNS), ("hello", HELLO)]:
        put(desk, code, content)
    _, ticket_id = handed_off(desk)
    sign_in(page, desk, ALICE)
    page.goto(f"{desk.base}/console/#/tickets/{ticket_id}")
    reply = page.get_by_role("textbox", name="Reply")
    reply.click()
    expect(reply).to_have_attribute("aria-expanded", "false")

    # `/` after a space and part of a code: the codes that start with it, in order.
    reply.type("您好 /退")
    listbox = page.get_by_role("listbox", name="Canned responses")
    options = listbox.get_by_role("option")
    expect(options).to_have_count(2)
    expect(options.nth(0)).to_have_accessible_name(re.compile("^/退款 您好，退款"))
    expect(options.nth(1)).to_have_accessible_name(re.compile("^/退货地址 退货地址"))
    expect(reply).to_have_attribute("aria-expanded", "true")
    expect(reply).to_have_attribute("aria-controls", listbox.get_attribute("id"))
    expect(reply).to_have_attribute("aria-activedescendant", options.nth(0).get_attribute("id"))
    expect(reply).to_be_focused()
    screenshot(page, "console-canned")

    reply.press("ArrowDown")
    expect(options.nth(1)).to_have_attribute("aria-selected", "true")
    expect(reply).to_have_attribute("aria-activedescendant", options.nth(1).get_attribute("id"))
    reply.press("ArrowDown")  # wraps to the first
    reply.press("ArrowDown")
    reply.press("ArrowUp")
    reply.press("ArrowUp")
    expect(options.nth(1)).to_have_attribute("aria-selected", "true")
    # Enter with the list open puts the content in place of `/退货` and sends nothing.
    reply.press("Enter")
    expect(reply).to_have_value("您好 " + RETURNS)
    expect(listbox).to_have_count(0)
    expect(reply).to_have_attribute("aria-expanded", "false")
    expect(reply).to_be_focused()
    time.sleep(0.5)
    assert replies(desk, ticket_id) == [], "Enter with the list open must not send"
    # With the list closed, Enter sends what the box holds.
    reply.press("Enter")
    desk.wait_for("the reply", lambda: replies(desk, ticket_id))
    assert replies(desk, ticket_id) == ["您好 " + RETURNS]
    expect(reply).to_have_value("")

    # Escape closes the list and leaves `/he` as typed; typing on does not open it again.
    reply.type("/he")
    expect(options).to_have_count(1)
    reply.press("Escape")
    expect(listbox).to_have_count(0)
    expect(reply).to_have_value("/he")
    reply.type("l")
    expect(reply).to_have_value("/hel")
    expect(listbox).to_have_count(0)
    # A code typed in an input method's full-width mode, its slash too, is the same code,
    # as the desk folds it.
    reply.fill("")
    reply.type("您好 ／ＨＥＬ")
    expect(options).to_have_count(1)
    expect(options.nth(0)).to_have_accessible_name(re.compile("^/hello"))
    reply.press("Enter")
    expect(reply).to_have_value("您好 " + HELLO)
    # A new `/` opens it again; a click on an option puts it in.
    reply.fill("")
    reply.type("/")
    expect(options).to_have_count(3)
    options.filter(has_text="/hello").click()
    expect(reply).to_have_value(HELLO)
    expect(reply).to_be_focused()
    assert replies(desk, ticket_id) == ["您好 " + RETURNS]

    # The note box too, where Tab puts the chosen one in; a `/` inside a word opens nothing.
    note = page.get_by_role("textbox", name="Internal note")
    note.click()
    note.type("a/退")
    expect(listbox).to_have_count(0)
    note.fill("")
    note.type("客户要求 /退款")
    expect(options).to_have_count(1)
    note.press("Tab")
    expect(note).to_have_value("客户要求 " + REFUND)
    expect(note).to_be_focused()


def test_a_code_typed_before_the_list_is_read_sends_nothing(desk, page):
    """The list is read as the reply box appears; an agent quicker than that, typing
    `/hel` and Enter, sends nothing: the list opens once read, and Enter then puts the
    response in. Moving the caret off the `/code` closes the list."""
    put(desk, "hello", HELLO)
    _, ticket_id = handed_off(desk)
    sign_in(page, desk, ALICE)
    held, released = [], []

    def hold(route):
        if released:
            route.continue_()
        else:
            held.append(route)

    page.route("**/canned-responses", hold)
    page.goto(f"{desk.base}/console/#/tickets/{ticket_id}")
    reply = page.get_by_role("textbox", name="Reply")
    reply.click()
    reply.type("/hel")
    reply.press("Enter")
    time.sleep(0.5)
    assert replies(desk, ticket_id) == [], "Enter before the list was read must not send"
    expect(reply).to_have_value("/hel")
    assert held, "the box asked for the list"
    released.append(True)
    for route in held:
        route.continue_()
    options = page.get_by_role("listbox", name="Canned responses").get_by_role("option")
    expect(options).to_have_count(1)
    # The caret leaves the `/code`: the list goes; back at its end, it comes again.
    reply.press("Home")
    expect(options).to_have_count(0)
    reply.press("End")
    expect(options).to_have_count(1)
    reply.press("Enter")
    expect(reply).to_have_value(HELLO)
    assert replies(desk, ticket_id) == []


def test_an_agent_reads_canned_responses_but_cannot_change_them(desk, page):
    put(desk, "退款", REFUND)
    sign_in(page, desk, ALICE)
    page.get_by_role("link", name="Canned responses").click()
    listed = page.get_by_role("list", name="Canned responses")
    expect(listed).to_contain_text("/退款")
    expect(listed).to_contain_text(REFUND)
    expect(page.get_by_text("Only supervisors can change canned responses.")).to_be_visible()
    # No Add, Edit or Delete: the view has no button at all.
    expect(page.get_by_role("main").get_by_role("button")).to_have_count(0)
    # In Chinese, the view and its words are Chinese.
    page.get_by_label("Language").select_option("zh-CN")
    expect(page.get_by_role("link", name="快捷回复")).to_be_visible()
    expect(page.get_by_role("heading", name="快捷回复")).to_be_visible()
    expect(page.get_by_text("只有主管可以修改快捷回复。")).to_be_visible()
