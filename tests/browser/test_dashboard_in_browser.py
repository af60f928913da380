"""The dashboard in Chromium: editing business hours, the 7-day preview following as you type,
and the live widget following the saved schedule."""

from __future__ import annotations

from datetime import datetime, timezone

from playwright.sync_api import expect

from tests.browser.conftest import shot, sign_in_admin, wait_for_mode

DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def _fill_every_day(page, start: str, end: str) -> None:  # type: ignore[no-untyped-def]
    for day in DAYS:
        page.get_by_label(f"{day} opens").first.fill(start)
        page.get_by_label(f"{day} closes").first.fill(end)


def test_editing_the_schedule_updates_the_preview_and_the_live_widget(deskbell_service, host_site, new_page):
    svc = deskbell_service
    w = svc.widget("Hours shop")
    svc.agent("Dana", "dana.hours@example.com", w["id"], on_duty=True, stay_available=True)
    visitor = new_page()
    visitor.goto(host_site.page("hours", w["key"], svc))
    wait_for_mode(visitor, "live")

    admin = new_page(viewport={"width": 1280, "height": 860})
    sign_in_admin(admin, svc)
    shot(admin, "dashboard-overview")
    admin.goto(f"{svc.base}/admin/widgets/{w['id']}/schedule")
    preview_now = admin.locator("#preview td[data-now]")
    expect(preview_now).to_have_attribute("data-state", "online")

    # Open one hour a day, two hours from now: closed now, the preview says so before saving.
    hour = (datetime.now(timezone.utc).hour + 2) % 24
    start, end = f"{hour:02d}:00", f"{hour + 1:02d}:00" if hour < 23 else "24:00"
    admin.get_by_label("No schedule").uncheck()
    admin.get_by_label("Time zone").select_option("UTC")
    _fill_every_day(admin, start, end)
    expect(preview_now).to_have_attribute("data-state", "closed")
    opens_at = admin.locator("#preview tbody tr").nth(0 if hour >= 2 else 1).locator("td").nth(hour)
    expect(opens_at).to_have_attribute("data-state", "online")
    expect(admin.locator("#preview-next")).to_contain_text(start)
    assert widget_mode(visitor) == "live"  # nothing saved yet

    admin.get_by_role("button", name="Save hours").click()
    expect(admin.locator(".notice")).to_contain_text("Saved")
    shot(admin, "dashboard-schedule", docs=True)
    wait_for_mode(visitor, "form")
    visitor.locator("deskbell-widget .launch").click()
    back = visitor.locator("deskbell-widget .back")
    expect(back).to_contain_text("(your time)")
    expect(back).to_contain_text(start)  # the test browser runs in UTC, like the schedule

    # A typo is named by day, and the preview says it cannot follow.
    admin.get_by_label("Monday opens").first.fill("9")
    expect(admin.locator(".preview-error")).to_contain_text("Monday, range 1")

    # Open around the clock: the preview turns online and so does the widget.
    _fill_every_day(admin, "00:00", "24:00")
    expect(preview_now).to_have_attribute("data-state", "online")
    admin.get_by_role("button", name="Save hours").click()
    wait_for_mode(visitor, "live")
    expect(visitor.locator("deskbell-widget .back")).to_be_hidden()


def widget_mode(page) -> str:  # type: ignore[no-untyped-def]
    return page.evaluate("() => window.deskbell.state().mode")


def test_the_widget_settings_page_with_presets_and_the_embed_snippet(deskbell_service, new_page):
    svc = deskbell_service
    w = svc.widget("Settings shop")
    admin = new_page(viewport={"width": 1280, "height": 900})
    sign_in_admin(admin, svc)
    admin.goto(f"{svc.base}/admin/widgets/{w['id']}")
    admin.get_by_label("Start from").select_option("support")
    admin.get_by_role("button", name="Use these texts").click()
    expect(admin.get_by_label("Button when online")).to_have_value("Questions? We're online")
    admin.get_by_label("Brand colour", exact=True).fill("#0f766e")
    expect(admin.locator("#contrast-note")).to_contain_text("Meets WCAG AA")
    admin.get_by_role("button", name="Save").click()
    expect(admin.locator(".notice")).to_contain_text("Saved")
    expect(admin.locator("#embed")).to_contain_text(f'data-widget="{w["key"]}"')
    shot(admin, "dashboard-widget", docs=True, full_page=False)
    stored = svc.api("GET", f"/api/v1/widgets/{w['id']}")
    assert stored["online_tab_text"] == "Questions? We're online" and stored["colors"]["primary"] == "#0f766e"
