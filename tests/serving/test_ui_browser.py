"""The web UI in a real headless Chromium (Debian's chromium and chromium-driver,
installed by scripts/browser.sh), driven by selenium, over ``szal serve`` and a
real ``szal run`` in progress.

Covers: the run page renders the workflow's DAG (one node per step, edges
for dependencies), a step's node changes phase on the page while the run
progresses without the page reloading (updates from the SSE stream), a
condition-skipped step shows its reason, a clicked step shows its attempts
and its logs, and the runs list shows the run with its phase and filters by
phase. Screenshots go to ``$SZAL_TEST_ARTIFACTS/ui`` (default:
``test-artifacts/ui`` in the repository). Does not cover the API itself
(test_rest.py, test_streams.py) or auth (e2e/test_live_api.py).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from tests.local.conftest import REPO
from tests.serving.test_serve_cmd import start_serve

ARTIFACTS = Path(os.environ.get("SZAL_TEST_ARTIFACTS", REPO / "test-artifacts")) / "ui"

WORKFLOW = """
apiVersion: szal.dev/v1alpha1
kind: Workflow
metadata: {name: ui-demo}
spec:
  mode: Dag
  steps:
  - name: fetch
    script: 'echo "fetched 3 files"; sleep 2'
  - name: build
    dependsOn: [fetch]
    script: 'echo building; sleep 3; echo built'
  - name: test
    dependsOn: [fetch]
    script: 'echo testing; sleep 2'
  - name: publish
    dependsOn: [build, test]
    script: 'echo publishing; sleep 1'
  - name: announce
    dependsOn: [publish]
    when: "params.channel == 'public'"
    script: echo announced
  params:
  - {name: channel, default: internal}
"""


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not driver:
        pytest.fail("chromium and chromedriver are not installed: run scripts/browser.sh")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1400,1000",
    ):
        options.add_argument(flag)
    chrome = webdriver.Chrome(service=Service(executable_path=driver), options=options)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    try:
        yield chrome
    finally:
        chrome.quit()


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[str, Path]]:
    db = tmp_path / "history.db"
    process, url = await start_serve(db)
    try:
        yield url, db
    finally:
        process.terminate()
        await process.wait()


async def until(check: Callable[[], Any], what: str, within: float = 20.0) -> Any:
    deadline = time.monotonic() + within
    while True:
        value = await asyncio.to_thread(check)
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


def node_phases(chrome: webdriver.Chrome) -> dict[str, str]:
    """{step: phase} as the DAG shows it (read in one script: the SVG is redrawn live)."""
    phases: dict[str, str] = chrome.execute_script(
        "const out = {}; for (const n of document.querySelectorAll('svg#dag g.node'))"
        " out[n.dataset.step] = n.dataset.phase; return out;"
    )
    return phases


def click_step(chrome: webdriver.Chrome, step: str) -> None:
    """Click a DAG node, again if a live redraw replaced it under the click."""
    for _ in range(20):
        try:
            chrome.find_element(By.CSS_SELECTOR, f'svg#dag g.node[data-step="{step}"]').click()
            return
        except StaleElementReferenceException:
            time.sleep(0.05)
    raise AssertionError(f"could not click step {step}")


async def test_live_dag_step_details_and_runs_list(
    browser: webdriver.Chrome, served: tuple[str, Path], tmp_path: Path
) -> None:
    url, db = served
    chrome = browser
    workflow = tmp_path / "ui-demo.yaml"
    workflow.write_text(WORKFLOW)
    run = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "szal",
        "run",
        "--db",
        str(db),
        str(workflow),
        stdout=asyncio.subprocess.DEVNULL,
    )
    try:
        async with aiohttp.ClientSession() as http:

            async def first_run() -> dict[str, Any] | None:
                async with http.get(url + "/api/v1/workflowruns") as response:
                    items = (await response.json())["items"]
                return items[0] if items else None

            deadline = time.monotonic() + 20
            while (found := await first_run()) is None:
                assert time.monotonic() < deadline, "the run never showed up"
                await asyncio.sleep(0.05)
        page = f"{url}/ui/runs/{found['namespace']}/{found['name']}"
        await asyncio.to_thread(chrome.get, page)
        await until(lambda: len(node_phases(chrome)) == 5, "the DAG's five nodes")
        chrome.execute_script("window.szalMarker = 42")
        assert len(chrome.find_elements(By.CSS_SELECTOR, "svg#dag path.edge")) == 5
        early = node_phases(chrome)
        assert early["publish"] == "Pending", early
        await until(lambda: node_phases(chrome)["build"] == "Running", "build Running on the page")
        chrome.save_screenshot(str(ARTIFACTS / "run-running.png"))
        await until(lambda: node_phases(chrome)["publish"] == "Succeeded", "publish Succeeded", 30)
        await until(lambda: node_phases(chrome)["announce"] == "Skipped", "announce Skipped")
        await until(lambda: chrome.find_element(By.ID, "live").text == "ended", "the stream's end")
        assert chrome.execute_script("return window.szalMarker") == 42, "the page reloaded"
        assert set(node_phases(chrome).values()) == {"Succeeded", "Skipped"}

        click_step(chrome, "build")
        await until(lambda: "built" in chrome.find_element(By.ID, "logs").text, "build's logs")
        rows = chrome.find_elements(By.CSS_SELECTOR, "#attempts tbody tr")
        assert len(rows) == 1 and "Succeeded" in rows[0].text
        chrome.save_screenshot(str(ARTIFACTS / "run-finished-step.png"))
        click_step(chrome, "announce")
        await until(
            lambda: "condition" in chrome.find_element(By.ID, "step-note").text.lower(),
            "announce's skip reason",
        )

        await asyncio.to_thread(chrome.get, url + "/ui/")
        await until(
            lambda: chrome.find_elements(By.CSS_SELECTOR, "#runs tbody tr"), "the runs list"
        )
        row = chrome.find_element(By.CSS_SELECTOR, "#runs tbody tr")
        assert found["name"] in row.text and "Succeeded" in row.text
        chrome.save_screenshot(str(ARTIFACTS / "runs.png"))
        await asyncio.to_thread(chrome.get, url + "/ui/?phase=Failed")
        await until(lambda: chrome.find_element(By.ID, "older") is not None, "the filtered list")
        await asyncio.sleep(0.5)
        assert chrome.find_elements(By.CSS_SELECTOR, "#runs tbody tr") == []
        assert await run.wait() == 0
    finally:
        if run.returncode is None:
            run.terminate()
            await run.wait()
