"""The knowledge-base and agent editors in real Chromium, as a supervisor uses them with the
keyboard: an editor takes the focus and Escape closes it, a new article never writes over
one that has its id, the article editor shows the desk's limits (config.json's) and refuses
in the page what the desk would, and a profile is saved only with a capacity that is a
number."""

import json

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


def open_new_article(page, desk, language="en"):
    sign_in(page, desk, BOB)
    if language != "en":
        page.get_by_role("combobox", name="Language").select_option(language)
    page.get_by_role("link", name="Knowledge base" if language == "en" else "知识库").click()
    page.get_by_role("button", name="New article" if language == "en" else "新建文章").click()


def test_the_article_editor_counts_characters_as_the_desk_does(desk, page):
    """A Chinese answer shows its count near the limit, tied to its box; an emoji is one
    character (two in JavaScript's length), so exactly 20,000 is not over and 20,001 is."""
    _, config, _ = desk.api("GET", "/console/config.json", token=None)
    assert config["article_limits"] == {"questions": 255, "text_chars": 500, "answer_chars": 20000}
    open_new_article(page, desk, "zh-CN")
    answer = page.get_by_role("textbox", name="中文答案（zh）")
    said = page.locator(".editor [aria-live=polite]")

    # Far from the limit the box says nothing more.
    answer.fill("答" * 15_000)
    expect(answer).to_have_accessible_description("")
    expect(page.get_by_text("/ 20,000")).to_have_count(0)

    answer.fill("答" * 18_940 + "😀" * 10)
    expect(answer).to_have_accessible_description("18,950 / 20,000 个字符")
    expect(page.get_by_text("18,950 / 20,000 个字符", exact=True)).to_be_visible()
    expect(answer).not_to_have_attribute("aria-invalid", "true")
    expect(said).to_have_text("")

    answer.fill("答" * 19_990 + "😀" * 11)
    expect(answer).to_have_attribute("aria-invalid", "true")
    expect(answer).to_have_accessible_description("中文答案（zh）有 20,001 个字符，最多 20,000 个。")
    expect(said).to_have_text("超出上限：中文答案（zh）。")
    # More typing over the limit changes the count at the box, not what the live region says.
    answer.press("Control+End")
    answer.press_sequentially("多")
    expect(answer).to_have_accessible_description("中文答案（zh）有 20,002 个字符，最多 20,000 个。")
    expect(said).to_have_text("超出上限：中文答案（zh）。")

    answer.fill("答" * 19_990 + "😀" * 10)
    expect(answer).to_have_accessible_description("20,000 / 20,000 个字符")
    expect(answer).not_to_have_attribute("aria-invalid", "true")
    expect(said).to_have_text("各项均未超出上限。")


def test_a_question_over_the_limit_is_refused_in_the_page_and_nothing_is_sent(desk, page):
    _, before, _ = desk.api("GET", "/kb/articles/reset-password-en")
    sign_in(page, desk, BOB)
    page.get_by_role("link", name="Knowledge base").click()
    page.get_by_role("button", name=f"Edit {before['title']}").click()
    questions = page.get_by_role("textbox", name="Questions (one per line)")
    long = "问" * 500 + "😀"
    questions.fill("\n".join(before["questions"] + [long, "one more"]))
    line = len(before["questions"]) + 1
    refusal = f"Questions (one per line): line {line} has 501 characters; the most for a question is 500."
    expect(questions).to_have_accessible_description(refusal)
    expect(questions).to_have_attribute("aria-invalid", "true")

    sent = []
    page.on("request", lambda r: sent.append(f"{r.method} {r.url}") if "/kb/" in r.url else None)
    page.get_by_role("button", name="Save article").click()
    expect(page.get_by_role("alert")).to_have_text("Not saved. " + refusal)
    # The box takes the focus with the long question selected, ready to be cut down.
    expect(questions).to_be_focused()
    selected = page.evaluate(
        "(() => { const b = document.activeElement; return b.value.slice(b.selectionStart, b.selectionEnd); })()"
    )
    assert selected == long
    assert sent == []
    _, after, _ = desk.api("GET", "/kb/articles/reset-password-en")
    assert after == before


def test_an_article_at_every_limit_is_saved(desk, page):
    """The longest title, 255 questions of 500 characters and three answers of 20,000 each,
    every one ending in an emoji: the page sends it, and the desk keeps it whole."""
    article = {
        "title": "题" * 499 + "😀",
        # ASCII questions: Chinese ones at every limit would make the request larger than
        # the desk takes at once (256 KiB).
        "questions": [f"{n:03d} " + "q" * 495 + "😀" for n in range(255)],
        "answer": "a" * 19_999 + "😀",
        "answers": {"zh": "答" * 19_999 + "😀", "en": "b" * 19_999 + "😀"},
    }
    assert len(json.dumps(article, ensure_ascii=False).encode()) < 256 * 1024
    open_new_article(page, desk)
    page.get_by_role("textbox", name="Article id").fill("at-the-limits")
    title = page.get_by_role("textbox", name="Title")
    title.fill(article["title"])
    questions = page.get_by_role("textbox", name="Questions (one per line)")
    questions.fill("\n".join(article["questions"]))
    page.get_by_role("textbox", name="Answer", exact=True).fill(article["answer"])
    page.get_by_role("textbox", name="Answer in Chinese (zh)").fill(article["answers"]["zh"])
    page.get_by_role("textbox", name="Answer in English (en)").fill(article["answers"]["en"])
    expect(title).to_have_accessible_description("500 / 500 characters")
    expect(questions).to_have_accessible_description(
        "255 / 255 questions · line 1, the longest: 500 / 500 characters"
    )
    page.get_by_role("button", name="Save article").click()
    # With the sentence encoder, the desk embeds the 256 texts before it answers: a debug
    # build on a loaded machine takes tens of seconds.
    saved_notice = page.get_by_role("status").filter(has_text="Article saved")
    expect(saved_notice).to_be_visible(timeout=180_000)
    status, saved, _ = desk.api("GET", "/kb/articles/at-the-limits")
    assert status == 200, saved
    assert {k: saved[k] for k in article} == article


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
