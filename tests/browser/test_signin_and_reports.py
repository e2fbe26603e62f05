"""Signing in and out of the agent console, what it says when the desk refuses or cannot be
reached, and the reports' days and service levels, in real Chromium. Controls are found by
role and accessible name."""

import re
import tempfile
from pathlib import Path

from playwright.sync_api import expect

from conftest import ALICE, BOB, Desk
from test_console import handed_off, sign_in

INBOX = re.compile("^All")


def test_signing_out_in_one_tab_signs_out_every_tab(desk, context):
    first, second = context.new_page(), context.new_page()
    sign_in(first, desk, ALICE)
    second.goto(desk.base + "/console/")
    expect(second.get_by_role("tab", name=INBOX)).to_be_visible()

    first.get_by_role("button", name="Sign out").click()
    expect(second.get_by_role("button", name="Sign in")).to_be_visible()
    expect(second.get_by_role("tab", name=INBOX)).to_have_count(0)
    # The agent's own sign-out is not a session that ended.
    expect(second.get_by_role("alert")).to_have_count(0)

    # And a sign-in in one tab signs the others in.
    sign_in(first, desk, ALICE)
    expect(second.get_by_role("tab", name=INBOX)).to_be_visible()


def test_a_token_the_desk_stops_taking_says_the_session_ended(desk, page):
    sign_in(page, desk, ALICE)
    # As if the token were taken out of HELPDESK_AGENTS: the next poll meets a 401.
    page.evaluate("localStorage.setItem('helpdesk.token', 'a-token-the-desk-never-gave')")
    expect(page.get_by_role("alert")).to_have_text(
        "Your session has ended. Sign in again to go on.", timeout=15_000
    )
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()

    # A kept token that no longer works, at the next visit, says the same.
    page.evaluate("localStorage.setItem('helpdesk.token', 'another-token-never-given')")
    page.reload()
    expect(page.get_by_role("alert")).to_have_text("Your session has ended. Sign in again to go on.")
    page.get_by_label("Agent token").fill("not-a-token-at-all")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text("That token was not accepted.")


def test_signing_in_while_the_desk_cannot_be_reached_says_so(desk, page):
    page.goto(desk.base + "/console/")
    page.route("**/me", lambda route: route.abort())
    page.get_by_label("Agent token").fill(ALICE)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text(
        "The desk cannot be reached. Check that it is running, then sign in again."
    )
    page.unroute("**/me")
    page.get_by_label("Agent token").fill(ALICE)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("tab", name=INBOX)).to_be_visible()


def test_refusals_are_said_in_the_interfaces_language(desk, page):
    """A refusal the console knows by its code reads in Chinese in the Chinese interface;
    reports with a day left out, or a refused period, show no older figures."""
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    sign_in(page, desk, BOB)
    page.get_by_role("combobox", name="Language").select_option("zh-CN")
    page.get_by_role("link", name="报表").click()
    expect(page.get_by_role("heading", name="客户满意度")).to_be_visible()
    # The days are the team's: UTC without business hours in the rules.
    expect(page.get_by_text("按团队所在时区计日：UTC。")).to_be_visible()
    expect(page.get_by_role("heading", name="服务等级")).to_be_visible()

    page.get_by_label("开始日期").fill("2026-06-30")
    page.get_by_label("结束日期").fill("2026-06-01")
    page.get_by_role("button", name="查看").click()
    expect(page.get_by_role("alert")).to_have_text("出错了：开始日期须早于结束日期，且时段最长一年。")
    expect(page.get_by_role("heading", name="客户满意度")).to_have_count(0)

    page.get_by_label("结束日期").fill("")
    page.get_by_role("button", name="查看").click()
    expect(page.get_by_role("alert")).to_have_text("请选择开始日期和结束日期。")
    page.get_by_label("结束日期").fill("2026-07-01")
    page.get_by_role("button", name="查看").click()
    expect(page.get_by_role("heading", name="客户满意度")).to_be_visible()
    expect(page.get_by_role("alert")).to_have_count(0)
    assert errors == [], errors


def test_the_reports_show_service_levels_per_priority_in_the_teams_days(page):
    rules = Path(tempfile.mkdtemp(prefix="helpdesk-rules-")) / "rules.toml"
    rules.write_text(
        '[assignment]\nauto = false\n\n[business_hours]\ntimezone = "Asia/Shanghai"\n'
        'days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]\nopen = "00:00"\nclose = "23:59"\n\n'
        '[sla.high]\nfirst_response = "30m"\nresolution = "4h"\n'
    )
    desk = Desk(env={"HELPDESK_RULES": str(rules)})
    try:
        session = desk.webchat_session()
        desk.webchat_say(session, "我要投诉，快递三天了还没到")
        desk.wait_for("the hand-off's ticket", lambda: desk.api("GET", "/tickets")[1]["tickets"])
        sign_in(page, desk, BOB)
        page.get_by_role("link", name="Reports").click()
        expect(page.get_by_text("Days are counted in the team’s time zone: Asia/Shanghai.")).to_be_visible()
        table = page.get_by_role("table", name="SLA targets met, per priority")
        row = table.get_by_role("row", name=re.compile("^High"))
        # One ticket (a complaint is high), its targets neither met nor missed yet.
        expect(row.get_by_role("cell")).to_have_text(["1", "—", "0", "0", "1", "—", "0", "0", "1", "—"])
    finally:
        desk.stop()


def test_the_reports_narrow_to_a_tag(desk, page):
    """A supervisor reads the reports for the tickets with one tag; Enter while an input
    method composes the tag shows nothing yet, and a tag the desk refuses leaves no figures."""
    _, tagged = handed_off(desk)
    handed_off(desk, "The app crashes when I open settings")
    status, body = desk.patch_ticket(tagged, {"tags": ["退款"]})
    assert status == 200, body
    sign_in(page, desk, BOB)
    page.get_by_role("link", name="Reports").click()
    volume = page.get_by_role("region", name="Volume")
    expect(volume.get_by_text(re.compile(r"^Opened: 2$"))).to_be_visible()

    tag = page.get_by_role("textbox", name="Tag (optional)")
    tag.click()
    cdp = page.context.new_cdp_session(page)
    cdp.send("Input.imeSetComposition", {"text": "tuikuan", "selectionStart": 7, "selectionEnd": 7})
    page.keyboard.press("Enter")  # picks the candidate: the reports stay as they are
    cdp.send("Input.insertText", {"text": "退款"})
    expect(tag).to_have_value("退款")
    expect(page.get_by_text("Only the tickets tagged")).to_have_count(0)
    expect(volume.get_by_text(re.compile(r"^Opened: 2$"))).to_be_visible()
    tag.press("Enter")
    expect(page.get_by_text("Only the tickets tagged “退款”.")).to_be_visible()
    expect(volume.get_by_text(re.compile(r"^Opened: 1$"))).to_be_visible()

    # Said as the desk counted it: a leading "#" dropped, full-width letters folded.
    status, body = desk.patch_ticket(tagged, {"tags": ["退款", "vip"]})
    assert status == 200, body
    tag.fill("#ＶＩＰ")
    tag.press("Enter")
    expect(page.get_by_text("Only the tickets tagged “vip”.")).to_be_visible()
    expect(volume.get_by_text(re.compile(r"^Opened: 1$"))).to_be_visible()

    tag.fill("two words")
    page.get_by_role("button", name="Show").click()
    expect(page.get_by_role("alert")).to_be_visible()
    expect(page.get_by_role("region", name="Volume")).to_have_count(0)
    tag.fill("")
    page.get_by_role("button", name="Show").click()
    expect(volume.get_by_text(re.compile(r"^Opened: 2$"))).to_be_visible()
    expect(page.get_by_text("Only the tickets tagged")).to_have_count(0)

    page.get_by_role("combobox", name="Language").select_option("zh-CN")
    expect(page.get_by_role("textbox", name="标签（可选）")).to_be_visible()


def test_an_unsent_reply_outlives_a_session_that_ended_but_not_a_sign_out(desk, page):
    session = desk.webchat_session()
    desk.webchat_say(session, "我要投诉，快递三天了还没到")
    tickets = desk.wait_for("the hand-off's ticket", lambda: desk.api("GET", "/tickets")[1]["tickets"])
    ticket = f"{desk.base}/console/#/tickets/{tickets[0]['id']}"
    sign_in(page, desk, ALICE)
    page.goto(ticket)
    reply = page.get_by_role("textbox", name="Reply")
    reply.fill("您好，我们已经联系快递公司，")

    page.evaluate("localStorage.setItem('helpdesk.token', 'a-token-the-desk-never-gave')")
    expect(page.get_by_role("alert")).to_have_text(
        "Your session has ended. Sign in again to go on.", timeout=15_000
    )
    page.get_by_label("Agent token").fill(ALICE)
    page.get_by_role("button", name="Sign in").click()
    expect(reply).to_have_value("您好，我们已经联系快递公司，")
    page.get_by_role("link", name="Tickets", exact=True).click()
    page.goto(ticket)
    expect(reply).to_have_value("您好，我们已经联系快递公司，")

    # Another agent signing in at this tab after a session ended starts with empty boxes.
    page.evaluate("localStorage.setItem('helpdesk.token', 'a-token-the-desk-never-gave')")
    expect(page.get_by_role("alert")).to_have_text(
        "Your session has ended. Sign in again to go on.", timeout=15_000
    )
    page.get_by_label("Agent token").fill(BOB)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("textbox", name="Reply")).to_have_value("")
    page.get_by_role("button", name="Sign out").click()
    sign_in(page, desk, ALICE)
    page.goto(ticket)

    # The agent's own sign-out leaves nothing for the next person at this browser, nor for
    # themselves.
    expect(page.get_by_role("textbox", name="Reply")).to_have_value("")
    page.get_by_role("textbox", name="Reply").fill("草稿")
    page.get_by_role("button", name="Sign out").click()
    sign_in(page, desk, ALICE)
    page.goto(ticket)
    expect(page.get_by_role("textbox", name="Reply")).to_have_value("")
    # And a reply sent is a draft no more.
    page.get_by_role("textbox", name="Reply").fill("已为您催促快递")
    page.get_by_role("button", name="Send").click()
    expect(page.get_by_role("textbox", name="Reply")).to_have_value("")
    page.reload()
    expect(page.get_by_role("textbox", name="Reply")).to_have_value("")


def test_the_desks_own_words_never_stand_alone_in_the_chinese_console(desk, page):
    """Every refusal the console can meet is said in its language: a merge that names no
    customer or the same one, an article id the desk would refuse, and even a code the
    console does not know (the desk's words then only a quoted detail)."""
    _, ticket_id = handed_off(desk)
    _, body, _ = desk.api("GET", f"/tickets/{ticket_id}")
    sign_in(page, desk, BOB)
    page.get_by_role("combobox", name="Language").select_option("zh-CN")
    page.goto(f"{desk.base}/console/#/tickets/{ticket_id}")
    merge = page.get_by_role("textbox", name="要并入此客户的客户编号")
    merge.fill("nobody")
    page.get_by_role("button", name="合并客户").click()
    expect(page.get_by_role("alert")).to_have_text("没有编号为“nobody”的客户。")
    merge.fill(body["ticket"]["customer_id"])
    page.get_by_role("button", name="合并客户").click()
    expect(page.get_by_role("alert")).to_have_text("出错了：客户不能与自己合并：请填写另一位客户的编号。")

    # A code the console has no words for: its status, in Chinese, with the desk's words quoted.
    page.route(
        "**/tickets/*",
        lambda route: route.fulfill(
            status=422,
            content_type="application/json",
            body='{"error":{"code":"something_new","message":"an English reason"}}',
        )
        if route.request.method == "PATCH"
        else route.continue_(),
    )
    page.get_by_role("combobox", name="优先级").select_option("low")
    page.get_by_role("button", name="更新优先级").click()
    expect(page.get_by_role("alert")).to_have_text(
        "出错了：客服台拒绝了此请求（状态码 422）（客服台原文：“an English reason”）。"
    )
    page.unroute("**/tickets/*")

    page.get_by_role("link", name="知识库").click()
    page.get_by_role("button", name="新建文章").click()
    page.get_by_role("textbox", name="文章编号").fill("my article")
    page.get_by_role("button", name="保存文章").click()
    expect(page.get_by_role("alert")).to_have_text(
        "文章 ID 须为 1 到 128 个字符，只能用 A–Z、a–z、0–9、_ 和 -，不能有空格：“my article”不符合。"
    )
    _, listing, _ = desk.api("GET", "/kb/articles")
    assert all(a["id"] != "my article" for a in listing["articles"])


def test_the_root_address_opens_the_console_with_the_token_box_focused(desk, page):
    page.goto(desk.base + "/")
    expect(page).to_have_url(desk.base + "/console/")
    expect(page.get_by_role("textbox", name="Agent token")).to_be_focused()


def test_the_volume_chart_has_a_key_and_its_numbers(desk, page):
    """Opened and closed are told apart by more than colour: a key in words, stripes on the
    closed bars, and a table of each day's numbers."""
    session, ticket_id = handed_off(desk)
    _, _, headers = desk.api("GET", f"/tickets/{ticket_id}")
    status, body, _ = desk.api("PATCH", f"/tickets/{ticket_id}", {"status": "closed"}, headers={"If-Match": headers["ETag"]})
    assert status == 200, body
    sign_in(page, desk, BOB)
    page.get_by_role("link", name="Reports").click()
    key = page.get_by_role("list", name="Key")
    expect(key.get_by_role("listitem")).to_have_text(
        ["Opened: the left bar of each day, plain blue", "Closed: the right bar of each day, green with stripes"]
    )
    table = page.get_by_role("table", name="Tickets opened and closed, by day (days with any)")
    today = body["closed_at"][:10]
    expect(table.get_by_role("row", name=re.compile("^" + today)).get_by_role("cell")).to_have_text(["1", "1"])
    fills = page.evaluate(
        "() => [...document.querySelectorAll('svg.chart rect.bar')].map(r => getComputedStyle(r).fill)"
    )
    assert any("closed-hatch" in f for f in fills), fills
    page.get_by_role("combobox", name="Language").select_option("zh-CN")
    expect(page.get_by_role("list", name="图例")).to_contain_text("关闭：每天右侧的柱，绿色带斜纹")
