"""The demo page in a real browser: Debian `chromium` driven headless through Selenium + `chromium-driver`.

The site is built from two real tiny V3 runs on the toy image dataset (K = 4 and K = 6: trained,
evaluated and recombined here) plus a hand-made but format-valid spectrogram run folder with WAV
clips (so the audio checks run), and a method that exists only for one K (a missing piece).

Without chromium / chromedriver / selenium the test is skipped locally but FAILS under CI (CI=true),
so CI cannot pass by silently skipping it. The screenshot lands in test-artifacts/report.png.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
import pytest
import yaml

from conftest import TOY_CFG, toy_arrays
from varinv.data.store import from_arrays

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
DRIVER = ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
INSTALL = "apt-get install -y --no-install-recommends chromium chromium-driver; pip install -e '.[dev]'"


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def _need_browser() -> tuple[str, str]:
    """(chromium, chromedriver) paths, or skip (locally) / fail (CI) saying what is missing."""
    missing = []
    chromium = next((p for p in CHROMIUM if os.access(p, os.X_OK)), None) or shutil.which("chromium")
    driver = next((p for p in DRIVER if os.access(p, os.X_OK)), None) or shutil.which("chromedriver")
    if not chromium:
        missing.append("chromium")
    if not driver:
        missing.append("chromium-driver")
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("selenium (Python)")
    if missing:
        msg = f"browser test needs {', '.join(missing)}: {INSTALL}"
        if _in_ci():
            pytest.fail(msg)
        pytest.skip(msg)
    return chromium, driver


# -- the runs ------------------------------------------------------------------------------------


def _real_image_runs(root: Path) -> None:
    from varinv import config as config_mod
    from varinv.eval.evaluate import evaluate
    from varinv.eval.recombine import recombine
    from varinv.train.trainer import train

    x, c, s = toy_arrays(96)
    xt, ct, st = toy_arrays(24, seed=1)
    ds = from_arrays(root / "data" / "toy", {"train": (x, c, s), "test": (xt, ct, st)},
                     content_names=list("abcd"), style_names=["red", "green", "blue"])
    for k in (4, 6):
        raw = json.loads(json.dumps(TOY_CFG))
        raw["data"]["path"] = str(ds.root)
        raw["model"]["n_atoms"] = k
        run = root / "bench" / f"toy_v3_K{k}_s0"
        train(config_mod.from_dict(raw), run, progress=False, tensorboard=False)
        evaluate(run)
        recombine(run)


def _fake_audio_runs(root: Path) -> None:
    """Spectrogram dataset (real, tiny) + run folders written with the project's own writers: a V3 run
    at K = 3 with its recombination WAVs, and a second method run only at K = 5 (never recombined)."""
    from varinv.eval.plots import plot_confusion, save_latent_json
    from varinv.eval.recombine import grid_image
    from varinv.eval.recombine_audio import write_audio

    rng = np.random.default_rng(0)
    n, length, f, t = 12, 4, 32, 8
    content = np.stack([rng.permutation(3)[:3].tolist() + [int(rng.integers(3))] for _ in range(n)])
    style = np.arange(n) % 2
    x = np.full((n, length, 1, f, t), -6.0, np.float32)
    for i in range(n):
        for j in range(length):
            x[i, j, 0, 4 + 6 * content[i, j]] = 1.0 + style[i]  # one partial per pitch
            if style[i]:
                x[i, j, 0, (8 + 12 * content[i, j]) % f] = 0.5  # an overtone for the second timbre
    ds = from_arrays(root / "data" / "tones", {"train": (x, content, style), "test": (x, content, style)},
                     kind="spectrogram", content_names=["C", "E", "G"], style_names=["flute", "organ"])
    for method, k in (("v3", 3), ("cycle", 5)):
        run = root / "bench" / f"tones_{method}_K{k}_s0"
        (run / "plots").mkdir(parents=True)
        cfg = {"data": {"path": str(ds.root), "n_eval": 10, "eval_split": "test"},
               "model": {"method": method, "n_atoms": k}, "train": {"seed": 0}}
        (run / "config.yaml").write_text(yaml.safe_dump(cfg))
        counts = rng.integers(0, 5, (k, 3)) + np.eye(k, 3, dtype=int) * 20
        metrics = {"method": method, "n_atoms": k, "dataset": str(ds.root), "prauc_zc_content": 0.9,
                   "prauc_zs_style": 0.8, "prauc_zc_style": 0.2, "prauc_zs_content": 0.1, "codebook_purity": 0.7,
                   "one_to_one_accuracy": 0.6, "atoms_used": k, "recon_mse": 0.01, "confusion_counts": counts.tolist()}
        (run / "metrics.json").write_text(json.dumps(metrics))
        plot_confusion(counts, ds.content_names, run / "plots" / "confusion.svg", f"{method} K={k}")
        m = 40
        lab_c, lab_s = rng.integers(0, 3, m), rng.integers(0, 2, m)
        save_latent_json(run / "plots" / "latents.json", rng.normal(size=(m, 3)), lab_c, lab_s,
                         atoms=rng.normal(size=(k, 3)), content_names=ds.content_names, style_names=ds.style_names)
        save_latent_json(run / "plots" / "latents_zs.json", rng.normal(size=(m, 3)), lab_c, lab_s,
                         content_names=ds.content_names, style_names=ds.style_names)
        if method != "v3":
            continue  # this run was never recombined: the page must say so
        rec = run / "recombine"
        rec.mkdir()
        frags = rng.normal(-3, 1, size=(k, 2, 1, f, t)).astype(np.float32)
        for a in range(k):
            img = grid_image(frags[a:a + 1], 1.0)
            img.resize((img.width * 2, img.height * 2)).save(rec / f"atom_{a:03d}_all_styles.png")
        for si, name in enumerate(ds.style_names):
            img = grid_image(frags[:, si:si + 1].transpose(1, 0, 2, 3, 4), 1.0)
            img.resize((img.width * 2, img.height * 2)).save(rec / f"style_{si:02d}_{name}_all_atoms.png")
        # WAVs as `varinv recombine` writes them: strips and one clip per cell under recombine/audio/
        write_audio(rec / "audio", frags, list(range(k)), ds.style_names, {"n_bins": f}, n_iter=4)
    (root / "bench" / "results.csv").write_text("dataset,method,K,seed,prauc_zc_content\ntones,v3,3,0,0.9\n")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    from varinv.report.build import build_site

    root = tmp_path_factory.mktemp("report")
    _real_image_runs(root)
    _fake_audio_runs(root)
    return build_site([root / "bench"], root / "site", log=lambda m: None)


# -- tests ---------------------------------------------------------------------------------------


def test_site_is_self_contained(site):
    out = site.parent
    html = site.read_text()
    # no CDN, no network: nothing the page loads comes from elsewhere; the only web addresses are the
    # paper / code links of the citation (plain <a> links, never fetched)
    assert not re.search(r"""(?:src|srcset|data)\s*=\s*["']?\s*(?:https?:)?//""", html, re.I)
    assert not re.search(r"""<link[^>]*href\s*=\s*["']?\s*(?:https?:)?//""", html, re.I)
    assert "@import" not in html and not re.search(r"url\(\s*['\"]?(?:https?:)?//", html)
    hrefs = re.findall(r'<a [^>]*href="(https?://[^"]+)"', html)
    assert "https://arxiv.org/abs/2407.03824" in hrefs
    assert len(html) < 2_000_000  # no huge inline data: the page loads fast from disk
    for ref in ("toy/v3_K4/confusion.svg", "tones/v3_K3/latents.js", "results/"):
        assert ref in html
    wavs = sorted(out.rglob("*.wav"))
    assert wavs, "the spectrogram run's WAVs were not copied"
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    assert size < 50e6


def test_missing_folder_is_a_clear_error(tmp_path):
    from varinv.report.build import build_site
    from varinv.report.collect import ReportError

    with pytest.raises(ReportError, match="does not exist"):
        build_site([tmp_path / "nope"], tmp_path / "site")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ReportError, match="no run folder"):
        build_site([tmp_path / "empty"], tmp_path / "site")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.yaml").write_text("data: {path: nowhere}\nmodel: {method: v3, n_atoms: 4}\n")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "keep.txt").write_text("x")
    with pytest.raises(ReportError, match="not a varinv report"):
        build_site([tmp_path / "run"], tmp_path / "mine")
    assert (tmp_path / "mine" / "keep.txt").exists()
    # a run that was never evaluated and whose dataset is gone still gives a page that says so
    index = build_site([tmp_path / "run"], tmp_path / "site", log=lambda m: None)
    html = index.read_text()
    assert "not evaluated" in html and "Dataset not found" in html


def test_metrics_table_mean_std_and_missing(tmp_path):
    from varinv.report.build import build_site

    for seed, purity in ((0, 0.4), (1, 0.6)):
        run = tmp_path / "bench" / f"v3_s{seed}"
        run.mkdir(parents=True)
        (run / "config.yaml").write_text(yaml.safe_dump(
            {"data": {"path": "data/pn"}, "model": {"method": "v3", "n_atoms": 10}, "train": {"seed": seed}}))
        (run / "metrics.json").write_text(json.dumps({"method": "v3", "n_atoms": 10, "codebook_purity": purity}))
    run = tmp_path / "bench" / "mine_K20"
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump({"data": {"path": "data/pn"}, "model": {"method": "mine"}}))
    (run / "metrics.json").write_text(json.dumps({"method": "mine", "n_atoms": 20, "codebook_purity": 0.9}))
    html = build_site([tmp_path / "bench"], tmp_path / "site", log=lambda m: None).read_text()
    assert "0.500 <span class=\"sd\">± 0.141</span>" in html  # mean ± sample std over the two seeds
    assert "not run for K=20" in html and "not run for K=10" in html
    assert html.count('type="radio" name="ds-pn-k"') == 2


def _driver(chromium: str, chromedriver: str):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
              "--window-size=1400,1000", "--autoplay-policy=no-user-gesture-required"):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=opts, service=Service(executable_path=chromedriver))


def open_page(driver, index) -> None:
    """Load the page from disk, wait for it, and require it to load in under 2 s."""
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(index.as_uri())
    WebDriverWait(driver, 20).until(lambda d: d.execute_script("return document.readyState") == "complete")
    load_ms = driver.execute_script(
        "var t = performance.getEntriesByType('navigation')[0]; return t.loadEventEnd - t.startTime;")
    assert load_ms < 2000, f"page took {load_ms:.0f} ms to load"


def _severe(driver) -> list:
    return [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]


def test_page_in_chromium(site):
    chromium, chromedriver = _need_browser()
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    driver = _driver(chromium, chromedriver)
    try:
        open_page(driver, site)

        toy = driver.find_element(By.ID, "ds-toy")

        # the K selector swaps the confusion matrix
        def confusion_src():
            img = toy.find_element(By.CSS_SELECTOR, 'tr[data-method="v3"] img.confusion')
            return img.get_attribute("src")

        before = confusion_src()
        assert before.endswith("toy/v3_K4/confusion.svg")
        toy.find_element(By.CSS_SELECTOR, 'input[name="ds-toy-k"][value="6"]').click()
        after = confusion_src()
        assert after != before and after.endswith("toy/v3_K6/confusion.svg")
        WebDriverWait(driver, 10).until(lambda d: d.execute_script(
            "var i = document.querySelector('#ds-toy tr[data-method=\"v3\"] img.confusion');"
            "return i.complete && i.naturalWidth > 0;"))

        # choosing a content index shows one image per style
        Select(toy.find_element(By.CSS_SELECTOR, "select.fix-content")).select_by_value("2")
        strip = toy.find_element(By.CSS_SELECTOR, 'td.strip[data-method="v3"]')
        assert "content index 2" in strip.text
        n_styles = 3
        WebDriverWait(driver, 10).until(lambda d: d.execute_script(
            "var im = document.querySelectorAll('#ds-toy td.strip[data-method=\"v3\"] figure.tile img');"
            "return im.length > 0 && Array.prototype.every.call(im, function (i) {"
            "  return i.complete && i.naturalWidth > 0; });"))
        tiles = strip.find_elements(By.CSS_SELECTOR, "figure.tile img")
        assert len(tiles) == n_styles
        assert [t.get_attribute("alt") for t in tiles] == ["red", "green", "blue"]
        # and fixing a style shows one image per content index (K = 6 atoms)
        Select(toy.find_element(By.CSS_SELECTOR, "select.fix-style")).select_by_visible_text("green")
        assert len(strip.find_elements(By.CSS_SELECTOR, "figure.tile img")) == 6

        # missing pieces are said, not broken: the second audio method has no K = 3 run
        tones = driver.find_element(By.ID, "ds-tones")
        assert "not run for K=3" in tones.find_element(By.CSS_SELECTOR, 'tr[data-method="cycle"] td.cf').text
        Select(tones.find_element(By.CSS_SELECTOR, "select.fix-content")).select_by_value("0")
        broken = driver.execute_script(
            "return Array.prototype.filter.call(document.images, function (i) {"
            "  return !i.hidden && i.getAttribute('src') && i.complete && i.naturalWidth === 0; }).length;")
        assert broken == 0

        # every <audio> source exists and decodes
        audios = driver.find_elements(By.TAG_NAME, "audio")
        assert len(audios) >= 3 + 2 + 1  # 3 examples, one clip per style, the atom strip
        for a in audios:
            path = Path(unquote(urlparse(a.get_attribute("src")).path))
            assert path.is_file(), path
        result = driver.execute_async_script("""
            var done = arguments[arguments.length - 1];
            var list = Array.prototype.slice.call(document.querySelectorAll('audio'));
            Promise.all(list.map(function (a) { return new Promise(function (ok) {
              function report() { ok({src: a.currentSrc, duration: a.duration, error: a.error && a.error.code}); }
              if (a.readyState >= 1) return report();
              a.addEventListener('loadedmetadata', report); a.addEventListener('error', report);
              a.preload = 'auto'; a.load();
            }); })).then(done);
        """)
        assert len(result) == len(audios)
        for r in result:
            assert r["error"] is None and r["duration"] and r["duration"] > 0, r

        # a cell's play button plays its clip
        tones.find_element(By.CSS_SELECTOR, 'td.strip[data-method="v3"] figure.tile button.play').click()
        WebDriverWait(driver, 10).until(lambda d: d.execute_script(
            "var a = document.querySelector('#ds-tones td.strip[data-method=\"v3\"] figure.tile audio');"
            "return !a.paused || a.ended;"))

        # the 3-D views are drawn (some non-white pixel on the first z_c canvas)
        driver.execute_script("document.getElementById('ds-toy').scrollIntoView()")
        time.sleep(0.5)
        painted = driver.execute_script(
            "var c = document.querySelector('#ds-toy canvas.scatter[data-space=\"zc\"]');"
            "var d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
            "for (var i = 3; i < d.length; i += 4) if (d[i] > 0) return true; return false;")
        assert painted

        # dragging a 3-D view rotates it (its pixels change)
        from selenium.webdriver.common.action_chains import ActionChains

        snap = ("var c = document.querySelector('#ds-toy canvas.scatter[data-space=\"zc\"]');"
                "return c.toDataURL();")
        before = driver.execute_script(snap)
        canvas = toy.find_element(By.CSS_SELECTOR, 'canvas.scatter[data-space="zc"]')
        ActionChains(driver).move_to_element(canvas).click_and_hold().move_by_offset(60, 25).release().perform()
        assert driver.execute_script(snap) != before

        # confusion matrices are readable at their default size (the SVG's 13-px labels shown at >= 11 px)
        # and a click enlarges one in the page's own lightbox
        from varinv.report.confusion import FONT_PX

        driver.execute_script("document.querySelector('#ds-toy td.cf').scrollIntoView()")
        cf = toy.find_element(By.CSS_SELECTOR, 'tr[data-method="v3"] img.confusion')
        shown, natural = driver.execute_script(
            "var i = arguments[0]; return [i.getBoundingClientRect().width, i.naturalWidth];", cf)
        assert natural >= 250 and shown >= 250, (shown, natural)
        assert FONT_PX * shown / natural >= 11, (shown, natural)
        cf.click()
        WebDriverWait(driver, 5).until(lambda d: d.execute_script(
            "var b = document.getElementById('lightbox'); return b.open;"))
        big = driver.execute_script(
            "var i = document.querySelector('#lightbox img'); return [i.getAttribute('src'), i.getBoundingClientRect().width];")
        assert big[0].endswith("toy/v3_K6/confusion.svg") and big[1] >= 1.5 * shown, big
        driver.find_element(By.CSS_SELECTOR, "#lightbox button.close").click()
        WebDriverWait(driver, 5).until(lambda d: not d.execute_script("return document.getElementById('lightbox').open;"))

        # swaps of real samples: 3 pairs × (A, B, V3) images, following the K selector (K = 6 chosen above)
        swaps = toy.find_elements(By.CSS_SELECTOR, "div.swaps")
        assert [w.get_attribute("data-k") for w in swaps if w.is_displayed()] == ["6"]
        driver.execute_script("document.querySelector('#ds-toy div.swaps[data-k=\"6\"]').scrollIntoView()")
        WebDriverWait(driver, 10).until(lambda d: d.execute_script(
            "var im = document.querySelectorAll('#ds-toy div.swaps[data-k=\"6\"] img');"
            "return im.length === 9 && Array.prototype.every.call(im, function (i) {"
            "  return i.complete && i.naturalWidth > 0; });"))
        srcs = [i.get_attribute("src") for i in toy.find_elements(By.CSS_SELECTOR, 'div.swaps[data-k="6"] img')]
        assert sum("/v3_K6/swaps/" in x for x in srcs) == 3
        # the seeds column gives the number of seeds, the list in its tooltip
        seeds = toy.find_element(By.CSS_SELECTOR, "table.metrics td.seeds")
        assert seeds.text == "1" and seeds.get_attribute("title") == "seeds 0"
        # the paper is credited, with a link
        assert driver.find_element(By.CSS_SELECTOR, 'header p.paper a[href="https://arxiv.org/abs/2407.03824"]')
        assert "How to cite" in driver.find_element(By.ID, "cite").text

        assert _severe(driver) == []

        ARTIFACTS.mkdir(exist_ok=True)
        driver.execute_script("window.scrollTo(0, 0)")
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(1400, min(int(height) + 100, 6000))
        time.sleep(0.3)
        driver.save_screenshot(str(ARTIFACTS / "report.png"))
        assert (ARTIFACTS / "report.png").stat().st_size > 10_000
    finally:
        driver.quit()


def test_page_fits_a_phone_screen(site):
    """At a 420-px window the page does not scroll sideways: wide tables scroll inside their own box."""
    chromium, chromedriver = _need_browser()
    from selenium.webdriver.support.ui import WebDriverWait

    driver = _driver(chromium, chromedriver)
    try:
        driver.set_window_size(420, 900)
        driver.get(site.as_uri())
        WebDriverWait(driver, 20).until(lambda d: d.execute_script("return document.readyState") == "complete")
        inner = driver.execute_script("return window.innerWidth")
        if inner > 420:  # a browser with a minimum window width: emulate the phone's viewport instead
            driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                                   {"width": 420, "height": 900, "deviceScaleFactor": 1, "mobile": False})
            driver.refresh()
            WebDriverWait(driver, 20).until(lambda d: d.execute_script("return document.readyState") == "complete")
        assert driver.execute_script("return window.innerWidth") <= 420
        time.sleep(0.3)
        width = driver.execute_script("return document.documentElement.scrollWidth")
        wide = driver.execute_script("""
            var out = [], vw = document.documentElement.clientWidth;
            document.querySelectorAll('body *').forEach(function (e) {
              var r = e.getBoundingClientRect();
              if (r.width && r.right > vw + 1 && !e.closest('.table-scroll, .cf-box, dialog'))
                out.push(e.tagName + '.' + e.className + ' ' + Math.round(r.right));
            });
            return out.slice(0, 8);""")
        assert width <= 420 + 1, (width, wide)
        # the metrics table is wider than the screen and scrolls inside its own container
        box = driver.execute_script(
            "var b = document.getElementById('ds-toy-metrics').parentNode; return [b.scrollWidth, b.clientWidth,"
            " getComputedStyle(b).overflowX];")
        assert box[0] > box[1] and box[2] in ("auto", "scroll"), box
        # the confusion matrix labels stay readable on the phone too
        from varinv.report.confusion import FONT_PX

        shown, natural = driver.execute_script(
            "var i = document.querySelector('#ds-toy img.confusion'); i.scrollIntoView();"
            "return [i.getBoundingClientRect().width, i.naturalWidth];")
        assert FONT_PX * shown / natural >= 11, (shown, natural)
        ARTIFACTS.mkdir(exist_ok=True)
        driver.execute_script("window.scrollTo(0, 0)")
        driver.save_screenshot(str(ARTIFACTS / "report-420.png"))
        assert _severe(driver) == []
    finally:
        driver.quit()
