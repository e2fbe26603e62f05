"""The knowledge-base and agent editors in real Chromium, as a supervisor uses them with the
keyboard: an editor takes the focus and Escape closes it, a new article never writes over
one that has its id, and a profile is saved only with a capacity that is a number."""

from playwright.sync_api import expect

from conftest import BOB
from test_console import sign_in


def test_a_new_article_never_writes_over_another_and_the_editor_shows_the_one_chosen(desk, page):
    _, before, _ = desk.api("GET", "/kb/articles/reset-password-en")
    _, listing, _ = desk.api("GET", "/kb/articles")
    first, second = listing["articles"][0], listing["articles"][1]
    sign_in(page, desk, BOB)
    page.get_by_role("link", name="Knowledge base").click()

    page.get_by_role("button", name="New article").click()
    article_id = page.get_by_role("textbox", name="Article id")
    expect(article_id).to_be_focused()
    page.get_by_role("textbox", name="Title").fill("t")
    page.get_by_role("textbox", name="Questions (one per line)").fill("q")
    page.get_by_role("textbox", name="Answer", exact=True).fill("a")
    page.get_by_role("button", name="Save article").click()
    expect(page.get_by_role("alert")).to_have_text("Give the article an id (letters, digits, - or _).")
    article_id.fill("reset-password-en")
    page.get_by_role("button", name="Save article").click()
    expect(page.get_by_role("alert")).to_have_text(
        "An article with the id reset-password-en exists already: edit that one, or choose another id."
    )
    _, after, _ = desk.api("GET", "/kb/articles/reset-password-en")
    assert after == before

    # Escape closes the editor; each Edit shows its own article.
    page.keyboard.press("Escape")
    expect(page.get_by_role("button", name="Save article")).to_have_count(0)
    page.get_by_role("button", name=f"Edit {first['title']}").click()
    expect(article_id).to_have_value(first["id"])
    expect(page.get_by_role("textbox", name="Title")).to_be_focused()
    page.get_by_role("button", name=f"Edit {second['title']}").click()
    expect(article_id).to_have_value(second["id"])
    expect(page.get_by_role("textbox", name="Title")).to_have_value(second["title"])
    page.get_by_role("button", name="New article").click()
    expect(article_id).to_have_value("")
    expect(article_id).to_be_enabled()


def test_a_profile_needs_a_capacity_that_is_a_number(desk, page):
    sign_in(page, desk, BOB)
    page.get_by_role("link", name="Agents").click()
    page.get_by_role("button", name="Edit alice").click()
    capacity = page.get_by_role("spinbutton", name="Capacity (open tickets at most)")
    expect(page.get_by_role("textbox", name="Name")).to_be_focused()
    capacity.fill("")
    page.get_by_role("button", name="Save profile").click()
    expect(page.get_by_role("alert")).to_have_text("Capacity is a whole number from 0 to 200.")
    _, alice, _ = desk.api("GET", "/agents/alice")
    assert alice["capacity"] == 10, alice
    page.keyboard.press("Escape")
    expect(page.get_by_role("button", name="Save profile")).to_have_count(0)
