# Copyright (c) monai_jrs contributors
# Licensed under the Apache License, Version 2.0 (the "License"); see LICENSE.
"""Drive the OHIF v3 viewer that MONAI Label serves at ``/ohif/`` with headless Chromium (Playwright) and check that a
study shows up in the study list and that its images render.

:func:`check_ohif` opens ``<server>/ohif/``, waits for the patient's row, expands it and reads the viewer links OHIF
offers (``/ohif/viewer?StudyInstanceUIDs=<uid>`` for the Basic Viewer), opens the viewer and waits until the
Cornerstone canvas holds a real image, then optionally double-clicks another series' thumbnail and waits until that
series is displayed. OHIF reaches the PACS only through the server's ``/proxy/dicom/{qido,wado}/`` endpoints;
every such request is recorded. Requests to hosts other than the loopback are aborted (OHIF's ``index.html`` asks
for Google fonts) and listed in the result. Console errors, failed requests and HTTP errors are collected and put in
the message of the :class:`OhifCheckError` raised when a step times out, so a failure can be diagnosed from the test
log alone.

:func:`browser_unavailable` says why the check cannot run here (or None).
"""

from __future__ import annotations

import base64
import io
import os
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlsplit

import numpy as np

__all__ = ["CHROMIUM", "CHROMIUM_ARGS", "OhifCheckError", "browser_unavailable", "check_ohif", "image_stats"]

#: Debian's Chromium; Playwright's own browser download is not used.
CHROMIUM = "/usr/bin/chromium"
#: flags that let Chromium run headless as root without reaching any network (no updates, no sync, no QUIC).
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
_LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}


class OhifCheckError(RuntimeError):
    """A step of :func:`check_ohif` failed or timed out; the message carries the browser's diagnostics."""


def browser_unavailable(chromium: str = CHROMIUM) -> str | None:
    """Why :func:`check_ohif` cannot run here (no Chromium, no Playwright, no Pillow), or None when it can."""
    if not os.path.isfile(chromium):
        return f"Chromium is not installed at {chromium} (apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the Python package playwright is not installed (pip install playwright; its browser is not needed)"
    try:
        import PIL.Image  # noqa: F401
    except ImportError:
        return "Pillow is not installed (pip install pillow)"
    return None


def image_stats(png: bytes) -> dict[str, Any]:
    """Pixel statistics of a PNG (a canvas or a screenshot) to tell a rendered image from an empty viewport.

    Returns:
        ``width``, ``height``, ``mean`` and ``std`` of the grey level (0-255), ``nonblack`` (fraction of pixels with
        grey level > 10), ``colour`` (fraction with max - min channel > 30), ``levels`` (distinct grey levels).
    """
    from PIL import Image

    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(np.int16)
    grey = rgb.mean(axis=-1)
    return {
        "width": int(rgb.shape[1]),
        "height": int(rgb.shape[0]),
        "mean": round(float(grey.mean()), 2),
        "std": round(float(grey.std()), 2),
        "nonblack": round(float((grey > 10).mean()), 4),
        "colour": round(float(((rgb.max(axis=-1) - rgb.min(axis=-1)) > 30).mean()), 4),
        "levels": int(np.unique(grey.astype(np.uint8)).size),
    }


def _rendered(stats: dict[str, Any], min_std: float, min_nonblack: float) -> bool:
    return stats["std"] >= min_std and stats["nonblack"] >= min_nonblack and stats["levels"] >= 8


class _Diagnostics:
    """What the browser reported: console errors, failed and refused requests, DICOMweb traffic through the proxy."""

    def __init__(self) -> None:
        self.console_errors: list[str] = []
        self.console_log: list[str] = []
        self.page_errors: list[str] = []
        self.failed_requests: list[str] = []
        self.http_errors: list[str] = []
        self.blocked_requests: list[str] = []
        self.dicomweb: list[dict[str, Any]] = []
        self._pending: dict[int, int] = {}

    def attach(self, page: Any) -> None:
        page.on("console", self._on_console)
        page.on("pageerror", lambda e: self.page_errors.append(str(e)[:500]))
        page.on("requestfailed", self._on_request_failed)
        page.on("response", self._on_response)
        page.on("requestfinished", self._on_request_finished)

    def _on_console(self, msg: Any) -> None:
        text = f"{msg.type}: {msg.text[:500]}"
        if msg.type == "error":
            self.console_errors.append(text)
        elif len(self.console_log) < 400:
            self.console_log.append(text)

    def _on_request_failed(self, request: Any) -> None:
        if "ERR_BLOCKED_BY_CLIENT" not in str(request.failure):  # refused by us: listed in blocked_requests
            self.failed_requests.append(f"{request.method} {request.url} -> {request.failure}")

    def _on_response(self, response: Any) -> None:
        url = response.url
        if "/proxy/dicom/" in url:
            self._pending[id(response.request)] = len(self.dicomweb)
            self.dicomweb.append({"method": response.request.method, "url": url, "status": response.status,
                                  "ms": None})
        if response.status >= 400:
            self.http_errors.append(f"{response.status} {response.request.method} {url}")

    def _on_request_finished(self, request: Any) -> None:
        i = self._pending.pop(id(request), None)
        if i is not None:
            end = request.timing.get("responseEnd", -1)
            self.dicomweb[i]["ms"] = round(end, 1) if end >= 0 else None

    @property
    def renderer(self) -> str | None:
        """Cornerstone's rendering path as it logged it (``GPU``: WebGL, ``CPU``: the fallback), None if unseen."""
        for line in self.console_log:
            if "CornerstoneRender: using" in line:
                return "GPU" if "GPU" in line else "CPU"
        return None

    def report(self, page: Any | None = None) -> str:
        """A multi-line summary for an exception message."""
        lines = []
        if page is not None:
            lines.append(f"page URL: {page.url}")
            try:
                lines.append("page text: " + " | ".join(page.inner_text("body", timeout=2000).split("\n"))[:1500])
            except Exception as e:  # noqa: BLE001 - diagnostics only
                lines.append(f"page text unavailable: {e}")
        for title, items in [("console errors", self.console_errors), ("page errors", self.page_errors),
                             ("failed requests", self.failed_requests), ("HTTP errors", self.http_errors),
                             ("blocked non-loopback requests", self.blocked_requests)]:
            lines.append(f"{title} ({len(items)}):" + "".join(f"\n  {x}" for x in items[-20:]))
        lines.append(f"DICOMweb through the proxy ({len(self.dicomweb)}):"
                     + "".join(f"\n  {d['status']} {d['method']} {d['url']}" for d in self.dicomweb[-20:]))
        return "\n".join(lines)


_JS_CANVAS = """() => {
  const c = document.querySelector('canvas.cornerstone-canvas');
  return c && c.width > 0 && c.height > 0 ? c.toDataURL('image/png') : null;
}"""

_JS_DISPLAY_SETS = """() => {
  const s = window.services;
  if (!s || !s.displaySetService) return null;
  return s.displaySetService.getActiveDisplaySets().map(ds => ({
    displaySetInstanceUID: ds.displaySetInstanceUID, SeriesInstanceUID: ds.SeriesInstanceUID,
    SeriesNumber: ds.SeriesNumber, Modality: ds.Modality, SOPClassUID: ds.SOPClassUID,
    unsupported: !!ds.unsupported, numImageFrames: ds.numImageFrames}));
}"""

_JS_VIEWPORT = """() => {
  const s = window.services;
  if (!s || !s.viewportGridService) return null;
  const st = s.viewportGridService.getState();
  const vps = st.viewports instanceof Map ? Array.from(st.viewports.values()) : Object.values(st.viewports || {});
  const vp = vps.find(v => v.viewportId === st.activeViewportId) || vps[0];
  if (!vp) return null;
  return (vp.displaySetInstanceUIDs || []).map(uid => {
    const ds = s.displaySetService.getDisplaySetByUID(uid) || {};
    return {displaySetInstanceUID: uid, SeriesInstanceUID: ds.SeriesInstanceUID, Modality: ds.Modality};
  });
}"""

_JS_OVERLAY = """() => Object.fromEntries(['top-left', 'top-right', 'bottom-left', 'bottom-right'].map(k => {
  const e = document.querySelector(`[data-cy="viewport-overlay-${k}"]`);
  return [k, e ? e.innerText.replace(/\\s+/g, ' ').trim() : null];
}))"""


def check_ohif(server_url: str, study_uid: str, patient_id: str, series_uid: str | None = None,
               screenshot_dir: Path | None = None, *, timeout_s: float = 20.0, chromium: str = CHROMIUM,
               viewport: tuple[int, int] = (1280, 800), min_std: float = 5.0,
               min_nonblack: float = 0.05, row_text: str | None = None) -> dict[str, Any]:
    """Open MONAI Label's OHIF in headless Chromium and check that ``study_uid`` is listed and renders.

    Steps (each bounded by ``timeout_s``): the study list at ``<server_url>/ohif/`` shows ``patient_id`` (PatientID or
    name text; screenshot ``ohif_study_list.png``); the expanded row offers the Basic Viewer link for ``study_uid``;
    the viewer's Cornerstone canvas holds an image (grey-level std >= ``min_std``, a fraction >= ``min_nonblack`` of
    non-black pixels, >= 8 grey levels; screenshot ``ohif_viewer_initial.png``); with ``series_uid``, double-clicking
    that series' thumbnail makes the viewport show it, rendered and different from the first image. The final viewer
    is saved as ``ohif_viewer.png``.

    Args:
        server_url: the MONAI Label server, e.g. ``http://127.0.0.1:8000``.
        study_uid: StudyInstanceUID expected in the list and opened in the viewer.
        patient_id: PatientID shown in the study list (the MRN column; the name column usually contains it too).
        series_uid: a SeriesInstanceUID of the study to select in the thumbnail list (e.g. a Secondary Capture).
        screenshot_dir: folder for the PNG screenshots (created; also ``ohif_failure_<step>.png``); None: none.
        timeout_s: limit for every single step.
        chromium: the Chromium executable.
        viewport: browser window ``(width, height)``.
        min_std: minimal grey-level standard deviation of the canvas.
        min_nonblack: minimal fraction of canvas pixels with grey level > 10.
        row_text: further text of the study's row (e.g. its date as OHIF shows it, ``"Jun-10-2023"``) when the
            patient has several studies (MONAI Label 0.8.5's proxy drops OHIF's query, so the list is not filtered).

    Returns:
        ``urls`` (study list, viewer, the mode links of the row), ``study_list_row`` (its text), ``display_sets``,
        ``viewer`` (canvas statistics, displayed series, overlay texts), ``series`` (the same after the selection,
        None without ``series_uid``), ``renderer`` (``GPU``/``CPU``), ``timings_s`` per step, ``dicomweb_requests``
        (every proxy request with status and duration), ``console_errors``, ``failed_requests``, ``http_errors``,
        ``blocked_requests`` and ``screenshots``.

    Raises:
        OhifCheckError: a step failed or timed out; the message has the page text, console errors, failed requests
            and the DICOMweb requests made so far (and ``ohif_failure_<step>.png`` is saved when screenshots are on).
    """
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import TimeoutError as PlaywrightTimeoutError
    from playwright.sync_api import sync_playwright

    reason = browser_unavailable(chromium)
    if reason:
        raise OhifCheckError(reason)
    server_url = server_url.rstrip("/")
    shots = Path(screenshot_dir) if screenshot_dir is not None else None
    if shots is not None:
        shots.mkdir(parents=True, exist_ok=True)
    diag = _Diagnostics()
    timings: dict[str, float] = {}
    result: dict[str, Any] = {"urls": {}, "screenshots": []}
    t_total = time.perf_counter()
    page: Any = None

    def screenshot(name: str) -> None:
        if shots is not None and page is not None:
            page.screenshot(path=str(shots / name))
            result["screenshots"].append(str(shots / name))

    @contextmanager
    def step(name: str) -> Iterator[None]:
        t = time.perf_counter()
        try:
            yield
        except (PlaywrightTimeoutError, PlaywrightError, TimeoutError, AssertionError) as e:
            try:
                screenshot(f"ohif_failure_{name}.png")
            except Exception:  # noqa: BLE001 - the page may be gone
                pass
            raise OhifCheckError(f"OHIF check step '{name}' failed after {time.perf_counter() - t:.1f} s: "
                                 f"{type(e).__name__}: {str(e)[:1500]}\n{diag.report(page)}") from e
        timings[name] = round(time.perf_counter() - t, 2)

    def poll(what: str, fn: Any, interval_s: float = 0.25) -> Any:
        """Call ``fn`` until it returns something truthy; TimeoutError after ``timeout_s``."""
        deadline = time.perf_counter() + timeout_s
        last = None
        while time.perf_counter() < deadline:
            last = fn()
            if last:
                return last
            page.wait_for_timeout(interval_s * 1000)
        raise TimeoutError(f"{what} not reached within {timeout_s} s (last: {last})")

    def canvas() -> tuple[bytes, dict[str, Any]] | None:
        url = page.evaluate(_JS_CANVAS)
        if not url:
            return None
        png = base64.b64decode(url.split(",", 1)[1])
        return png, image_stats(png)

    def rendered_canvas() -> tuple[bytes, dict[str, Any]] | None:
        c = canvas()
        return c if c and _rendered(c[1], min_std, min_nonblack) else None

    def route(r: Any) -> None:
        host = urlsplit(r.request.url).hostname or ""
        if host in _LOCAL_HOSTS or r.request.url.startswith(("data:", "blob:")):
            r.continue_()
        else:
            diag.blocked_requests.append(f"{r.request.method} {r.request.url}")
            r.abort("blockedbyclient")

    with sync_playwright() as pw, tempfile.TemporaryDirectory(prefix="ohif_chromium_") as user_data:
        with step("browser_launch"):
            context = pw.chromium.launch_persistent_context(
                user_data, executable_path=chromium, headless=True, args=CHROMIUM_ARGS,
                viewport={"width": viewport[0], "height": viewport[1]}, timeout=timeout_s * 1000)
        try:
            context.set_default_timeout(timeout_s * 1000)
            context.route("**/*", route)
            page = context.new_page()
            diag.attach(page)

            # 1. the study list
            list_url = f"{server_url}/ohif/"
            result["urls"]["study_list"] = list_url
            with step("study_list"):
                page.goto(list_url, wait_until="domcontentloaded")
                page.get_by_text(patient_id).first.wait_for(state="visible")
                rows = page.locator('[data-cy="study-list-results"] tr').filter(has_text=patient_id)
                row = (rows.filter(has_text=row_text) if row_text else rows).first
                result["study_list_row"] = " | ".join(t.strip() for t in row.inner_text().split("\n") if t.strip())
            hide = page.get_by_role("button", name="Confirm and Hide")  # the "investigational use" banner
            if hide.count():
                hide.first.click()
            screenshot("ohif_study_list.png")

            # 2. the viewer link of the expanded row
            with step("viewer_link"):
                row.click()
                link = page.locator(f'a[href*="StudyInstanceUIDs={study_uid}"]').first
                link.wait_for(state="attached")
                modes = {}
                for a in page.locator(f'a[href*="StudyInstanceUIDs={study_uid}"]').all():
                    modes[" ".join(a.inner_text().split())] = a.get_attribute("href")
                result["urls"]["modes"] = modes
                viewer_path = next((h for h in modes.values() if h and "/viewer?" in h), None)
                assert viewer_path, f"no Basic Viewer link (/ohif/viewer?StudyInstanceUIDs=...) among {modes}"
            viewer_url = server_url + viewer_path
            result["urls"]["viewer"] = viewer_url

            # 3. the viewer renders the first display set
            with step("viewer_first_image"):
                page.goto(viewer_url, wait_until="domcontentloaded")
                page.locator("canvas.cornerstone-canvas").first.wait_for(state="attached")
                png, stats = poll("a rendered canvas", rendered_canvas)
            result["viewer"] = {"canvas": stats, "displayed": page.evaluate(_JS_VIEWPORT),
                                "overlay": page.evaluate(_JS_OVERLAY)}
            result["display_sets"] = page.evaluate(_JS_DISPLAY_SETS)
            screenshot("ohif_viewer_initial.png")

            # 4. select the requested series in the thumbnail list
            result["series"] = None
            if series_uid:
                with step("series_select"):
                    sets = poll(f"a display set for series {series_uid}", lambda: [
                        d for d in (page.evaluate(_JS_DISPLAY_SETS) or []) if d["SeriesInstanceUID"] == series_uid])
                    ds = sets[0]
                    assert not ds["unsupported"], f"OHIF marks series {series_uid} unsupported: {ds}"
                    thumb = page.locator(f'[id="thumbnail-{ds["displaySetInstanceUID"]}"]')
                    kind = thumb.get_attribute("data-cy")
                    thumb.dblclick()

                    def shown() -> Any:
                        displayed = page.evaluate(_JS_VIEWPORT) or []
                        if ds["displaySetInstanceUID"] not in [d["displaySetInstanceUID"] for d in displayed]:
                            return None
                        c = canvas()
                        if not c or not _rendered(c[1], min_std, min_nonblack) or c[0] == png:
                            return None
                        return c, displayed

                    (_, sc_stats), displayed = poll(f"series {series_uid} rendered", shown)
                result["series"] = {"display_set": ds, "thumbnail": kind, "canvas": sc_stats, "displayed": displayed,
                                    "overlay": page.evaluate(_JS_OVERLAY)}
            screenshot("ohif_viewer.png")
        finally:
            context.close()

    timings["total"] = round(time.perf_counter() - t_total, 2)
    result.update({
        "renderer": diag.renderer,
        "timings_s": timings,
        "dicomweb_requests": diag.dicomweb,
        "console_errors": diag.console_errors,
        "page_errors": diag.page_errors,
        "failed_requests": diag.failed_requests,
        "http_errors": diag.http_errors,
        "blocked_requests": diag.blocked_requests,
    })
    return result
