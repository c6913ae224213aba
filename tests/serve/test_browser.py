"""The web page in a real browser: Debian's chromium driven by Playwright (no browser download), its fake
microphone fed from a wav. The page records, the server answers, the text appears and the audio plays; a second,
typed turn continues the conversation."""

from __future__ import annotations

import shutil
import time

import pytest

from tests.serve.conftest import API_KEY, Served, api_key_env, serve_cfg

CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (make install)")


@pytest.fixture(scope="module")
def page_server(artefacts):
    from vita_audio.cli.serve import build_app

    cfg = serve_cfg(artefacts, ["server.max_tokens=120", "server.slots=1"])
    with api_key_env():
        app = build_app(cfg)
    with Served(app) as s:
        yield s


def test_record_send_stream_and_play(page_server, artefacts):
    from playwright.sync_api import sync_playwright

    args = ["--no-sandbox", "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={artefacts['wav']}", "--autoplay-policy=no-user-gesture-required"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=args, timeout=60_000)
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(page_server.url + "/", timeout=30_000)
            page.wait_for_function("() => window.vita && !document.getElementById('keybox').hidden", timeout=15_000)
            page.fill("#key", API_KEY)
            page.dispatch_event("#key", "change")
            page.select_option("#mode", "boost")

            page.click("#record")
            page.wait_for_function("() => window.vita.recording", timeout=15_000)
            time.sleep(1.5)  # 1.5 s of the fake microphone
            page.click("#record")
            page.wait_for_function("() => window.vita.answers.length === 1 && (window.vita.answers[0].done "
                                   "|| window.vita.answers[0].error)", timeout=60_000)
            answer = page.evaluate("() => window.vita.answers[0]")
            assert answer["error"] is None, answer["error"]
            assert page.evaluate("() => window.vita.recordedSeconds") > 1.0
            assert answer["text"] and answer["chunks"] > 1 and answer["firstAudioMs"] > 0
            shown = page.inner_text("#log")
            assert answer["text"].strip()[:10] in shown and "first audio after" in shown
            # the audio plays: chunks were scheduled on a running AudioContext and at least one finished playing
            page.wait_for_function("() => window.vita.playedSeconds > 0", timeout=30_000)
            assert page.evaluate("() => window.vita.audioState") == "running"

            page.fill("#text", "And then?")  # a second turn: the conversation goes on
            page.press("#text", "Enter")
            page.wait_for_function("() => window.vita.answers.length === 2 && (window.vita.answers[1].done "
                                   "|| window.vita.answers[1].error)", timeout=60_000)
            second = page.evaluate("() => window.vita.answers[1]")
            assert second["error"] is None and second["text"]
            # the whole conversation went back to the server: the first question's audio, the answer, the text
            assert second["usage"]["prompt_tokens"] > answer["usage"]["prompt_tokens"] + 20
            assert answer["stats"]["mode"] == "boost" and answer["stats"]["first_audio_forwards"] >= 1
            assert page.locator(".turn.assistant").count() == 2 and page.locator(".turn.user").count() == 2
            assert not errors, errors
        finally:
            browser.close()
