"""The web view in Debian's Chromium (Playwright, headless), against a real API and worker.

Screenshots of every page go to test-artifacts/web/.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx

from judgeserve import read

from ..conftest import wait_for
from .conftest import (
    LOOP_TEXT,
    LOSS_STEPS,
    RUN,
    STEPS,
    XSS,
    XSS_ID,
    Stack,
    add_alert,
    scored,
    screenshot,
    seed_run,
)


def _sample_url(url: str, run: str, sid: str) -> str:
    return f"{url}/runs/{run}/samples/{quote(sid, safe='')}"


def _not_pwned(page: Any) -> None:
    assert page.evaluate("typeof window.__pwned") == "undefined", "an injected script ran"


def test_every_page_loads(stack: Stack, seeded: dict[str, Any], page: Any) -> None:
    pages = {
        "runs": f"{stack.url}/",
        "run": f"{stack.url}/runs/{RUN}",
        "step": f"{stack.url}/runs/{RUN}/steps/30",
        "sample": _sample_url(stack.url, RUN, seeded["loop_id"]),
        "alerts": f"{stack.url}/alerts",
        "rubrics": f"{stack.url}/rubrics",
    }
    for name, url in pages.items():
        response = page.goto(url)
        assert response is not None and response.status == 200, (name, response and response.status)
        assert "judgeserve" in page.title()
        if name == "run":
            page.wait_for_selector("#charts[data-rendered] canvas")
        page.wait_for_selector("#live-status.on")
        _not_pwned(page)
        screenshot(page, name)
    # The runs list: the run, its last step, its open critical alert and a sparkline.
    page.goto(pages["runs"])
    row = page.locator(f'tr[data-run="{RUN}"]')
    assert row.locator(".last-step").inner_text() == "30"
    assert "critical" in row.inner_text()
    assert row.locator("svg.spark polyline, svg.spark circle").count() == 1


def test_charts_draw_one_point_per_step(stack: Stack, seeded: dict[str, Any], page: Any) -> None:
    page.goto(f"{stack.url}/runs/{RUN}")
    page.wait_for_selector("#charts[data-rendered] canvas")
    charts = page.evaluate(
        """() => Object.fromEntries(Object.entries(window.judgeserveCharts).map(([k, u]) => [k, {
            points: Number(u.root.parentElement.dataset.points),
            series: u.series.map(s => s.label),
            nonNull: u.data.slice(1).map(col => col.filter(v => v !== null).length),
            x: u.data[0].length,
        }]))"""
    )
    assert {"train", "length", "testloop", "judge.helpfulness"} <= set(charts)
    # Every detector family has one point per scored step, CI bands, and the loss beside it.
    length = charts["length"]
    assert length["points"] == len(STEPS)
    assert length["series"][:4] == ["step", "length.tokens", "length.tokens ci low",
                                    "length.tokens ci high"]
    assert length["nonNull"][0] == len(STEPS)
    assert "train.loss" in length["series"]
    assert length["nonNull"][-1] == len(LOSS_STEPS)
    assert length["x"] == len(set(STEPS) | set(LOSS_STEPS))
    assert charts["judge.helpfulness"]["points"] == 1
    assert charts["train"]["points"] == len(LOSS_STEPS)
    # The canvas has pixels drawn on it, not only a blank frame.
    drawn = page.evaluate(
        """() => { const c = document.querySelector('[data-family="length"] canvas');
                   const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                   let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i]) n++; return n; }"""
    )
    assert drawn > 1000
    # The alert marker sits at its step: the chart knows it.
    assert page.evaluate("() => document.querySelectorAll('#charts .chart').length") == len(charts)


def test_click_flagged_sample_shows_its_span(stack: Stack, seeded: dict[str, Any], page: Any) -> None:
    page.goto(f"{stack.url}/runs/{RUN}/steps/30")
    page.check("input[name=flagged]")
    page.click("form.filters button[type=submit]")
    page.wait_for_url("**flagged=1**")
    rows = page.locator("tr.flagged")
    assert rows.count() >= 1
    assert page.locator(f'tr[data-sample="{seeded["loop_id"]}"]').count() == 1
    page.locator(f'tr[data-sample="{seeded["loop_id"]}"] a.sample-link').click()
    page.wait_for_url(f"**/samples/{seeded['loop_id']}")
    marks = page.locator("#completion mark.hl-testloop")
    assert "".join(marks.all_inner_texts()) == LOOP_TEXT
    # The judge's distribution and rationale, the diff against step 20 of the same probe.
    assert page.locator("#judge meter").count() == 5
    assert "Clear, but <b>repeats</b> itself." in page.locator("#judge .rationale").inner_text()
    assert page.locator("#diff ins").count() >= 1 and page.locator("#diff del").count() >= 1
    screenshot(page, "sample-flagged")


def test_user_strings_are_text(stack: Stack, seeded: dict[str, Any], page: Any) -> None:
    page.goto(_sample_url(stack.url, RUN, XSS_ID))
    assert page.locator("h1.sample-id").inner_text() == XSS_ID
    assert XSS in page.locator("#completion").inner_text()
    assert page.locator("#completion img, #completion script").count() == 0
    assert "<i>tagged</i>" in page.locator(".tag").inner_text()
    page.goto(f"{stack.url}/runs/{RUN}/steps/30?sort=testloop.words")
    assert page.locator("svg, img").count() == 0
    page.goto(f"{stack.url}/alerts")
    assert "<i>(was 0%)</i>" in page.locator("table.alerts").inner_text()
    page.wait_for_timeout(300)  # an onerror handler would have fired by now
    _not_pwned(page)


def test_new_step_and_alert_appear_live(stack: Stack, seeded: dict[str, Any], page: Any) -> None:
    run = "web-live"
    seed_run(stack.url, run, steps=(100,), probes=3)
    wait_for(lambda: scored(stack.store, run, 100, 3), timeout=60)
    page.goto(f"{stack.url}/runs/{run}")
    page.wait_for_selector("#charts[data-rendered] canvas")
    page.wait_for_selector("#live-status.on")
    page.evaluate("() => { window.__samePage = true; }")
    assert page.locator('[data-family="length"]').get_attribute("data-points") == "1"

    seed_run(stack.url, run, steps=(200,), probes=3)  # a trainer goes on while we watch
    page.wait_for_selector('tr[data-step="200"]', timeout=30_000)
    page.wait_for_function(
        "() => document.querySelector('[data-family=\"length\"]').dataset.points === '2'",
        timeout=30_000,
    )
    assert page.locator("#run-summary .last-step").inner_text() == "200"

    add_alert(stack.store, run, 200, "web.live_rule", ["s200-p1"], severity="warning")
    page.locator(".toast", has_text="web.live_rule").wait_for(timeout=30_000)
    page.wait_for_function("() => document.querySelector('#run-summary').innerText.includes('web.live_rule')")
    assert page.evaluate("() => window.__samePage") is True, "the page reloaded"
    screenshot(page, "run-live")


def test_resolve_from_the_alerts_page(stack: Stack, seeded: dict[str, Any], page: Any) -> None:
    alert_id = add_alert(stack.store, RUN, 20, "web.to_resolve", ["s20-p0"], severity="info")
    page.goto(f"{stack.url}/alerts")
    row = page.locator(f'tr[data-alert="{alert_id}"]')
    row.locator("a.evidence-link").first.wait_for()
    assert row.locator("a.evidence-link").first.get_attribute("href") == f"/runs/{RUN}/samples/s20-p0"
    row.locator("form.resolve button").click()
    page.wait_for_function(
        f"() => !document.querySelector('tr[data-alert=\"{alert_id}\"]')"
        f" || document.querySelector('tr[data-alert=\"{alert_id}\"]').className === 'state-resolved'"
    )
    states = {a.id: a.state for a in read.list_alerts(stack.store, RUN, None, 100, 0)}
    assert states[alert_id] == "resolved"
    page.goto(f"{stack.url}/alerts?state=resolved")
    assert page.locator(f'tr[data-alert="{alert_id}"]').count() == 1
    with httpx.Client(base_url=stack.url) as http:  # the API agrees
        listed = http.get(f"/v1/runs/{RUN}/alerts", params={"state": "resolved"}).json()["alerts"]
    assert alert_id in [a["id"] for a in listed]
