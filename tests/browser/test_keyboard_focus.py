"""Where the keyboard's focus goes in the agent console, in real Chromium: it never drops to
the page's body. Signing in, opening a ticket, closing an editor, leaving the search and
coming back from a ticket each put it somewhere the agent can go on from, and the inbox's
views are tabs the arrow keys move between. Controls are found by role and accessible
name."""

import re

from playwright.sync_api import expect

from conftest import ADMIN, BOB
from test_console import handed_off


def focus_is_on_body(page):
    return page.evaluate("document.activeElement === document.body || document.activeElement === null")


def test_signing_in_and_opening_a_ticket_keep_the_focus(desk, page):
    handed_off(desk, "我要投诉，退款一直没到账")
    handed_off(desk, "I want to talk to a human about my invoice")
    page.goto(desk.base + "/console/")
    token = page.get_by_role("textbox", name="Agent token")
    expect(token).to_be_focused()
    page.keyboard.type(ADMIN)
    page.keyboard.press("Enter")
    # The admin opens on All: its tab has the focus.
    expect(page.get_by_role("tab", name=re.compile("^All"))).to_be_focused()
    rows = page.get_by_role("list", name="Ticket list").get_by_role("link")
    expect(rows).to_have_count(2)

    # Enter opens the row under the cursor, and the focus is on the ticket's heading.
    page.keyboard.press("j")
    expect(rows.nth(1)).to_be_focused()
    page.keyboard.press("Enter")
    heading = page.get_by_role("heading", level=1)
    expect(heading).to_have_text(re.compile("退款"))
    expect(heading).to_be_focused()

    # Back in the inbox, the cursor and the focus are on the row the agent left.
    page.go_back()
    expect(rows.nth(1)).to_be_focused()
    expect(rows.nth(1)).to_contain_text("退款")
    rows.nth(0).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(re.compile("invoice"))
    page.get_by_role("link", name="Back to tickets").click()
    expect(rows.nth(0)).to_be_focused()

    # Escape leaves the search for the row under the cursor, not the page.
    page.keyboard.press("/")
    search = page.get_by_role("searchbox", name="Search tickets")
    expect(search).to_be_focused()
    page.keyboard.type("退款")
    expect(rows).to_have_count(1)
    page.keyboard.press("Escape")
    expect(rows.nth(0)).to_be_focused()
    assert not focus_is_on_body(page)


def test_the_views_are_tabs_the_arrow_keys_move_between(desk, page):
    handed_off(desk)
    page.goto(desk.base + "/console/")
    page.get_by_role("textbox", name="Agent token").fill(BOB)
    page.get_by_role("button", name="Sign in").click()
    tabs = {name: page.get_by_role("tab", name=re.compile("^" + name)) for name in ["Mine", "Unassigned", "All"]}
    expect(tabs["All"]).to_be_focused()
    # One tab stop: the chosen view's.
    expect(tabs["All"]).to_have_attribute("tabindex", "0")
    expect(tabs["Mine"]).to_have_attribute("tabindex", "-1")
    panel = page.get_by_role("tabpanel", name=re.compile("^All"))
    expect(panel.get_by_role("list", name="Ticket list").get_by_role("link")).to_have_count(1)
    expect(tabs["All"]).to_have_attribute("aria-controls", panel.get_attribute("id"))

    page.keyboard.press("ArrowLeft")
    expect(tabs["Unassigned"]).to_be_focused()
    expect(tabs["Unassigned"]).to_have_attribute("aria-selected", "true")
    expect(tabs["All"]).to_have_attribute("aria-selected", "false")
    expect(page.get_by_role("tabpanel", name=re.compile("^Unassigned"))).to_be_visible()
    page.keyboard.press("Home")
    expect(tabs["Mine"]).to_be_focused()
    expect(page.get_by_role("tabpanel", name=re.compile("^Mine"))).to_contain_text("No tickets here.")
    page.keyboard.press("ArrowLeft")
    expect(tabs["All"]).to_be_focused()
    page.keyboard.press("ArrowRight")
    expect(tabs["Mine"]).to_be_focused()
    page.keyboard.press("End")
    expect(tabs["All"]).to_have_attribute("aria-selected", "true")
    # Tab leaves the tab list for what follows it, not for the next tab.
    page.keyboard.press("Tab")
    expect(page.get_by_role("searchbox", name="Search tickets")).to_be_focused()


def test_closing_an_editor_puts_the_focus_back_on_its_button(desk, page):
    page.goto(desk.base + "/console/")
    page.get_by_role("textbox", name="Agent token").fill(BOB)
    page.keyboard.press("Enter")
    page.get_by_role("link", name="Agents").click()
    edit = page.get_by_role("button", name="Edit alice")
    edit.click()
    expect(page.get_by_role("textbox", name="Name")).to_be_focused()
    page.keyboard.press("Escape")
    expect(page.get_by_role("button", name="Save profile")).to_have_count(0)
    expect(edit).to_be_focused()

    page.get_by_role("link", name="Knowledge base").click()
    new = page.get_by_role("button", name="New article")
    new.click()
    expect(page.get_by_role("textbox", name="Article id")).to_be_focused()
    page.keyboard.press("Escape")
    expect(page.get_by_role("button", name="Save article")).to_have_count(0)
    expect(new).to_be_focused()
