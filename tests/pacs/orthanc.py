# Copyright (c) monai_jrs contributors
# Licensed under the Apache License, Version 2.0 (the "License"); see LICENSE.
"""Start a real Orthanc PACS with its DICOMweb plugin on 127.0.0.1 for a test (Debian packages ``orthanc`` and
``orthanc-dicomweb``; ``.ci/run`` installs them).

:func:`orthanc_unavailable` says why Orthanc cannot run here (or None); :class:`Orthanc` is a context manager that
writes a configuration into a temporary folder, starts ``Orthanc`` on a free port, waits until ``/system`` answers and
stops it on exit. Storage and index live in the temporary folder, so every test PACS starts empty.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import requests

from monai_jrs.utils.net import free_port

__all__ = ["Orthanc", "orthanc_unavailable", "DICOMWEB_PLUGIN"]

ORTHANC = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
#: the DICOMweb plugin of the Debian package orthanc-dicomweb.
DICOMWEB_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"


def orthanc_unavailable() -> str | None:
    """Why Orthanc with DICOMweb cannot be started here, or None when it can."""
    if not os.path.isfile(ORTHANC):
        return ("Orthanc is not installed (apt-get install orthanc orthanc-dicomweb; .ci/run installs it); "
                "the PACS tests need a real Orthanc")
    if not os.path.isfile(DICOMWEB_PLUGIN):
        return f"the Orthanc DICOMweb plugin {DICOMWEB_PLUGIN} is missing (apt-get install orthanc-dicomweb)"
    return None


class Orthanc:
    """A throw-away Orthanc on 127.0.0.1 with DICOMweb at ``<url>/dicom-web``.

    Args:
        users: HTTP basic users ``{name: password}``; empty: no authentication.
        ssl_certificate: PEM file with the certificate and its private key: serve HTTPS.
        extra: further Orthanc configuration entries.

    Attributes:
        url: ``http://127.0.0.1:<port>`` (``https://`` with a certificate); ``dicomweb``: ``<url>/dicom-web``.
    """

    def __init__(self, users: dict[str, str] | None = None, ssl_certificate: str | None = None,
                 extra: dict[str, Any] | None = None) -> None:
        self.users = dict(users or {})
        self.ssl_certificate = ssl_certificate
        self.extra = dict(extra or {})
        self.port = free_port()
        scheme = "https" if ssl_certificate else "http"
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        self.dicomweb = self.url + "/dicom-web"
        self._tmp: tempfile.TemporaryDirectory | None = None
        self._proc: subprocess.Popen | None = None

    @property
    def auth(self) -> tuple[str, str] | None:
        """The first user's ``(name, password)`` for ``requests``, None without authentication."""
        return next(iter(self.users.items())) if self.users else None

    def __enter__(self) -> Orthanc:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def start(self, timeout_s: float = 30.0) -> None:
        """Write the configuration, start Orthanc and wait for ``/system``."""
        reason = orthanc_unavailable()
        if reason:
            raise RuntimeError(reason)
        self._tmp = tempfile.TemporaryDirectory(prefix="orthanc_")
        root = Path(self._tmp.name)
        config = {
            "Name": "monai_jrs test PACS",
            "StorageDirectory": str(root / "storage"),
            "IndexDirectory": str(root / "index"),
            "HttpPort": self.port,
            "RemoteAccessAllowed": False,  # refuses clients other than 127.0.0.1
            "AuthenticationEnabled": bool(self.users),
            "RegisteredUsers": self.users,
            "DicomServerEnabled": False,
            "Plugins": [DICOMWEB_PLUGIN],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": True, "Ssl": bool(self.ssl_certificate)},
            "StableAge": 1,
            "HttpTimeout": 60,
            **self.extra,
        }
        if self.ssl_certificate:
            config.update({"SslEnabled": True, "SslCertificate": self.ssl_certificate})
        (root / "orthanc.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
        self.log_path = root / "orthanc.log"
        self._log = open(self.log_path, "w")
        self._proc = subprocess.Popen([ORTHANC, str(root / "orthanc.json")], stdout=self._log,
                                      stderr=subprocess.STDOUT, cwd=root)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"Orthanc exited with {self._proc.returncode}:\n{self.log_tail()}")
            try:
                r = requests.get(self.url + "/system", auth=self.auth, timeout=2, verify=False)
                if r.status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"Orthanc did not answer within {timeout_s} s")

    def log_tail(self, n: int = 4000) -> str:
        """The end of Orthanc's log."""
        try:
            self._log.flush()
            return self.log_path.read_text(errors="replace")[-n:]
        except (OSError, AttributeError):
            return ""

    def upload(self, path: str | os.PathLike) -> dict[str, Any]:
        """``POST /instances`` one DICOM file (Orthanc's REST API, as a modality or a user would)."""
        r = requests.post(self.url + "/instances", data=Path(path).read_bytes(), auth=self.auth, timeout=30,
                          verify=False)
        r.raise_for_status()
        return r.json()

    def count_instances(self) -> int:
        """How many instances the PACS holds."""
        r = requests.get(self.url + "/statistics", auth=self.auth, timeout=10, verify=False)
        r.raise_for_status()
        return int(r.json()["CountInstances"])

    def stop(self) -> None:
        """Stop Orthanc and delete its storage."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=15)
        self._proc = None
        if getattr(self, "_log", None) is not None:
            self._log.close()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
