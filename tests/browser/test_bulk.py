"""Bulk actions in the console's inbox, in real Chromium against a real desk: tickets are
selected by their checkboxes (or x), and the bar assigns them, sets their status or their
priority together, one If-Match change per ticket. What the desk did is checked through the
API. Controls are found by role and accessible name."""

import re

from playwright.sync_api import expect

from conftest import BOB
from test_assignment import ticket
from test_console import handed_off, sign_in


def ref(ticket_id):
    """The reference the console shows: the id's last 8 letters or digits, upper case."""
    return "".join(c for c in ticket_id if c.isalnum())[-8:].upper()


def tickets(desk, count):
    """`count` handed-off tickets, each from its own customer: [(session, id, text)]."""
    made = []
    for n in range(1, count + 1):
        text = f"我要投诉，订单 {n}0{n} 的快递还没到"
        session, ticket_id = handed_off(desk, text)
        made.append((session, ticket_id, text))
    return made


def inbox(page, desk, made):
    """Signs the supervisor in and waits for the inbox to list every ticket made."""
    sign_in(page, desk, BOB)
    rows = page.get_by_role("list", name="Ticket list").get_by_role("link")
    expect(rows).to_have_count(len(made))
    return rows


def box(page, made_one):
    _, ticket_id, text = made_one
    return page.get_by_role("checkbox", name=f"Select ticket {ref(ticket_id)}: {text}")


def notice(page, text):
    return page.get_by_role("status").filter(has_text=text)


def test_a_supervisor_sets_the_priority_of_two_tickets(desk, page):
    made = tickets(desk, 3)
    inbox(page, desk, made)
    expect(page.get_by_role("region", name=re.compile("^Bulk actions"))).to_have_count(0)
    box(page, made[0]).check()
    box(page, made[1]).check()
    bar = page.get_by_role("region", name="Bulk actions: 2 selected")
    expect(bar).to_be_visible()
    before = [ticket(desk, tid)["priority"] for _, tid, _ in made]
    assert "urgent" not in before, before
    # Apply before a choice sends nothing: it points at the choice.
    choice = bar.get_by_role("combobox", name="Set priority")
    apply = bar.get_by_role("button", name="Apply priority")
    apply.click()
    expect(choice).to_be_focused()
    # The choice alone changes nothing either.
    choice.select_option("urgent")
    assert [ticket(desk, tid)["priority"] for _, tid, _ in made] == before
    apply.click()
    expect(notice(page, "2 tickets updated")).to_be_visible()
    expect(apply).to_be_focused()
    assert ticket(desk, made[0][1])["priority"] == "urgent"
    assert ticket(desk, made[1][1])["priority"] == "urgent"
    assert ticket(desk, made[2][1])["priority"] == before[2]
    # The inbox shows the new priority on those rows.
    rows = page.get_by_role("list", name="Ticket list")
    expect(rows.get_by_role("listitem").filter(has=box(page, made[0]))).to_contain_text("Urgent")


def test_select_all_and_assign_to_an_agent(desk, page):
    made = tickets(desk, 3)
    inbox(page, desk, made)
    everything = page.get_by_role("checkbox", name="Select all shown")
    box(page, made[1]).check()
    expect(everything).not_to_be_checked()
    expect(everything).to_have_js_property("indeterminate", True)
    everything.check()
    expect(everything).to_have_js_property("indeterminate", False)
    for one in made:
        expect(box(page, one)).to_be_checked()
    bar = page.get_by_role("region", name="Bulk actions: 3 selected")
    bar.get_by_role("combobox", name="Assign to").select_option("alice")
    bar.get_by_role("button", name="Apply assignee").click()
    expect(notice(page, "3 tickets updated")).to_be_visible()
    for _, tid, _ in made:
        tk = ticket(desk, tid)
        assert tk["assignee"] == "alice", tk
        assert (tk["assignment"]["reason"], tk["assignment"]["by"]) == ("manual", "bob"), tk
    # Unticking all of them puts the bar away.
    everything.uncheck()
    expect(page.get_by_role("region", name=re.compile("^Bulk actions"))).to_have_count(0)


def test_the_administrator_is_not_offered_me(desk, page):
    made = tickets(desk, 1)
    sign_in(page, desk)
    box(page, made[0]).check()
    assign = page.get_by_role("region", name="Bulk actions: 1 selected").get_by_role("combobox", name="Assign to")
    expect(assign.get_by_role("option", name="alice")).to_have_count(1)
    expect(assign.get_by_role("option", name=re.compile("^Me"))).to_have_count(0)
    expect(assign.get_by_role("option", name="Nobody")).to_have_count(1)


def test_closing_asks_first_and_sends_each_customer_the_survey(desk, page):
    made = tickets(desk, 2)
    inbox(page, desk, made)
    page.get_by_role("checkbox", name="Select all shown").check()
    bar = page.get_by_role("region", name="Bulk actions: 2 selected")
    bar.get_by_role("combobox", name="Set status").select_option("closed")
    apply = bar.get_by_role("button", name="Apply status")

    apply.click()
    dialog = page.get_by_role("dialog", name="Close 2 tickets?")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("each customer is sent the satisfaction survey")
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_have_count(0)
    expect(apply).to_be_focused()
    # Escape closes the dialog, not the selection.
    apply.click()
    expect(dialog).to_be_visible()
    page.keyboard.press("Escape")
    expect(dialog).to_have_count(0)
    expect(bar).to_be_visible()
    for _, tid, _ in made:
        assert ticket(desk, tid)["status"] == "open"

    apply.click()
    dialog.get_by_role("button", name="Close 2 tickets").click()
    expect(notice(page, "2 tickets updated")).to_be_visible()
    for session, tid, _ in made:
        assert ticket(desk, tid)["status"] == "closed"
        desk.wait_for(
            "the survey",
            lambda: any(m["kind"] == "survey" for m in desk.webchat_messages(session)),
        )
    # Closed, they leave the active list, and the selection with them; the focus goes to
    # the notice, not the page.
    expect(page.get_by_role("list", name="Ticket list").get_by_role("link")).to_have_count(0)
    expect(page.get_by_role("region", name=re.compile("^Bulk actions"))).to_have_count(0)
    expect(notice(page, "2 tickets updated")).to_be_focused()


def test_a_ticket_changed_meanwhile_is_named_and_keeps_that_change(desk, page):
    """Someone changes a selected ticket; the inbox's poll shows it, but the agent ticked it
    before: the bulk change does not overwrite it, names it, and unselects it."""
    made = tickets(desk, 3)
    inbox(page, desk, made)
    page.get_by_role("checkbox", name="Select all shown").check()
    first = ticket(desk, made[0][1])
    status, body, _ = desk.api(
        "PATCH", f"/tickets/{made[0][1]}", {"priority": "low"}, headers={"If-Match": f'"{first["version"]}"'}
    )
    assert status == 200, body
    # The next poll shows the change in its row, the ticket still selected.
    row = page.get_by_role("list", name="Ticket list").get_by_role("listitem").filter(has=box(page, made[0]))
    expect(row).to_contain_text("Low", timeout=10_000)
    expect(box(page, made[0])).to_be_checked()

    bar = page.get_by_role("region", name="Bulk actions: 3 selected")
    bar.get_by_role("combobox", name="Set priority").select_option("urgent")
    bar.get_by_role("button", name="Apply priority").click()
    said = notice(page, "2 updated")
    expect(said).to_have_text(
        f"2 updated; 1 changed by someone else since you selected it, left as they made it and unselected: {ref(made[0][1])}"
    )
    assert ticket(desk, made[0][1])["priority"] == "low"
    assert ticket(desk, made[1][1])["priority"] == "urgent"
    assert ticket(desk, made[2][1])["priority"] == "urgent"
    expect(box(page, made[0])).not_to_be_checked()
    expect(row).to_contain_text("Low")
    # The two changed stay selected at their new versions: a second change goes through.
    bar = page.get_by_role("region", name="Bulk actions: 2 selected")
    bar.get_by_role("combobox", name="Set priority").select_option("high")
    bar.get_by_role("button", name="Apply priority").click()
    expect(notice(page, "2 tickets updated")).to_be_visible()
    assert ticket(desk, made[1][1])["priority"] == "high"
    assert ticket(desk, made[2][1])["priority"] == "high"


def test_a_refusal_names_the_ticket_and_the_reason(desk, page):
    made = tickets(desk, 2)
    closed = ticket(desk, made[0][1])
    status, body, _ = desk.api(
        "PATCH", f"/tickets/{made[0][1]}", {"status": "closed"}, headers={"If-Match": f'"{closed["version"]}"'}
    )
    assert status == 200, body
    sign_in(page, desk, BOB)
    page.get_by_role("combobox", name="Status").select_option("")
    expect(page.get_by_role("list", name="Ticket list").get_by_role("link")).to_have_count(2)
    page.get_by_role("checkbox", name="Select all shown").check()
    bar = page.get_by_role("region", name="Bulk actions: 2 selected")
    bar.get_by_role("combobox", name="Set priority").select_option("low")
    bar.get_by_role("button", name="Apply priority").click()
    said = notice(page, "1 updated")
    expect(said).to_contain_text("1 updated; 1 refused:")
    expect(said.get_by_role("listitem")).to_have_text(
        f"{ref(made[0][1])}: this ticket is closed and cannot be changed."
    )
    assert ticket(desk, made[0][1])["priority"] == "high"
    assert ticket(desk, made[1][1])["priority"] == "low"


def test_the_keyboard_selects_with_x_and_escape_clears(desk, page):
    made = tickets(desk, 3)
    rows = inbox(page, desk, made)
    checks = page.get_by_role("list", name="Ticket list").get_by_role("checkbox")
    page.keyboard.press("j")
    page.keyboard.press("x")
    page.keyboard.press("j")
    page.keyboard.press("x")
    expect(checks.nth(0)).not_to_be_checked()
    expect(checks.nth(1)).to_be_checked()
    expect(checks.nth(2)).to_be_checked()
    expect(page.get_by_role("region", name="Bulk actions: 2 selected")).to_be_visible()
    expect(rows.nth(2)).to_be_focused()
    # x again unticks the row under the cursor.
    page.keyboard.press("x")
    expect(checks.nth(2)).not_to_be_checked()
    page.keyboard.press("x")
    expect(page.get_by_text(re.compile(r"x select · Escape clear selection"))).to_be_visible()
    page.keyboard.press("Escape")
    expect(page.get_by_role("region", name=re.compile("^Bulk actions"))).to_have_count(0)
    for n in range(3):
        expect(checks.nth(n)).not_to_be_checked()
    expect(rows.nth(2)).to_be_focused()


def test_the_bar_and_its_notice_in_chinese(desk, page):
    made = tickets(desk, 2)
    inbox(page, desk, made)
    page.get_by_role("combobox", name="Language").select_option("zh-CN")
    everything = page.get_by_role("checkbox", name="全选当前列表")
    page.get_by_role("checkbox", name=f"选择工单 {ref(made[0][1])}：{made[0][2]}").check()
    bar = page.get_by_role("region", name="批量操作：已选 1 个")
    expect(bar).to_be_visible()
    everything.check()
    bar = page.get_by_role("region", name="批量操作：已选 2 个")
    expect(bar.get_by_role("combobox", name="分配给")).to_be_visible()
    expect(bar.get_by_role("button", name="应用负责人")).to_be_visible()
    bar.get_by_role("combobox", name="设置状态").select_option("closed")
    bar.get_by_role("button", name="应用状态").click()
    dialog = page.get_by_role("dialog", name="关闭 2 个工单？")
    expect(dialog).to_contain_text("向每位客户发送满意度调查")
    dialog.get_by_role("button", name="取消").click()
    bar.get_by_role("combobox", name="设置优先级").select_option("low")
    bar.get_by_role("button", name="应用优先级").click()
    expect(notice(page, "已更新 2 个工单")).to_be_visible()
    expect(page.get_by_text(re.compile("x 选择 · Escape 清除选择"))).to_be_visible()
    assert [ticket(desk, tid)["priority"] for _, tid, _ in made] == ["low", "low"]
