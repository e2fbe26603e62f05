"""Assignment and SLAs in the console, in real Chromium: the agent's availability switch, a
ticket's assignee and due times, a breach, and the Agents view where supervisors edit
profiles. Controls are found by role and accessible name. The tests of assignment run a
desk with their own rules file (the shared fixture turns assignment off)."""

import re

import pytest
from playwright.sync_api import expect

from conftest import ADMIN, ALICE, BOB, Desk, screenshot
from test_console import handed_off, set_detail, sign_in

PRIORITIES = ["low", "normal", "high", "urgent"]


def sla_rules(first_response, resolution="1d", escalate=False):
    """The same targets for every priority, so that any hand-off has them."""
    return "".join(
        f'[sla.{p}]\nfirst_response = "{first_response}"\nresolution = "{resolution}"\n'
        f"escalate_on_breach = {'true' if escalate else 'false'}\n"
        for p in PRIORITIES
    )


@pytest.fixture
def assigning(tmp_path):
    """Starts desks that assign tickets themselves, with the given rules; stops them after."""
    started = []

    def start(rules):
        path = tmp_path / f"rules-{len(started)}.toml"
        path.write_text(rules)
        d = Desk({"HELPDESK_RULES": str(path), "HELPDESK_SLA_CHECK_SECS": "1"})
        started.append(d)
        return d

    yield start
    for d in started:
        d.stop()


def ticket(desk, ticket_id):
    status, body, _ = desk.api("GET", f"/tickets/{ticket_id}")
    assert status == 200, body
    return body["ticket"]


def sla_of(desk, ticket_id):
    """The ticket's SLA; {} until the desk has stamped it, just after it opens the ticket."""
    return ticket(desk, ticket_id).get("sla") or {}


def profile(desk, agent):
    status, body, _ = desk.api("GET", f"/agents/{agent}")
    assert status == 200, body
    return body


def test_an_agent_sets_themselves_away_and_back(assigning, page):
    desk = assigning(sla_rules("1h"))
    sign_in(page, desk, ALICE)
    switch = page.get_by_role("switch", name="Available")
    expect(switch).to_be_checked()

    switch.click()
    expect(switch).not_to_be_checked()
    expect(page.get_by_text("Away: no new tickets come to you")).to_be_visible()
    assert profile(desk, "alice")["available"] is False
    # Away, alice is passed over: the rule gives the next ticket to bob.
    _, ticket_id = handed_off(desk)
    assert desk.wait_for("the assignment", lambda: ticket(desk, ticket_id)["assignee"]) == "bob"

    # The state is the desk's, not the page's: it survives a reload.
    page.reload()
    expect(page.get_by_role("switch", name="Available")).not_to_be_checked()
    page.get_by_role("switch", name="Available").click()
    expect(page.get_by_role("switch", name="Available")).to_be_checked()
    expect(page.get_by_text("Away: no new tickets come to you")).to_have_count(0)
    assert profile(desk, "alice")["available"] is True

    # The admin token has no profile, so no switch.
    page.get_by_role("button", name="Sign out").click()
    sign_in(page, desk, ADMIN)
    expect(page.get_by_role("switch")).to_have_count(0)


def test_a_ticket_shows_its_assignee_and_sla_due_times(assigning, page):
    desk = assigning(sla_rules("30m", "1d"))
    _, ticket_id = handed_off(desk)
    assert desk.wait_for("the assignment", lambda: ticket(desk, ticket_id)["assignee"]) == "alice"
    desk.wait_for("the due times", lambda: sla_of(desk, ticket_id).get("first_response_due"))
    tk = ticket(desk, ticket_id)
    assert tk["assignment"]["reason"] == "rule" and tk["sla"]["first_response_due"]

    sign_in(page, desk, ALICE)
    row = page.get_by_role("list", name="Ticket list").get_by_role("link", name=re.compile("快递三天了还没到"))
    expect(row).to_contain_text("alice (rule)")
    expect(row).to_contain_text(re.compile(r"Reply due in \d+ minutes"))

    row.click()
    assignment = page.get_by_role("region", name="Assignment")
    expect(assignment).to_contain_text("Assigned to alice by the desk's rule")
    expect(assignment).to_contain_text("Customer language: Chinese")
    sla = page.get_by_role("region", name="Service level (SLA)")
    targets = sla.get_by_role("listitem")
    expect(targets).to_have_count(2)
    expect(targets.nth(0)).to_contain_text("First response")
    expect(targets.nth(0)).to_contain_text("On track")
    expect(targets.nth(0).locator("time")).to_have_attribute("datetime", tk["sla"]["first_response_due"])
    expect(targets.nth(1)).to_contain_text("Resolution")
    expect(targets.nth(1).locator("time")).to_have_attribute("datetime", tk["sla"]["resolution_due"])

    # Answering meets the first-response target.
    page.get_by_role("textbox", name="Reply").fill("您好，我们马上查一下。")
    page.get_by_role("button", name="Send").click()
    expect(targets.nth(0)).to_contain_text("✓ Met")
    expect(targets.nth(1)).to_contain_text("On track")

    # Alice hands it to bob by hand (the box offers the team's ids): the console says who.
    assignee = page.get_by_role("combobox", name="Assignee")
    expect(assignee.locator("xpath=following-sibling::datalist/option[@value='bob']")).to_have_count(1)
    assignee.fill("bob")
    page.get_by_role("button", name="Save assignee").click()
    expect(assignment).to_contain_text("Assigned to bob by alice")
    tk = ticket(desk, ticket_id)
    assert (tk["assignee"], tk["assignment"]["by"], tk["assignment"]["reason"]) == ("bob", "alice", "manual"), tk


def test_a_breached_ticket_shows_its_breach(assigning, page):
    desk = assigning(sla_rules("2s", escalate=True))
    _, ticket_id = handed_off(desk)
    breached = desk.wait_for("the breach", lambda: sla_of(desk, ticket_id).get("breaches"), timeout=20)
    assert breached[0]["target"] == "first_response"

    sign_in(page, desk, ALICE)
    row = page.get_by_role("list", name="Ticket list").get_by_role("link", name=re.compile("快递三天了还没到"))
    expect(row).to_contain_text("⚠ SLA breached: First response")
    row.click()
    sla = page.get_by_role("region", name="Service level (SLA)")
    expect(sla.get_by_role("listitem").filter(has_text="First response").first).to_contain_text("⚠ Breached")
    breaches = page.get_by_role("list", name="Breaches")
    expect(breaches.get_by_role("listitem")).to_have_count(1)
    expect(breaches).to_contain_text("First response target missed")
    # The policy escalates on a breach, and the reason is said in words.
    expect(page.get_by_role("combobox", name="Status")).to_have_value("escalated")
    expect(page.get_by_text("Escalated: the first-response target (SLA) was missed")).to_be_visible()
    screenshot(page, "console-sla")


def test_a_customer_waiting_for_a_next_reply_is_on_the_clock(assigning, page):
    """After the first response, the customer writes again: the ticket owes them a next
    reply, due by the policy; missed, the inbox row and the ticket say so, and the agent's
    reply ends the wait while the breach stays in the ticket's record."""
    rules = "".join(
        f'[sla.{p}]\nfirst_response = "1h"\nnext_reply = "4s"\nresolution = "1d"\n' for p in PRIORITIES
    )
    desk = assigning(rules)
    session, ticket_id = handed_off(desk)
    assert desk.wait_for("the assignment", lambda: ticket(desk, ticket_id)["assignee"]) == "alice"
    status, body, _ = desk.api("POST", f"/tickets/{ticket_id}/replies", {"text": "您好，我们查一下物流。"}, token=ALICE)
    assert status == 202, body
    assert "awaiting_reply_since" not in ticket(desk, ticket_id)
    desk.webchat_say(session, "还是没有收到，能快点吗？")
    waiting = desk.wait_for("the wait", lambda: ticket(desk, ticket_id).get("awaiting_reply_since"))
    due = desk.wait_for("its due time", lambda: sla_of(desk, ticket_id).get("next_reply_due"))
    assert sla_of(desk, ticket_id)["next_reply_since"] == waiting

    breaches = desk.wait_for("the breach", lambda: sla_of(desk, ticket_id).get("breaches"), timeout=20)
    assert [(b["target"], b["due"]) for b in breaches] == [("next_reply", due)], breaches

    sign_in(page, desk, ALICE)
    row = page.get_by_role("list", name="Ticket list").get_by_role("link", name=re.compile("快递三天了还没到"))
    expect(row).to_contain_text("⚠ SLA breached: Next reply")
    row.click()
    sla = page.get_by_role("region", name="Service level (SLA)")
    targets = sla.get_by_role("list", name="Targets").get_by_role("listitem")
    expect(targets).to_have_count(3)
    expect(targets.nth(0)).to_contain_text("First response")
    expect(targets.nth(0)).to_contain_text("✓ Met")
    expect(targets.nth(1)).to_contain_text("Next reply")
    expect(targets.nth(1)).to_contain_text("⚠ Breached")
    expect(targets.nth(1).locator("time")).to_have_attribute("datetime", due)
    expect(page.get_by_role("list", name="Breaches")).to_contain_text("Next reply target missed")

    # The agent answers: the wait ends, the target goes from the list, the record stays.
    page.get_by_role("textbox", name="Reply").fill("已经加急处理了，今天送到。")
    page.get_by_role("button", name="Send").click()
    expect(targets).to_have_count(2)
    expect(sla.get_by_role("list", name="Targets")).not_to_contain_text("Next reply")
    expect(page.get_by_role("list", name="Breaches")).to_contain_text("Next reply target missed")
    desk.wait_for("the due time taken off", lambda: "next_reply_due" not in sla_of(desk, ticket_id))
    status, report, _ = desk.api("GET", "/reports/sla")
    assert status == 200, report
    waits = [p["next_reply"] for p in report["priorities"]]
    assert sum(w["breached"] for w in waits) == 1 and sum(w["pending"] for w in waits) == 0, report

    # The supervisor's report counts the waits beside the ticket's targets.
    page.get_by_role("button", name="Sign out").click()
    sign_in(page, desk, BOB)
    page.get_by_role("link", name="Reports").click()
    table = page.get_by_role("table", name="SLA targets met, per priority")
    expect(table.get_by_role("columnheader", name="Next reply (each wait)")).to_be_visible()
    row = table.get_by_role("row", name=re.compile("^High"))
    # tickets; first response: attained, met, breached, pending; next reply; resolution; median.
    expect(row.get_by_role("cell")).to_have_text(
        ["1", "100%", "1", "0", "0", "0%", "0", "1", "0", "—", "0", "0", "1", re.compile(".+")]
    )


def test_a_supervisor_edits_a_profile_in_the_agents_view(desk, page):
    # One ticket held by alice, so that her load shows.
    _, ticket_id = handed_off(desk)
    _, _, headers = desk.api("GET", f"/tickets/{ticket_id}")
    status, body, _ = desk.api("PATCH", f"/tickets/{ticket_id}", {"assignee": "alice"}, headers={"If-Match": headers["ETag"]})
    assert status == 200, body

    sign_in(page, desk, BOB)
    page.get_by_role("link", name="Agents").click()
    table = page.get_by_role("table", name="Agent profiles")
    alice = table.get_by_role("row", name=re.compile("^alice"))
    expect(alice).to_contain_text("1 of 10")
    expect(alice).to_contain_text("Available")

    page.get_by_role("button", name="Edit alice").click()
    form = page.get_by_role("form", name="Edit profile: alice")
    form.get_by_role("group", name="Skills").get_by_role("checkbox", name="Technical").uncheck()
    form.get_by_role("group", name="Languages").get_by_role("checkbox", name="English").uncheck()
    form.get_by_role("spinbutton", name="Capacity (open tickets at most)").fill("3")
    form.get_by_role("checkbox", name="Available for new tickets").uncheck()
    screenshot(page, "console-agents")
    form.get_by_role("button", name="Save profile").click()
    expect(page.get_by_role("status")).to_contain_text("Profile saved.")
    expect(form).to_have_count(0)

    saved = profile(desk, "alice")
    assert sorted(saved["skills"]) == ["billing", "general"], saved
    assert saved["languages"] == ["zh"], saved
    assert saved["capacity"] == 3 and saved["available"] is False, saved
    expect(alice).to_contain_text("1 of 3")
    expect(alice).to_contain_text("Away")
    expect(alice).to_contain_text("General, Billing")
    expect(alice).not_to_contain_text("English")

    # Alice sees the change in her own switch, and the view read-only.
    page.get_by_role("button", name="Sign out").click()
    sign_in(page, desk, ALICE)
    expect(page.get_by_role("switch", name="Available")).not_to_be_checked()
    page.get_by_role("link", name="Agents").click()
    expect(page.get_by_role("table", name="Agent profiles")).to_be_visible()
    expect(page.get_by_text("Only supervisors can change profiles.")).to_be_visible()
    expect(page.get_by_role("button", name=re.compile("^Edit "))).to_have_count(0)


def test_a_removed_agent_shows_as_removed_with_no_edit(page):
    """An agent taken out of HELPDESK_AGENTS keeps their profile (the desk sets it away at
    start and refuses to change it): the Agents view says removed and offers no edit, a
    ticket they still hold says to reassign it, and the assignee box does not offer them."""
    CAROL = "carol-token-123"
    before = Desk({"HELPDESK_AGENTS": f"alice:agent:{ALICE},bob:supervisor:{BOB},carol:agent:{CAROL}"})
    status, body, _ = before.api("PUT", "/agents/carol", {"capacity": 4}, token=BOB)
    assert status == 200, body
    _, held = handed_off(before)
    _, _, headers = before.api("GET", f"/tickets/{held}")
    status, body, _ = before.api("PATCH", f"/tickets/{held}", {"assignee": "carol"}, headers={"If-Match": headers["ETag"]})
    assert status == 200, body
    before.stop(keep_data=True)
    desk = Desk(data_dir=before.data_dir)  # alice and bob only
    try:
        status, body, _ = desk.api("PUT", "/agents/carol", {"capacity": 5}, token=BOB)
        assert status == 404 and body["error"]["code"] == "unknown_agent", body
        sign_in(page, desk, BOB)
        page.get_by_role("link", name="Agents").click()
        table = page.get_by_role("table", name="Agent profiles")
        carol = table.get_by_role("row", name=re.compile("^carol"))
        expect(carol).to_contain_text("Removed")
        expect(carol).to_contain_text("No agent token names them any more")
        expect(carol).not_to_contain_text("Away")
        expect(carol.get_by_role("button")).to_have_count(0)
        expect(page.get_by_role("button", name="Edit carol")).to_have_count(0)
        alice = table.get_by_role("row", name=re.compile("^alice"))
        expect(alice.get_by_role("button", name="Edit alice")).to_be_enabled()
        expect(alice).not_to_contain_text("Removed")

        page.get_by_role("combobox", name="Language").select_option("zh-CN")
        carol = page.get_by_role("table", name="坐席资料").get_by_role("row", name=re.compile("^carol"))
        expect(carol).to_contain_text("已移除")
        expect(carol).to_contain_text("资料无法编辑")
        expect(page.get_by_role("button", name="编辑 carol")).to_have_count(0)
        expect(page.get_by_role("button", name="编辑 alice")).to_be_visible()

        # A ticket they still hold says to reassign it, and the assignee box offers the
        # team, not the removed agent.
        page.goto(f"{desk.base}/console/#/tickets/{held}")
        box = page.get_by_role("combobox", name="处理人")
        expect(box).to_have_value("carol")
        expect(page.get_by_text("carol 已不在团队中，请改派此工单。")).to_be_visible()
        options = "(id) => [...document.getElementById(id).options].map((o) => o.value)"
        page.wait_for_function(f"(id) => ({options})(id).length > 0", arg=box.get_attribute("list"))
        offered = page.evaluate(options, box.get_attribute("list"))
        assert "alice" in offered and "carol" not in offered, offered
        page.get_by_role("combobox", name="语言").select_option("en")
        expect(page.get_by_text("carol is no longer on the team: reassign this ticket.")).to_be_visible()
        box = page.get_by_role("combobox", name="Assignee")
        box.fill("alice")
        page.get_by_role("button", name="Save assignee").click()
        expect(page.get_by_role("region", name="Assignment")).to_contain_text("Assigned to alice by bob")
        expect(page.get_by_text("is no longer on the team")).to_have_count(0)
    finally:
        desk.stop()


def test_a_bad_capacity_is_refused_in_the_form(desk, page):
    sign_in(page, desk, BOB)
    page.goto(desk.base + "/console/#/agents")
    page.get_by_role("button", name="Edit alice").click()
    page.get_by_role("spinbutton", name="Capacity (open tickets at most)").fill("500")
    page.get_by_role("button", name="Save profile").click()
    expect(page.get_by_role("alert")).to_contain_text("0 to 200")
    assert profile(desk, "alice")["capacity"] == 10
    # A save the desk fails keeps the focus on Save (a disabled button would drop it to
    # the page), to try again.
    page.route(
        "**/agents/alice",
        lambda route: route.fulfill(status=503, content_type="application/json",
                                    body='{"error":{"code":"unavailable","message":"try again"}}')
        if route.request.method == "PUT" else route.fallback(),
    )
    page.get_by_role("spinbutton", name="Capacity (open tickets at most)").fill("12")
    save = page.get_by_role("button", name="Save profile")
    save.click()
    expect(page.get_by_role("alert")).to_contain_text("try again")
    expect(save).to_be_focused()
    assert profile(desk, "alice")["capacity"] == 10


def test_the_agents_view_and_the_ticket_sections_in_chinese(assigning, page):
    desk = assigning(sla_rules("1h"))
    _, ticket_id = handed_off(desk)
    desk.wait_for("the assignment", lambda: ticket(desk, ticket_id)["assignee"])
    sign_in(page, desk, BOB)
    page.get_by_role("combobox", name="Language").select_option("zh-CN")
    expect(page.get_by_role("switch", name="可接单")).to_be_checked()
    page.get_by_role("link", name="坐席").click()
    table = page.get_by_role("table", name="坐席资料")
    expect(table.get_by_role("columnheader", name="技能")).to_be_visible()
    expect(table.get_by_role("columnheader", name="处理中工单")).to_be_visible()
    expect(table.get_by_role("row", name=re.compile("^alice"))).to_contain_text("综合、账务、技术")
    page.get_by_role("button", name="编辑 alice").click()
    form = page.get_by_role("form", name="编辑资料：alice")
    expect(form.get_by_role("group", name="语言").get_by_role("checkbox", name="中文")).to_be_checked()
    expect(form.get_by_role("spinbutton", name="容量（最多处理中工单数）")).to_have_value("10")
    english = ["Agents", "Skills", "Languages", "Capacity", "Available", "Away", "Open tickets",
               "Edit", "Save profile", "Chinese", "Billing", "Technical"]

    def no_english():
        text = page.locator("body").inner_text()
        left = [w for w in english if w in text]
        assert not left, f"English left in the Chinese interface: {left}"

    no_english()
    screenshot(page, "console-agents-zh")

    page.goto(f"{desk.base}/console/#/tickets/{ticket_id}")
    expect(page.get_by_role("region", name="分配")).to_contain_text("按规则自动分配给 alice")
    sla = page.get_by_role("region", name="服务时限（SLA）")
    expect(sla).to_contain_text("首次响应")
    expect(sla).to_contain_text("正常")
    english += ["Assignment", "Service level", "First response", "Resolution", "On track", "Reply due", "rule"]
    no_english()
    page.get_by_role("link", name="工单", exact=True).click()
    expect(page.get_by_role("list", name="工单列表")).to_contain_text("alice（规则）")
    no_english()


def test_each_sla_state_is_told_apart(desk, page):
    # Overdue (past due, before the desk's check records the breach) and due-soon last only
    # moments on a real desk, so the rule that names them is tried on made-up tickets.
    sign_in(page, desk)
    states = page.evaluate(
        """import('./assignment.js').then(({ targetState, relative, nextDue }) => {
          const now = Date.parse('2026-03-02T10:00:00Z');
          const at = (mins) => new Date(now + mins * 60000).toISOString();
          const tk = (over) => ({ status: 'open', first_response_at: null, ...over,
            sla: { first_response_due: at(over.due), resolution_due: null, breaches: over.breaches || [] } });
          return {
            on_track: targetState(tk({ due: 60 }), 'first_response', now).state,
            due_soon: targetState(tk({ due: 10 }), 'first_response', now).state,
            overdue: targetState(tk({ due: -1 }), 'first_response', now).state,
            met: targetState(tk({ due: -1, first_response_at: at(-5) }), 'first_response', now).state,
            breached: targetState(tk({ due: -1, first_response_at: at(0),
              breaches: [{ target: 'first_response', due: at(-1), at: at(0) }] }), 'first_response', now).state,
            none: targetState(tk({ due: 5 }), 'resolution', now),
            hour: relative(at(59.9), now),
            ago: relative(at(-2), now),
            // "SLA due soonest first": the breached one, the sooner, the later, then none.
            order: [{ id: 'later', ...tk({ due: 60 }) }, { id: 'none', status: 'open', sla: null },
              { id: 'breached', ...tk({ due: -1, breaches: [{ target: 'first_response', due: at(-1), at: at(0) }] }) },
              { id: 'sooner', ...tk({ due: 10 }) }]
              .sort((a, b) => nextDue(a) - nextDue(b) || 0).map((x) => x.id),
          };
        })"""
    )
    assert states == {
        "on_track": "on_track",
        "due_soon": "due_soon",
        "overdue": "overdue",
        "met": "met",
        "breached": "breached",
        "none": None,
        "hour": "in 1 hour",
        "ago": "2 minutes ago",
        "order": ["breached", "sooner", "later", "none"],
    }, states


def test_the_admin_takes_no_tickets_and_a_refused_assignee_says_why(desk, page):
    _, ticket_id = handed_off(desk)
    sign_in(page, desk, ADMIN)
    page.goto(f"{desk.base}/console/#/tickets/{ticket_id}")
    expect(page.get_by_role("button", name="Save assignee")).to_be_visible()
    # The administrator has no profile and takes no tickets: it is not offered one.
    expect(page.get_by_role("button", name="Assign to me")).to_have_count(0)

    # A typo is refused by the desk, and the console says why beside the box.
    assignee = page.get_by_role("combobox", name="Assignee")
    assignee.fill("alcie")
    page.get_by_role("button", name="Save assignee").click()
    refused = page.get_by_role("alert")
    expect(refused).to_have_text("no agent has that name.")
    expect(assignee).to_have_attribute("aria-invalid", "true")
    expect(assignee).to_have_attribute("aria-describedby", refused.get_attribute("id"))
    assert ticket(desk, ticket_id)["assignee"] is None
    # Another change that goes through leaves the refusal behind too.
    set_detail(page, "Priority", "low")
    expect(page.get_by_role("alert")).to_have_count(0)
    expect(assignee).not_to_have_attribute("aria-invalid", "true")
    assignee.fill("alcie")
    page.get_by_role("button", name="Save assignee").click()
    expect(refused).to_have_text("no agent has that name.")
    # Corrected, it goes through and the message goes.
    assignee.fill("alice")
    expect(page.get_by_role("alert")).to_have_count(0)
    page.get_by_role("button", name="Save assignee").click()
    expect(page.get_by_role("region", name="Assignment")).to_contain_text("Assigned to alice by admin")
    assert ticket(desk, ticket_id)["assignee"] == "alice"

    # An agent is offered the ticket.
    page.get_by_role("button", name="Sign out").click()
    sign_in(page, desk, BOB)
    page.goto(f"{desk.base}/console/#/tickets/{ticket_id}")
    page.get_by_role("button", name="Assign to me").click()
    expect(page.get_by_role("region", name="Assignment")).to_contain_text("bob took it")
    # Theirs now, it is not offered to them again.
    expect(page.get_by_role("button", name="Assign to me")).to_be_disabled()
    page.get_by_role("combobox", name="Language").select_option("zh-CN")
    expect(page.get_by_role("region", name="分配")).to_contain_text("bob 自行接手")
    expect(page.get_by_role("button", name="分配给我")).to_be_disabled()


def test_an_agent_opens_on_their_own_tickets_and_a_supervisor_on_all(assigning, page):
    """As Zendesk's "Your unsolved tickets" and Chatwoot's "Mine": an agent signs in to the
    tickets the desk's rule gave them, a supervisor to every ticket, and a view each picks is
    kept for them, not for whoever signs in next in the same browser."""
    desk = assigning(sla_rules("1h"))
    _, ticket_id = handed_off(desk)
    holder = desk.wait_for("the assignment", lambda: ticket(desk, ticket_id)["assignee"])
    assert holder == "alice", holder

    sign_in(page, desk, ALICE)
    mine = page.get_by_role("tab", name=re.compile("^Mine"))
    expect(mine).to_have_attribute("aria-selected", "true")
    expect(page.get_by_role("list", name="Ticket list").get_by_role("link", name=re.compile("快递三天了还没到"))).to_be_visible()
    page.get_by_role("tab", name=re.compile("^Unassigned")).click()

    page.get_by_role("button", name="Sign out").click()
    sign_in(page, desk, BOB)
    expect(page.get_by_role("tab", name=re.compile("^All"))).to_have_attribute("aria-selected", "true")

    page.get_by_role("button", name="Sign out").click()
    sign_in(page, desk, ALICE)
    expect(page.get_by_role("tab", name=re.compile("^Unassigned"))).to_have_attribute("aria-selected", "true")
