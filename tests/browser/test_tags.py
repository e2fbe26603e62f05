"""Tickets' tags in the console, in real Chromium against a real desk: the ticket view's
Tags group adds and removes them (one If-Match change each), the inbox shows them on its
rows and filters by one (the list and the counts), and the bulk bar adds one to the
selected tickets. What the desk did is checked through the API; controls are found by role
and accessible name."""

import re
import time

from playwright.sync_api import expect

from conftest import ALICE, BOB
from test_assignment import ticket
from test_bulk import box as row_box
from test_bulk import notice, tickets
from test_console import handed_off, sign_in


def open_ticket(page, desk, ticket_id, token=ALICE):
    sign_in(page, desk, token)
    page.goto(f"{desk.base}/console/#/tickets/{ticket_id}")
    group = page.get_by_role("region", name="Tags")
    expect(group).to_be_visible()
    return group


def chips(group, name="This ticket’s tags"):
    return group.get_by_role("list", name=name).get_by_role("listitem")


def tag_ticket(desk, ticket_id, tags):
    status, body = desk.patch_ticket(ticket_id, {"tags": tags})
    assert status == 200, body
    assert body["tags"] == tags, body


def test_an_agent_adds_and_removes_tags_in_the_ticket_view(desk, page):
    _, ticket_id = handed_off(desk)
    assert ticket(desk, ticket_id)["tags"] == []
    group = open_ticket(page, desk, ticket_id)
    expect(group).to_contain_text("No tags yet.")
    box = group.get_by_role("combobox", name="Add a tag")
    # Enter adds (the desk folds the case) and the focus stays in the emptied box.
    box.fill("Refund")
    box.press("Enter")
    expect(chips(group)).to_have_count(1)
    expect(box).to_be_focused()
    expect(box).to_have_value("")
    # So does the Add button, with a tag of another script.
    box.fill("退款")
    group.get_by_role("button", name="Add", exact=True).click()
    expect(chips(group)).to_have_count(2)
    expect(chips(group).nth(0).locator(".tag")).to_have_text("refund")
    expect(chips(group).nth(1).locator(".tag")).to_have_text("退款")
    expect(box).to_be_focused()
    assert ticket(desk, ticket_id)["tags"] == ["refund", "退款"]
    # Nothing was sent to the customer on the way.
    _, body, _ = desk.api("GET", f"/tickets/{ticket_id}")
    assert not [m for m in body["messages"] if m["kind"] == "agent_reply"]

    group.get_by_role("button", name="Remove tag refund").click()
    expect(chips(group)).to_have_count(1)
    expect(group.get_by_role("button", name="Remove tag refund")).to_have_count(0)
    expect(box).to_be_focused()
    assert ticket(desk, ticket_id)["tags"] == ["退款"]


def test_enter_while_an_input_method_composes_adds_no_tag(desk, page):
    _, ticket_id = handed_off(desk)
    group = open_ticket(page, desk, ticket_id)
    box = group.get_by_role("combobox", name="Add a tag")
    box.click()
    # A real composition, as an input method makes it: its Enter picks the candidate.
    cdp = page.context.new_cdp_session(page)
    cdp.send("Input.imeSetComposition", {"text": "tuikuan", "selectionStart": 7, "selectionEnd": 7})
    page.keyboard.press("Enter")
    cdp.send("Input.insertText", {"text": "退款"})
    # And the events an input method sends, dispatched as they come: a composition starts
    # and its Enter says so.
    box.evaluate(
        """el => {
          el.dispatchEvent(new CompositionEvent('compositionstart', { bubbles: true, data: '' }));
          el.dispatchEvent(new KeyboardEvent('keydown',
            { key: 'Enter', keyCode: 229, isComposing: true, bubbles: true, cancelable: true }));
          el.dispatchEvent(new CompositionEvent('compositionend', { bubbles: true, data: '退款' }));
        }"""
    )
    time.sleep(0.5)
    expect(box).to_have_value("退款")
    assert ticket(desk, ticket_id)["tags"] == []
    expect(group).to_contain_text("No tags yet.")
    # A plain Enter, with no composition, adds it; no reply went out.
    box.press("Enter")
    expect(chips(group)).to_have_count(1)
    assert ticket(desk, ticket_id)["tags"] == ["退款"]
    _, body, _ = desk.api("GET", f"/tickets/{ticket_id}")
    assert not [m for m in body["messages"] if m["kind"] == "agent_reply"]


def test_a_tag_the_desk_refuses_is_said_beside_the_box_and_changes_nothing(desk, page):
    _, ticket_id = handed_off(desk)
    tag_ticket(desk, ticket_id, ["refund"])
    before = ticket(desk, ticket_id)
    group = open_ticket(page, desk, ticket_id)
    expect(chips(group)).to_have_count(1)
    box = group.get_by_role("combobox", name="Add a tag")
    box.fill("two words")
    box.press("Enter")
    refusal = group.get_by_role("alert")
    expect(refusal).to_have_text(re.compile("a tag is one word of 1 to 40 characters"))
    expect(box).to_have_attribute("aria-invalid", "true")
    expect(box).to_have_value("two words")
    after = ticket(desk, ticket_id)
    assert after["tags"] == ["refund"]
    assert after["version"] == before["version"]
    # Typing again takes the refusal away.
    box.fill("twowords")
    expect(refusal).to_have_count(0)


def test_a_tag_added_after_someone_else_changed_the_ticket_is_a_conflict(desk, page):
    _, ticket_id = handed_off(desk)
    group = open_ticket(page, desk, ticket_id)
    box = group.get_by_role("combobox", name="Add a tag")
    expect(page.get_by_role("combobox", name="Priority")).to_have_value("high")
    # The page hears nothing while someone else changes the ticket, then tries its own.
    page.route("**/tickets/*", lambda r: r.abort() if r.request.method == "GET" else r.continue_())
    status, body = desk.patch_ticket(ticket_id, {"priority": "low", "tags": ["billing"]})
    assert status == 200, body
    box.fill("vip")
    box.press("Enter")
    expect(page.get_by_role("alert").filter(has_text="changed by someone else")).to_be_visible()
    page.unroute("**/tickets/*")
    after = ticket(desk, ticket_id)
    assert after["priority"] == "low"
    assert after["tags"] == ["billing"]
    # Reloaded, the page shows their change, and the tag can be added on top of it.
    page.get_by_role("button", name="Reload").click()
    expect(chips(group)).to_have_count(1)
    expect(chips(group).nth(0).locator(".tag")).to_have_text("billing")
    box.fill("vip")
    box.press("Enter")
    expect(chips(group)).to_have_count(2)
    assert ticket(desk, ticket_id)["tags"] == ["billing", "vip"]


def test_a_closed_tickets_tags_are_read_only(desk, page):
    _, ticket_id = handed_off(desk)
    tag_ticket(desk, ticket_id, ["refund"])
    status, body = desk.patch_ticket(ticket_id, {"status": "closed"})
    assert status == 200, body
    group = open_ticket(page, desk, ticket_id)
    expect(chips(group)).to_have_count(1)
    expect(chips(group).nth(0)).to_have_text("refund")
    expect(group.get_by_role("combobox")).to_have_count(0)
    expect(group.get_by_role("button")).to_have_count(0)
    # Its tag still leads to the tickets that carry it.
    expect(group.get_by_role("link", name="Tickets tagged refund")).to_be_visible()


def test_inbox_rows_show_tags_and_the_tag_filter_narrows_the_list_and_counts(desk, page):
    made = tickets(desk, 3)
    tag_ticket(desk, made[0][1], ["退款", "refund"])
    tag_ticket(desk, made[1][1], ["a", "b", "c", "d", "e"])
    sign_in(page, desk, BOB)
    listing = page.get_by_role("list", name="Ticket list")
    rows = listing.get_by_role("link")
    expect(rows).to_have_count(3)
    first = listing.get_by_role("listitem").filter(has=row_box(page, made[0]))
    expect(first.locator(".tag")).to_have_text(["退款", "refund"])
    second = listing.get_by_role("listitem").filter(has=row_box(page, made[1]))
    expect(second.locator(".tag")).to_have_text(["a", "b", "c", re.compile(r"^\+2")])
    third = listing.get_by_role("listitem").filter(has=row_box(page, made[2]))
    expect(third.locator(".tag")).to_have_count(0)
    all_tab = page.get_by_role("tab", name=re.compile("^All"))
    expect(all_tab).to_contain_text("3")

    tag = page.get_by_role("combobox", name="Tag", exact=True)
    tag.fill("退款")
    tag.press("Enter")
    expect(rows).to_have_count(1)
    expect(rows).to_contain_text(made[0][2])
    expect(all_tab.locator(".count")).to_have_text("1")
    # The tag is sent as typed with a leading #, and the desk folds its case.
    tag.fill("#REFUND")
    tag.press("Enter")
    expect(rows).to_have_count(1)
    expect(rows).to_contain_text(made[0][2])

    # A tag the desk refuses is said beside the box, not as a failed list.
    tag.fill("two words")
    tag.press("Enter")
    expect(page.get_by_role("alert")).to_have_text(re.compile("a tag is one word"))
    expect(page.get_by_role("alert")).to_have_count(1)
    expect(rows).to_have_count(0)

    # An empty box clears the filter.
    tag.fill("")
    tag.press("Enter")
    expect(rows).to_have_count(3)
    expect(all_tab.locator(".count")).to_have_text("3")
    expect(page.get_by_role("alert")).to_have_count(0)


def test_a_tags_link_opens_the_inbox_filtered_by_that_tag(desk, page):
    made = tickets(desk, 2)
    tag_ticket(desk, made[0][1], ["vip", "退款"])
    sign_in(page, desk, BOB)
    listing = page.get_by_role("list", name="Ticket list")
    rows = listing.get_by_role("link")
    expect(rows).to_have_count(2)
    # The inbox's filters before: a Tag no ticket carries, and a Channel, which stays.
    tag = page.get_by_role("combobox", name="Tag", exact=True)
    tag.fill("billing")
    tag.press("Enter")
    expect(rows).to_have_count(0)
    page.get_by_role("combobox", name="Channel").select_option("webchat")

    page.goto(f"{desk.base}/console/#/tickets/{made[0][1]}")
    group = page.get_by_role("region", name="Tags")
    group.get_by_role("link", name="Tickets tagged vip").click()
    # The inbox has the tag in its box and lists only that ticket; the URL is the inbox's
    # own again, and the other filters are as they were.
    expect(tag).to_have_value("vip")
    expect(rows).to_have_count(1)
    expect(rows).to_contain_text(made[0][2])
    expect(page).to_have_url(re.compile(r"/console/#/tickets$"))
    expect(page.get_by_role("combobox", name="Channel")).to_have_value("webchat")
    expect(page.get_by_role("tab", name=re.compile("^All")).locator(".count")).to_have_text("1")
    # A reload keeps the tag, as the inbox keeps its filters.
    page.reload()
    expect(tag).to_have_value("vip")
    expect(rows).to_have_count(1)

    # Back is the ticket again. In Chinese the link says so, and a Chinese tag travels in
    # the URL as it should.
    page.go_back()
    group = page.get_by_role("region", name="Tags")
    expect(group).to_be_visible()
    page.get_by_role("combobox", name="Language").select_option("zh-CN")
    group = page.get_by_role("region", name="标签")
    group.get_by_role("link", name="标签为 退款 的工单").click()
    tag = page.get_by_role("combobox", name="标签", exact=True)
    expect(tag).to_have_value("退款")
    rows = page.get_by_role("list", name="工单列表").get_by_role("link")
    expect(rows).to_have_count(1)
    expect(rows).to_contain_text(made[0][2])
    expect(page).to_have_url(re.compile(r"/console/#/tickets$"))


def test_bulk_add_tag_keeps_each_tickets_earlier_tags(desk, page):
    made = tickets(desk, 3)
    tag_ticket(desk, made[0][1], ["refund"])
    sign_in(page, desk, BOB)
    rows = page.get_by_role("list", name="Ticket list").get_by_role("link")
    expect(rows).to_have_count(3)
    expect(page.get_by_role("list", name="Ticket list")).to_contain_text("refund")
    row_box(page, made[0]).check()
    row_box(page, made[1]).check()
    bar = page.get_by_role("region", name="Bulk actions: 2 selected")
    box = bar.get_by_role("combobox", name="Add tag")
    apply = bar.get_by_role("button", name="Apply tag")
    # An empty box sends nothing: the focus goes to it.
    apply.click()
    expect(box).to_be_focused()
    assert ticket(desk, made[0][1])["tags"] == ["refund"]
    box.fill("VIP")
    apply.click()
    expect(notice(page, "2 tickets updated")).to_be_visible()
    expect(box).to_have_value("")
    assert ticket(desk, made[0][1])["tags"] == ["refund", "vip"]
    assert ticket(desk, made[1][1])["tags"] == ["vip"]
    assert ticket(desk, made[2][1])["tags"] == []
    # Still selected at their new versions (and tags): another tag adds to those.
    box.fill("bug")
    box.press("Enter")
    expect(notice(page, "2 tickets updated")).to_be_visible()
    desk.wait_for("the second tag", lambda: ticket(desk, made[1][1])["tags"] == ["vip", "bug"])
    assert ticket(desk, made[0][1])["tags"] == ["refund", "vip", "bug"]


def test_the_tags_speak_chinese(desk, page):
    made = tickets(desk, 2)
    tag_ticket(desk, made[0][1], ["refund"])
    sign_in(page, desk, BOB)
    page.get_by_role("combobox", name="Language").select_option("zh-CN")
    rows = page.get_by_role("list", name="工单列表").get_by_role("link")
    expect(rows).to_have_count(2)
    tag = page.get_by_role("combobox", name="标签", exact=True)
    tag.fill("＃Refund")
    tag.press("Enter")
    expect(rows).to_have_count(1)
    tag.fill("两 个")
    tag.press("Enter")
    expect(page.get_by_role("alert")).to_have_text(re.compile("标签须为一个词"))
    tag.fill("")
    tag.press("Enter")
    expect(rows).to_have_count(2)

    page.goto(f"{desk.base}/console/#/tickets/{made[0][1]}")
    group = page.get_by_role("region", name="标签")
    expect(chips(group, "此工单的标签")).to_have_count(1)
    box = group.get_by_role("combobox", name="添加标签")
    box.fill("退款")
    group.get_by_role("button", name="添加", exact=True).click()
    expect(chips(group, "此工单的标签")).to_have_count(2)
    box.fill("a/b")
    box.press("Enter")
    expect(group.get_by_role("alert")).to_have_text(re.compile("标签须为一个词"))
    group.get_by_role("button", name="移除标签 refund").click()
    expect(chips(group, "此工单的标签")).to_have_count(1)
    expect(box).to_be_focused()
    assert ticket(desk, made[0][1])["tags"] == ["退款"]
