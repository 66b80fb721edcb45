"""The index page in a real headless Chromium (Debian's) shows live, decoded video."""

from __future__ import annotations

from pathlib import Path

from conftest import ROOT, app_env, read_parts, wait_for

SCREENSHOTS = ROOT / "artifacts" / "screenshots"


def test_index_page_shows_live_video_in_chromium(kafka, camera, topic, start_app, browser_page) -> None:
    env = app_env(kafka.bootstrap, topic)
    start_app("producer.py", env, "--source", camera.url, "--camera-id", "door")
    consumer = start_app("consumer.py", env)
    assert wait_for(lambda: len(read_parts(f"{consumer.url}/video_feed", 1, 5)) == 1, 30)

    page = browser_page
    page.goto(f"{consumer.url}/", wait_until="commit")
    page.wait_for_function("() => { const i = document.querySelector('.tile img'); return i && i.naturalWidth > 0 }",
                           timeout=20000)
    assert page.eval_on_selector(".tile img", "i => [i.naturalWidth, i.naturalHeight]") == [640, 360]
    assert page.inner_text(".tile .name") == "door"
    # Between frames the tile keeps the last picture: sampled on every animation frame for 2 s
    # (~60 new JPEGs), the shown image never reports an unloaded 0x0 size.
    sizes = page.evaluate("""() => new Promise(done => {
        const seen = [], end = performance.now() + 2000;
        const sample = () => {
            const i = document.querySelector('.tile img');
            seen.push(i.naturalWidth + 'x' + i.naturalHeight);
            if (performance.now() < end) requestAnimationFrame(sample); else done(seen);
        };
        requestAnimationFrame(sample);
    })""")
    assert len(sizes) > 30 and set(sizes) == {"640x360"}
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    img = page.locator(".tile img")
    first = img.screenshot(path=str(SCREENSHOTS / "video-1.png"))
    assert wait_for(lambda: img.screenshot(path=str(SCREENSHOTS / "video-2.png")) != first, 10, 0), \
        "the picture did not change within 10 s: the video is not live"
    page.screenshot(path=str(SCREENSHOTS / "index.png"))
    assert Path(SCREENSHOTS / "index.png").stat().st_size > 0


def test_index_shows_a_tile_per_camera_with_stats_and_no_signal(kafka, camera, topic, start_app,
                                                                browser_page) -> None:
    env = app_env(kafka.bootstrap, topic, CAMERA_STALE_S="2")
    producers = {name: start_app("producer.py", env, "--source", camera.url, "--camera-id", name, *size)
                 for name, size in (("front-door", []), ("garage", ["--width", "320"]),
                                    ("backyard", ["--width", "480"]))}
    consumer = start_app("consumer.py", env)
    page = browser_page
    page.goto(f"{consumer.url}/", wait_until="commit")
    page.wait_for_function("() => [...document.querySelectorAll('.tile img')].filter(i => i.naturalWidth > 0)"
                           ".length === 3", timeout=60000)
    page.wait_for_function("() => [...document.querySelectorAll('.tile .stats')].every(s => / fps /.test("
                           "s.textContent) && !/ 0\\.0 fps/.test(s.textContent))", timeout=30000)
    tiles = {t["name"]: t for t in page.eval_on_selector_all(".tile", """tiles => tiles.map(t => ({
        name: t.querySelector('.name').textContent, stats: t.querySelector('.stats').textContent,
        nosignal: t.classList.contains('nosignal'), width: t.querySelector('img').naturalWidth}))""")}
    assert set(tiles) == {"front-door", "garage", "backyard"}
    assert tiles["front-door"]["stats"].startswith("640x360") and tiles["front-door"]["width"] == 640
    assert tiles["garage"]["stats"].startswith("320x180") and tiles["garage"]["width"] == 320
    assert tiles["backyard"]["stats"].startswith("480x270")
    assert not any(t["nosignal"] for t in tiles.values())
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "index-three-cameras.png"), full_page=True)

    producers["garage"].stop()
    page.wait_for_selector('.tile.nosignal[data-camera="garage"]', timeout=15000)
    assert page.locator(".tile.nosignal").count() == 1
    assert "no signal" in page.inner_text('[data-camera="garage"] .info')
    page.screenshot(path=str(SCREENSHOTS / "index-no-signal.png"))
