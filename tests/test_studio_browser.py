"""The Studio page in headless Chromium (Debian's /usr/bin/chromium, driven by Playwright)
against the Serve app on 127.0.0.1: plan, edit a scene, render, watch the progress reach
100 %, play the video, open the report. Screenshots go to tests/artifacts/."""

from __future__ import annotations

import json
import re
import shutil
import socket
import time
from pathlib import Path

import pytest

from longvid.review import REPORT_HTML
from longvid.runtime import LocalRunStore

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).parent / "artifacts"
TOKEN = "studio-test-token-8d1f0c2b7a"

# No skip when Chromium is missing: these are the studio's acceptance tests, and the README's
# test command installs Debian's chromium first.
pytestmark = pytest.mark.ray


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def studio(ray_session, tmp_path_factory):
    """(base URL, token, store) of the real Serve app on 127.0.0.1, studio included."""
    from ray import serve

    from serve.app import build_app

    store = tmp_path_factory.mktemp("studio") / "runs"
    # Replicas read their settings from their own environment: give it to them (tests only).
    env = {"LONGVID_API_TOKENS": TOKEN, "LONGVID_LINK_SECRET": "studio-test-link-secret", "LONGVID_PLANNER": "offline",
           "LONGVID_STORE": str(store)}
    port = _free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    try:
        serve.run(build_app({"store": str(store)}, runtime_env={"env_vars": env}, num_cpus=0.05), name="longvid-studio",
                  route_prefix="/")
        yield f"http://127.0.0.1:{port}", TOKEN, LocalRunStore(store)
    finally:
        serve.shutdown()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    if shutil.which(CHROMIUM) is None:
        pytest.fail(f"Debian's chromium is not at {CHROMIUM}: run `apt-get install -y chromium` (see the README's Test section)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.console_errors = errors
    yield page
    context.close()


def _wait_until(page, expression: str, timeout_s: float) -> None:
    """Poll `expression` in the page (page.wait_for_function evaluates strings, which the
    studio's Content-Security-Policy forbids; page.evaluate goes through the debugger)."""
    deadline = time.monotonic() + timeout_s
    while not page.evaluate(expression):
        assert time.monotonic() < deadline, f"not true after {timeout_s} s: {expression}"
        page.wait_for_timeout(100)


def _shot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"studio_{name}.png"), full_page=True)


def test_plan_edit_render_watch_play_and_open_the_report(studio, page):
    from playwright.sync_api import expect

    base, token, store = studio
    page.goto(f"{base}/studio/")
    expect(page.get_by_role("heading", name="New video")).to_be_visible()
    page.get_by_label("API token").fill(token)
    page.get_by_role("button", name="Save token").click()
    expect(page.locator("#token-state")).to_have_text("token saved for this tab")

    page.get_by_label("Prompt").fill("a lighthouse keeper's cat watches the ships at dusk")
    page.get_by_label("Duration (seconds)").fill("12")
    page.get_by_label("Resolution").select_option("360p")
    page.get_by_label("Continuity").select_option("anchor")
    page.get_by_role("button", name="Plan", exact=True).click()

    scene_one = page.get_by_label("Scene 1", exact=True)
    expect(scene_one).to_be_visible()
    edited = "A ginger cat on the lighthouse gallery, wind in its fur <b>not bold</b>"
    scene_one.fill(edited)
    page.get_by_label("Narration, scene 1", exact=True).fill("The cat keeps watch.")
    _shot(page, "1_plan_edited")

    # Record every value the progress readout takes, to see it move while the render runs.
    page.evaluate("""() => {
        const readout = document.getElementById('run-percent');
        window.seenPercents = [];
        new MutationObserver(() => window.seenPercents.push(readout.textContent))
            .observe(readout, {childList: true, characterData: true, subtree: true});
    }""")
    page.get_by_role("button", name="Render this storyboard").click()
    progress = page.get_by_label("Progress")
    expect(page.locator("#run-status")).to_have_text(re.compile("queued|rendering|merging|done"))
    expect(page.locator("#run-percent")).to_have_text("100%", timeout=120_000)
    expect(progress).to_have_attribute("value", "100")
    expect(page.locator("#run-status")).to_have_text("done", timeout=60_000)
    seen = [int(text.rstrip("%")) for text in page.evaluate("window.seenPercents")]
    print("progress seen:", seen)
    assert seen == sorted(seen) and seen[-1] == 100
    assert any(0 < value < 100 for value in seen), seen  # live updates, not just the final state
    # The edited scene was rendered: the segments table shows scene 0 and the run's report has the text.
    video = page.get_by_label("The finished video")
    expect(video).to_be_visible()
    _wait_until(page, "document.getElementById('video').readyState >= 1", 30)
    duration = page.evaluate("document.getElementById('video').duration")
    assert abs(duration - 12.0) < 0.1
    page.evaluate("document.getElementById('video').muted = true")
    page.evaluate("document.getElementById('video').play()")
    _wait_until(page, "document.getElementById('video').currentTime > 0.5", 20)
    _shot(page, "2_done_playing")

    run_id = page.locator("#run-title").inner_text().removeprefix("Render ")
    assert store.open(run_id).exists(REPORT_HTML)  # the pipeline wrote the review before "done"
    narration = json.loads(store.open(run_id).read_bytes("plan.json"))["narration"]  # the edited words were spoken
    assert [p["text"] for p in narration["phrases"] if p["scene"] == 0] == ["The cat keeps watch."]
    with page.context.expect_page() as opened:
        page.get_by_role("link", name="Open report").click()
    report = opened.value
    report.wait_for_load_state()
    expect(report.get_by_role("heading", name="Storyboard")).to_be_visible()
    expect(report.get_by_role("cell", name=edited, exact=True)).to_be_visible()  # escaped, shown as typed
    assert report.locator("b").count() == 0
    # The report's video plays from the signed link the API put in it.
    _wait_until(report, "document.querySelector('video').readyState >= 1", 30)
    assert abs(report.evaluate("document.querySelector('video').duration") - 12.0) < 0.1
    report.screenshot(path=str(ARTIFACTS / "studio_3_report.png"), full_page=True)

    # The render is listed among past renders.
    page.get_by_role("button", name="Refresh list").click()
    expect(page.locator(f'.run-entry[data-id="{run_id}"]')).to_be_visible()
    assert not page.console_errors, page.console_errors


def _open_studio(page, base: str, token: str) -> None:
    page.goto(f"{base}/studio/")
    page.get_by_label("API token").fill(token)
    page.get_by_role("button", name="Save token").click()


def test_a_wrong_token_is_explained_and_the_token_lives_only_in_this_tab(studio, page):
    from playwright.sync_api import expect

    base, token, _ = studio
    page.goto(f"{base}/studio/")
    expect(page.locator("#runs")).to_have_text("Enter your API token to see renders.")
    _open_studio(page, base, "not-the-token")
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("not valid")
    expect(alert).to_contain_text("Enter a valid API token above")
    expect(page.get_by_label("API token")).to_be_focused()
    _shot(page, "4_wrong_token")
    assert page.evaluate("localStorage.length") == 0  # never persisted beyond the tab
    _open_studio(page, base, token)
    expect(alert).to_be_hidden()
    page.reload()
    expect(page.get_by_label("API token")).to_have_value(token)  # sessionStorage survives a reload


def _png(colour: tuple[int, int, int]) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (64, 36), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def test_reference_images_are_checked_then_sent_as_base64(studio, page):
    from playwright.sync_api import expect

    base, token, _ = studio
    _open_studio(page, base, token)
    page.get_by_label("Prompt").fill("a paper boat drifts down a rainy street")
    page.get_by_label("Duration (seconds)").fill("10")
    images = page.get_by_label(re.compile("^Reference images"))
    files = [{"name": f"ref{i}.png", "mimeType": "image/png", "buffer": _png((40 * i, 90, 160))} for i in range(5)]
    images.set_input_files(files)
    expect(page.get_by_role("alert")).to_have_text("Choose at most 4 reference images (you chose 5).")
    page.get_by_role("button", name="Plan", exact=True).click()
    expect(page.get_by_role("alert")).to_have_text("Choose at most 4 reference images (you chose 5).")
    # A text file named like an image is refused by the server, which decodes what it gets.
    images.set_input_files([files[0], {"name": "fake.png", "mimeType": "image/png", "buffer": b"not an image at all"}])
    expect(page.get_by_role("list", name="Chosen reference images").get_by_role("listitem")).to_have_count(2)
    page.get_by_role("button", name="Plan", exact=True).click()
    expect(page.get_by_role("alert")).to_contain_text("image")
    images.set_input_files(files[:2])
    page.get_by_role("button", name="Plan", exact=True).click()
    expect(page.get_by_label("Scene 1", exact=True)).to_be_visible()
    expect(page.get_by_role("alert")).to_be_hidden()


def test_cancel_then_resume_a_render_and_reopen_it_from_the_list(studio, page):
    from playwright.sync_api import expect

    base, token, _ = studio
    _open_studio(page, base, token)
    page.get_by_label("Prompt").fill("a slow train crosses a long bridge at night")
    page.get_by_label("Duration (seconds)").fill("40")
    page.get_by_label("Resolution").select_option("360p")
    page.get_by_label("Continuity").select_option("chain")  # one segment after another: time to cancel
    page.get_by_role("button", name="Render without editing").click()
    status = page.locator("#run-status")
    expect(page.get_by_role("button", name="Cancel render")).to_be_visible()
    page.get_by_role("button", name="Cancel render").click()
    expect(status).to_have_text("cancelled", timeout=60_000)
    expect(page.get_by_role("button", name="Cancel render")).to_be_hidden()
    expect(page.get_by_label("The finished video")).to_be_hidden()
    expect(page.get_by_role("link", name="Open report")).to_be_hidden()
    run_id = page.locator("#run-title").inner_text().removeprefix("Render ")
    _shot(page, "5_cancelled")

    # Open another view and come back to the run through the list of past renders.
    page.reload()
    page.locator(f'.run-entry[data-id="{run_id}"]').click()
    expect(status).to_have_text("cancelled")
    page.get_by_role("button", name="Resume render").click()
    expect(page.locator("#run-percent")).to_have_text("100%", timeout=120_000)
    expect(status).to_have_text("done", timeout=60_000)
    expect(page.get_by_label("The finished video")).to_be_visible()
    _wait_until(page, "document.getElementById('video').readyState >= 1", 30)
    assert abs(page.evaluate("document.getElementById('video').duration") - 40.0) < 0.1
    assert not page.console_errors, page.console_errors


def test_every_control_has_an_accessible_name_and_the_page_fits_1280x800(studio, page):
    base, _, _ = studio
    page.goto(f"{base}/studio/")
    unnamed = page.evaluate("""() => Array.from(document.querySelectorAll('input, select, textarea, button, progress, video'))
        .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label') && !el.textContent.trim())
        .map(el => el.outerHTML)""")
    assert unnamed == []
    # No horizontal scrolling at 1280 px, and the request form's buttons are on the first screen.
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280
    for name in ("Plan", "Render without editing"):
        box = page.get_by_role("button", name=name, exact=True).bounding_box()
        assert box is not None and box["y"] + box["height"] <= 800


def test_regenerate_a_segment_from_the_studio_then_watch_both_versions(studio, page):
    from playwright.sync_api import expect

    base, token, store = studio
    _open_studio(page, base, token)
    page.get_by_label("Prompt").fill("a red kite over a windy beach")
    page.get_by_label("Duration (seconds)").fill("6")  # the shortest video the offline planner cuts into 4 segments
    page.get_by_label("Resolution").select_option("360p")
    page.get_by_label("Continuity").select_option("anchor")
    page.get_by_role("button", name="Render without editing").click()
    status = page.locator("#run-status")
    expect(status).to_have_text("done", timeout=120_000)
    picker = page.get_by_label("Version", exact=True)
    expect(picker.locator("option")).to_have_count(1)
    segments = page.get_by_role("list", name="Segments of the current version")
    expect(segments.get_by_role("listitem")).to_have_count(4)
    _wait_until(page, "[...document.querySelectorAll('#edit-segments img')].every(i => i.complete && i.naturalWidth > 0)", 30)
    run_id = page.locator("#run-title").inner_text().removeprefix("Render ")
    _shot(page, "6_versions_before_edit")

    page.get_by_role("button", name="Regenerate segment 1").click()
    expect(picker.locator("option")).to_have_count(2, timeout=120_000)  # v2 was rendered
    expect(status).to_have_text("done")
    history = json.loads(store.open(run_id).read_bytes("history.json"))
    assert [v["version"] for v in history["versions"]] == [1, 2] and history["versions"][1]["regenerated"] == [1]
    expect(picker).to_have_value("2")

    # Play v2, then v1, in the version player; v2 shows its changed span before and after.
    for version in ("2", "1"):
        picker.select_option(version)
        _wait_until(page, f"document.getElementById('version-video').dataset.version === '{version}' && "
                          "document.getElementById('version-video').readyState >= 1", 30)
        assert abs(page.evaluate("document.getElementById('version-video').duration") - 6.0) < 0.1
        page.evaluate("document.getElementById('version-video').muted = true")
        page.evaluate("document.getElementById('version-video').play()")
        _wait_until(page, "document.getElementById('version-video').currentTime > 0.3", 20)
        page.evaluate("document.getElementById('version-video').pause()")
    expect(page.locator("#compare")).to_be_hidden()  # v1 changed nothing
    picker.select_option("2")
    expect(page.locator("#compare")).to_be_visible()
    expect(page.locator("#compare-caption")).to_contain_text("v1 (before) and v2 (after)")
    for element in ("before-video", "after-video"):
        _wait_until(page, f"document.getElementById('{element}').readyState >= 1", 30)
    page.get_by_role("button", name="Play the changed span").click()
    plan = json.loads(store.open(run_id).read_bytes("plan.json"))
    span_start_s = plan["segments"][1]["start_frame"] / 24  # where segment 1 starts (the studio renders at 24 fps)
    _wait_until(page, f"document.getElementById('after-video').currentTime > {span_start_s + 0.1}", 20)
    _shot(page, "7_versions_after_edit")
    assert not page.console_errors, page.console_errors
