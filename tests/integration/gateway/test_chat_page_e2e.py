"""The chat page in a real headless Chromium: message → answer → react → the stream worker lands it in Delta.

Chromium comes from Debian (``/usr/bin/chromium``; the Makefile installs it) and is driven by
Playwright's Python client; no browser is downloaded. The gateway runs in dev mode, so the page
gets its session from the gateway and never sees an API key.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from features.lake.reader import read_table
from rluf.settings import KafkaSettings
from tests.integration.gateway.conftest import gateway_env, running_gateway

pytestmark = pytest.mark.integration

CHROMIUM = os.environ.get("RLUF_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
MS_PER_CHAR, MIN_READ_S = 8.0, 0.3  # the stream worker's too_fast filter defaults (filters.ms_per_char, min_read_ms)


def read_like_a_human(text: str) -> None:
    """Wait as long as the stream's too_fast filter expects a reader to need, plus a margin."""
    time.sleep(max(MIN_READ_S, MS_PER_CHAR * len(text) / 1000) + 0.3)


def test_browser_reaction_lands_as_a_triple(kafka_settings: KafkaSettings, tmp_path: Path, tiny_policy: Path):
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"no Chromium at {CHROMIUM}; run `make setup` (apt-get install -y chromium) or set "
                    "RLUF_TEST_CHROMIUM")
    from playwright.sync_api import expect, sync_playwright

    env = gateway_env(kafka_settings, tmp_path, tiny_policy, dev=True, gateway__max_new_tokens=6)
    profile = tmp_path / "chromium-profile"
    profile.mkdir()
    with running_gateway(env, tmp_path / "gateway.log", dev=True) as base, sync_playwright() as pw:
        browser = pw.chromium.launch_persistent_context(str(profile), executable_path=CHROMIUM, headless=True,
                                                        args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(base)
            assert "Bearer" not in page.content()
            page.fill("#user-id", "ada")
            page.click("#login-button")
            expect(page.locator("#who")).to_have_text("ada")

            answers = []
            for i, question in enumerate(["hello what is the weather", "thanks explain python"]):
                page.fill("#message", question)
                page.keyboard.press("Enter")
                turn = page.locator("li.assistant").nth(i)
                expect(turn).to_have_attribute("data-response-id", re.compile(r"^[0-9a-f]{32}$"))
                answers.append((turn.get_attribute("data-response-id"), turn.locator(".text").inner_text()))
                read_like_a_human(answers[-1][1])
                love = turn.locator('[data-reaction="love"]')
                love.click()
                expect(love).to_have_attribute("aria-pressed", "true")
            second = page.locator("li.assistant").nth(1)
            assert second.locator("[data-reaction]").count() == 8
            second.locator('[data-reaction="love"]').click()  # un-react
            expect(second.locator('[data-reaction="love"]')).to_have_attribute("aria-pressed", "false")
            second.locator('[data-reaction="laugh"]').click()
            expect(second.locator('[data-reaction="laugh"]')).to_have_attribute("aria-pressed", "true")
            assert page.locator("#status").inner_text() == ""
        finally:
            browser.close()
        shutil.rmtree(profile, ignore_errors=True)

    worker = subprocess.run([sys.executable, "-m", "rluf", "stream", "run", "--driver", "batch",
                             "--until-idle", "3", "--flush"], env=env, capture_output=True, text=True, timeout=180)
    assert worker.returncode == 0, worker.stderr[-3000:]
    triples = read_table(str(tmp_path / "lake"), "triples")
    rows = {r.response_id: r for r in triples.itertuples()}
    (loved_id, loved_text), (undone_id, undone_text) = answers
    assert set(rows) == {loved_id, undone_id}
    loved, undone = rows[loved_id], rows[undone_id]
    assert (loved.label, loved.user_id, loved.policy_version, loved.response) == (
        1, "ada", "local-tinypolicy", loved_text)
    assert (undone.label, undone.response) == (0, undone_text)
    assert dict(loved.reactions) == {"love": 1} and dict(undone.reactions) == {"laugh": 1}
    assert json.loads(loved.extra_json) == {"arm": "control", "experiment": "rollout-1"}
    assert [m["content"] for m in loved.context] == ["hello what is the weather"]
