"""Remind me, in a real browser: the page registers the service worker at the site's root, asks for
permission to notify only when "remind me" is tapped, and says what became of the reminder.

Chromium cannot subscribe to push in the contexts a test drives (they are incognito, where it has no Push
API: "Registration failed - permission denied"), so with notifications allowed the page must say
"unsupported" and keep the reminder without push; the sending path is tested against a push service of
our own in tests/sessions/test_reminders.py."""

from __future__ import annotations

from typing import Any

from playwright.sync_api import Page, expect

from .conftest import WAIT_MS, Site, sign_in

expect.set_options(timeout=WAIT_MS)
INCOGNITO = "does not support the Push API in incognito mode"


def service_worker(page: Page) -> list[str]:
    return list(page.evaluate("() => navigator.serviceWorker.ready.then(r => [r.scope, r.active.scriptURL])"))


def first_coming(page: Page) -> int:
    return int(page.locator(".remind-button").first.get_attribute("data-broadcast") or 0)


def test_remind_me_where_notifications_are_allowed(site: Site, contexts: Any) -> None:
    ctx = contexts("phone")
    ctx.grant_permissions(["notifications"], origin=site.url)
    page = ctx.new_page()
    page.goto(site.url + "/schedule")
    assert service_worker(page) == [site.url + "/", site.url + "/sw.js"]
    button = page.locator(".remind-button").first
    expect(button).to_have_attribute("aria-pressed", "false")
    button.click()
    status = page.locator("#remind-status")
    expect(status).to_have_attribute("data-state", "unsupported")
    expect(status).to_contain_text("알림을 받을 수 없어요")
    expect(button).to_have_attribute("aria-pressed", "true")  # kept in this browser
    broadcast_id = first_coming(page)
    page.reload()
    expect(page.locator(f".remind-button[data-broadcast='{broadcast_id}']")).to_have_attribute("aria-pressed", "true")

    # Signed in, on the broadcast's page before it opens: the reminder is kept on the account.
    sign_in(page, site.url, "joon", f"/live/{broadcast_id}?lang=en")
    remind = page.locator(".remind .remind-button")
    page.evaluate("() => window.localStorage.clear()")
    page.reload()
    expect(remind).to_have_attribute("aria-pressed", "false")
    remind.click()
    status = page.locator(".remind .remind-status")
    expect(status).to_have_attribute("data-state", "unsupported")
    expect(status).to_contain_text("also kept on your account")
    other = contexts("desk").new_page()
    sign_in(other, site.url, "joon", "/schedule")  # another browser of the same viewer
    expect(other.locator(f".remind-button[data-broadcast='{broadcast_id}']")).to_have_attribute("aria-pressed", "true")
    remind.click()  # and off again
    expect(status).to_have_attribute("data-state", "off")
    expect(remind).to_have_attribute("aria-pressed", "false")
    other.reload()
    expect(other.locator(f".remind-button[data-broadcast='{broadcast_id}']")).to_have_attribute("aria-pressed", "false")
    watch = contexts.watch
    watch.problems[:] = [p for p in watch.problems if INCOGNITO not in p]


def test_remind_me_asks_only_when_tapped_and_says_when_notifications_are_blocked(site: Site, contexts: Any) -> None:
    page = contexts("desk", locale="en-US").new_page()
    page.goto(site.url + "/schedule?lang=en")
    assert service_worker(page)[0] == site.url + "/"
    assert page.evaluate("() => Notification.permission") == "default"  # nothing asked yet
    page.locator(".remind-button").first.click()
    status = page.locator("#remind-status")
    expect(status).to_have_attribute("data-state", "denied")  # a headless browser answers no
    expect(status).to_contain_text("Notifications are blocked")
    expect(page.locator(".remind-button").first).to_have_attribute("aria-pressed", "true")
    assert page.evaluate("() => Notification.permission") == "denied"
