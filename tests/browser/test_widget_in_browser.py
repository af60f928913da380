"""What visitors see, proven in Chromium: live status flips, chat with the console, the offline form,
languages, keyboard use and colours, a phone screen, and a hostile host page."""

from __future__ import annotations

import re
import time

from playwright.sync_api import expect

from tests.browser.conftest import shot, sign_in_admin, wait_for_mode, widget_state

LAUNCH = "deskbell-widget .launch"
PANEL = "deskbell-widget .panel"
WIDGET_AREA = {"x": 690, "y": 70, "width": 410, "height": 650}  # the open widget in a 1100x720 window


def test_widget_flips_online_offline_hidden_without_a_page_reload(deskbell_service, host_site, new_page):
    svc = deskbell_service
    w = svc.widget("Flip shop")
    ana = svc.agent("Ana", "ana.flip@example.com", w["id"], on_duty=True, stay_available=True)
    bo = svc.agent("Bo", "bo.flip@example.com", w["id"], on_duty=True, stay_available=True)
    page = new_page()
    page.goto(host_site.page("flip", w["key"], svc))
    page.evaluate("() => { window.notReloaded = true; }")
    wait_for_mode(page, "live")
    expect(page.locator(LAUNCH)).to_have_text("Chat with us")

    svc.api("PATCH", f"/api/v1/agents/{ana['id']}", {"on_duty": False})
    time.sleep(0.5)
    assert widget_state(page)["mode"] == "live"  # Bo is still there

    svc.api("PATCH", f"/api/v1/agents/{bo['id']}", {"on_duty": False})  # the last agent leaves
    wait_for_mode(page, "form")
    expect(page.locator(LAUNCH)).to_have_text("Leave a message")

    # The manager turns on "hide when offline" in the dashboard: the button goes away.
    admin = new_page()
    sign_in_admin(admin, svc)
    admin.goto(f"{svc.base}/admin/widgets/{w['id']}")
    admin.get_by_label("Hide the widget entirely").check()
    admin.get_by_role("button", name="Save").click()
    expect(admin.locator(".notice")).to_contain_text("Saved")
    wait_for_mode(page, "hidden")
    expect(page.locator(LAUNCH)).to_be_hidden()

    svc.api("PATCH", f"/api/v1/agents/{bo['id']}", {"on_duty": True})  # back on duty: back online
    wait_for_mode(page, "live")
    expect(page.locator(LAUNCH)).to_be_visible()
    assert page.evaluate("() => window.notReloaded") is True


def test_a_visitor_chats_with_an_agent_answering_from_the_console(deskbell_service, host_site, new_page):
    svc = deskbell_service
    w = svc.widget("Chat shop")
    agent = svc.agent("Carla", "carla.chat@example.com", w["id"])
    # The manager makes the agent a console sign-in link on the dashboard's agents page.
    console = new_page(viewport={"width": 1100, "height": 700})
    sign_in_admin(console, svc)
    console.goto(svc.base + "/admin/agents")
    console.locator(f'tr[data-agent="{agent["email"]}"]').get_by_role("button", name="Sign-in link").click()
    link = console.locator("#signin-link").inner_text().strip()
    assert link.startswith(svc.base + "/console/login?token=dl_")
    console.goto(link)
    duty = console.locator("#duty")
    expect(duty).to_be_enabled()
    console.locator("label.switch", has=duty).click()  # the switch's label, as a person clicks it
    expect(duty).to_be_checked()
    expect(console.locator("#availability")).to_contain_text("Available")

    visitor = new_page()
    visitor.goto(host_site.page("chat", w["key"], svc))
    wait_for_mode(visitor, "live")
    visitor.locator(LAUNCH).click()
    box = visitor.locator("deskbell-widget .compose textarea")
    expect(box).to_be_focused()
    box.fill("Hi! Do you ship tents to Canada?")
    box.press("Enter")

    item = console.locator(".conv-item").first
    expect(item).to_contain_text("Do you ship tents to Canada?")
    item.click()
    console.locator("#reply").fill("Hello! Yes, we ship to Canada in 3-5 days.")
    console.locator("#reply").press("Enter")

    reply = visitor.locator("deskbell-widget .m.a .b").last
    expect(reply).to_have_text("Hello! Yes, we ship to Canada in 3-5 days.")
    expect(visitor.locator("deskbell-widget .m.a .who").first).to_contain_text("Carla")
    shot(visitor, "widget-online", docs=True, clip=WIDGET_AREA)
    shot(console, "console")

    # A reply while the panel is closed shows an unread badge; opening clears it.
    visitor.keyboard.press("Escape")
    expect(visitor.locator(PANEL)).to_be_hidden()
    console.locator("#reply").fill("Anything else I can help with?")
    console.locator("#reply").press("Enter")
    badge = visitor.locator("deskbell-widget .badge")
    expect(badge).to_have_text("1")
    expect(visitor.locator(LAUNCH)).to_have_attribute("aria-label", re.compile("1 unread"))
    visitor.locator(LAUNCH).click()
    expect(badge).to_be_hidden()

    # After a reload the history is replayed, and replayed replies are not "unread".
    visitor.reload()
    wait_for_mode(visitor, "live")
    visitor.wait_for_function("() => window.deskbell.state().last_seq >= 3")
    assert widget_state(visitor)["unread"] == 0
    expect(visitor.locator("deskbell-widget .badge")).to_be_hidden()


def test_the_offline_form_submits_and_shows_the_confirmation(deskbell_service, host_site, new_page):
    svc = deskbell_service
    w = svc.widget("Form shop")
    page = new_page()
    page.goto(host_site.page("form", w["key"], svc))
    wait_for_mode(page, "form")
    page.locator(LAUNCH).click()
    widget = page.locator("deskbell-widget")
    expect(widget.get_by_label("Name", exact=True)).to_be_focused()
    widget.get_by_label("Message", exact=True).fill("")
    sound = widget.get_by_role("button", name="Sound for new replies")
    expect(sound).to_have_attribute("aria-pressed", "false")  # off until the visitor wants it
    sound.click()
    expect(sound).to_have_attribute("aria-pressed", "true")
    widget.get_by_role("button", name="Send message").click()
    expect(widget.locator("#db-err-message")).to_have_text("Please write a message.")
    widget.get_by_label("Name", exact=True).fill("Rita")
    widget.get_by_label("Email", exact=True).fill("rita@example.com")
    widget.get_by_label("Message", exact=True).fill("Do you have the Trailblazer 2 tent in green?")
    shot(page, "widget-offline-form", docs=True, clip=WIDGET_AREA)
    widget.get_by_role("button", name="Send message").click()
    expect(widget.locator(".note")).to_have_text("Thanks! We got your message and will get back to you by email.")
    stored = svc.api("GET", f"/api/v1/offlinemessages?widget={w['key']}")["items"]
    assert [(m["email"], m["message"]) for m in stored] == [("rita@example.com", "Do you have the Trailblazer 2 tent in green?")]


def test_default_texts_follow_the_browsers_language_and_custom_texts_win(deskbell_service, host_site, new_page):
    svc = deskbell_service
    w = svc.widget("Lang shop")
    url = host_site.page("lang", w["key"], svc)
    expected = {"es-ES": "Déjanos un mensaje", "fr-FR": "Laissez un message", "de-DE": "Nachricht hinterlassen",
                "pt-BR": "Deixe uma mensagem", "en-GB": "Leave a message", "ja-JP": "Leave a message"}
    for locale, text in expected.items():
        page = new_page(locale=locale)
        page.goto(url)
        expect(page.locator(LAUNCH)).to_have_text(text)
    page = new_page(locale="de-DE")
    page.goto(url)
    page.locator(LAUNCH).click()
    widget = page.locator("deskbell-widget")
    expect(widget.get_by_role("button", name="Nachricht senden")).to_be_visible()
    svc.api("PATCH", f"/api/v1/widgets/{w['id']}", {"offline_tab_text": "Schreib uns!"})
    page = new_page(locale="es-ES")
    page.goto(url)
    expect(page.locator(LAUNCH)).to_have_text("Schreib uns!")  # the admin's own text, as written


def test_the_widget_is_keyboard_usable_and_readable_with_any_colour(deskbell_service, host_site, new_page):
    svc = deskbell_service
    w = svc.widget("Yellow shop", colors={"primary": "#ffeb3b", "text": "#ffffff"})
    page = new_page()
    page.goto(host_site.page("keys", w["key"], svc, body='<a href="#top">first link</a>'))
    wait_for_mode(page, "form")
    ratio = page.evaluate("""() => {
      const b = document.querySelector('deskbell-widget').shadowRoot.querySelector('.launch');
      const rgb = (c) => c.match(/\\d+/g).slice(0, 3).map(Number);
      const lum = (c) => { const v = rgb(c).map((x) => { x /= 255; return x <= 0.03928 ? x / 12.92 : ((x + 0.055) / 1.055) ** 2.4; });
        return 0.2126 * v[0] + 0.7152 * v[1] + 0.0722 * v[2]; };
      const s = getComputedStyle(b); const [hi, lo] = [lum(s.color), lum(s.backgroundColor)].sort((a, c) => c - a);
      return (hi + 0.05) / (lo + 0.05);
    }""")
    assert ratio >= 4.5  # white on yellow was unreadable; the widget switched to dark text
    page.keyboard.press("Tab")  # the page's own link
    page.keyboard.press("Tab")  # the launcher
    expect(page.locator(LAUNCH)).to_be_focused()
    expect(page.locator(LAUNCH)).to_have_attribute("aria-expanded", "false")
    page.keyboard.press("Enter")
    expect(page.locator(PANEL)).to_be_visible()
    expect(page.locator(PANEL)).to_have_attribute("role", "dialog")
    expect(page.locator("deskbell-widget").get_by_label("Name", exact=True)).to_be_focused()
    page.keyboard.press("Escape")
    expect(page.locator(PANEL)).to_be_hidden()
    expect(page.locator(LAUNCH)).to_be_focused()


def test_on_a_phone_the_panel_fills_the_screen(deskbell_service, host_site, new_page):
    svc = deskbell_service
    w = svc.widget("Phone shop")
    page = new_page(viewport={"width": 390, "height": 760}, is_mobile=True, has_touch=True, device_scale_factor=1)
    page.goto(host_site.page("phone", w["key"], svc))
    wait_for_mode(page, "form")
    page.locator(LAUNCH).tap()
    panel = page.locator(PANEL)
    expect(panel).to_be_visible()
    box = panel.bounding_box()
    assert box is not None and (box["x"], box["y"], box["width"], box["height"]) == (0, 0, 390, 760)
    expect(panel).to_have_attribute("aria-modal", "true")
    expect(page.locator(LAUNCH)).to_be_hidden()
    shot(page, "widget-mobile", docs=True)


HOSTILE_CSS = """<style>
* { all: unset !important; font-size: 40px !important; }
html, body { display: block !important; font: 900 40px/5 "Comic Sans MS", cursive !important; color: red !important;
  letter-spacing: 6px !important; text-transform: uppercase !important; word-spacing: 20px !important;
  text-align: right !important; direction: rtl !important; visibility: visible !important; }
deskbell-widget, deskbell-widget * { display: none !important; opacity: 0 !important; transform: scale(0) !important; }
div, span, button, textarea, input, form, p { display: none !important; }
.cover { position: fixed !important; inset: 0 !important; z-index: 2147483647 !important; pointer-events: none !important;
  background: rgba(255, 0, 0, .08) !important; display: block !important; }
</style>"""


def test_the_widget_keeps_working_on_a_page_with_hostile_css(deskbell_service, host_site, new_page):
    svc = deskbell_service
    w = svc.widget("Hostile shop")
    page = new_page()
    page.goto(host_site.page("hostile", w["key"], svc, head=HOSTILE_CSS, body='<section class="cover"></section>'))
    wait_for_mode(page, "form")
    launch = page.locator(LAUNCH)
    expect(launch).to_be_visible()
    style = launch.evaluate("(b) => { const s = getComputedStyle(b); return [s.fontSize, s.textTransform, s.letterSpacing]; }")
    assert style == ["14px", "none", "normal"]
    box = launch.bounding_box()
    assert box is not None and 60 < box["width"] < 320 and box["height"] < 70  # a normal-sized button
    assert box["x"] > 700 and box["y"] > 600  # still bottom right on a right-to-left page
    launch.click()
    widget = page.locator("deskbell-widget")
    widget.get_by_label("Email", exact=True).fill("hostile@example.com")
    message = widget.get_by_label("Message", exact=True)
    message.fill("هل ما زال يعمل؟ Still works?")
    assert message.evaluate("(el) => el.matches(':dir(rtl)')")  # Arabic text runs right to left
    assert widget.get_by_label("Email", exact=True).evaluate("(el) => el.matches(':dir(ltr)')")
    widget.get_by_role("button", name="Send message").click()
    expect(widget.locator(".note")).to_contain_text("Thanks!")
    shot(page, "widget-hostile-css")


def test_the_assistant_answers_a_knowledge_base_question(deskbell_service, host_site, new_page):
    svc = deskbell_service
    w = svc.widget("AI shop", ai_enabled=True)
    svc.api("POST", f"/api/v1/widgets/{w['id']}/knowledge", {
        "title": "Can I return a tent?", "answer": "Yes. Unused tents can be returned within 30 days for a full refund.",
        "tags": ["returns"],
    })
    page = new_page()
    page.goto(host_site.page("ai", w["key"], svc))
    wait_for_mode(page, "ai")
    page.locator(LAUNCH).click()
    box = page.locator("deskbell-widget .compose textarea")
    box.fill("How do I return a tent?")
    box.press("Enter")
    answer = page.locator("deskbell-widget .m.a .b").last
    expect(answer).to_contain_text("within 30 days", timeout=15_000)
    expect(page.locator("deskbell-widget .m.a .who").last).to_contain_text("Assistant")
    shot(page, "widget-ai", docs=True, clip=WIDGET_AREA)
    # A question the knowledge base cannot answer: the assistant says so and offers the form, prefilled.
    box.fill("Do you sell bicycles to Mars colonies?")
    box.press("Enter")
    offer = page.locator("deskbell-widget .m.a .acts button").last
    expect(offer).to_be_visible(timeout=15_000)
    offer.click()
    message = page.locator("deskbell-widget").get_by_label("Message", exact=True)
    expect(message).to_be_visible()
    expect(message).to_have_value(re.compile("bicycles"))
