# Copyright (c) monai_jrs contributors
# Licensed under the Apache License, Version 2.0 (the "License"); see LICENSE.
"""Start a real MONAI Label server with the ``apps/monailabel_jrs`` app for a test (``python -m monai_jrs.monailabel
start_server``), on 127.0.0.1 and a free port, and stop it afterwards."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from monai_jrs.utils.net import free_port

__all__ = ["MonaiLabelServer", "REPO"]

REPO = Path(__file__).resolve().parents[2]


class MonaiLabelServer:
    """``python -m monai_jrs.monailabel start_server --app <copy of apps/monailabel_jrs> --studies <studies>``.

    Args:
        studies: a folder or a DICOMweb URL.
        conf: ``--conf`` pairs (``preload true`` ...).
        env: extra environment variables of the server.
        host: ``--host``; None passes none (the wrapper's default, 127.0.0.1).
        startup_timeout_s: how long to wait for ``/info/``.

    Attributes:
        url: ``http://127.0.0.1:<port>``; ``startup_s``: seconds until ``/info/`` answered; ``log_path``: its log.
    """

    def __init__(self, studies: str | os.PathLike, conf: dict[str, str] | None = None,
                 env: dict[str, str] | None = None, host: str | None = "127.0.0.1",
                 startup_timeout_s: float = 120.0) -> None:
        self.studies = str(studies)
        self.conf = dict(conf or {})
        self.env = dict(env or {})
        self.host = host
        self.startup_timeout_s = startup_timeout_s
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.startup_s = float("nan")
        self._tmp: tempfile.TemporaryDirectory | None = None
        self._proc: subprocess.Popen | None = None

    def __enter__(self) -> MonaiLabelServer:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def start(self) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="monailabel_")
        root = Path(self._tmp.name)
        app = root / "app"  # start_server writes model/, logs/ ... into the app folder: run a copy
        shutil.copytree(REPO / "apps" / "monailabel_jrs", app)
        self.log_path = root / "server.log"
        self._log = open(self.log_path, "w")
        env = {**os.environ, "PYTHONWARNINGS": "ignore", "MONAI_LABEL_SESSIONS": "false",
               "MONAI_LABEL_DATASTORE_AUTO_RELOAD": "false", "PYTHONPATH": str(REPO), **self.env}
        cmd = [sys.executable, "-m", "monai_jrs.monailabel", "start_server", "--app", str(app),
               "--studies", self.studies, "--port", str(self.port)]
        if self.host is not None:
            cmd += ["--host", self.host]
        for k, v in self.conf.items():
            cmd += ["--conf", k, str(v)]
        t0 = time.perf_counter()
        self.command = list(cmd)
        self._proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env, cwd=root)
        deadline = t0 + self.startup_timeout_s
        while time.perf_counter() < deadline:
            if self._proc.poll() is not None:
                text = self.log_tail()
                self.stop()
                raise RuntimeError(f"the MONAI Label server exited with {self._proc_rc}:\n{text}")
            try:
                with urllib.request.urlopen(self.url + "/info/", timeout=5) as r:
                    if r.status == 200:
                        self.startup_s = time.perf_counter() - t0
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.5)
        text = self.log_tail()
        self.stop()
        raise TimeoutError(f"the server did not answer /info/ within {self.startup_timeout_s} s:\n{text}")

    @property
    def _proc_rc(self) -> int | None:
        return self._proc.returncode if self._proc is not None else None

    def alive(self) -> bool:
        """Whether the server process still runs."""
        return self._proc is not None and self._proc.poll() is None

    def log_text(self) -> str:
        """Everything the server printed so far."""
        try:
            self._log.flush()
            return self.log_path.read_text(errors="replace")
        except (OSError, AttributeError):
            return ""

    def log_tail(self, n: int = 4000) -> str:
        return self.log_text()[-n:]

    def info(self) -> dict[str, Any]:
        with urllib.request.urlopen(self.url + "/info/", timeout=30) as r:
            return json.loads(r.read())

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=20)
        if getattr(self, "_log", None) is not None and not self._log.closed:
            self._log.close()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
