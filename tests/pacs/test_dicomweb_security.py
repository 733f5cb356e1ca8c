# Copyright (c) monai_jrs contributors
# Licensed under the Apache License, Version 2.0 (the "License"); see LICENSE.
"""Credentials and TLS of the DICOMweb client (:mod:`monai_jrs.data.dicomweb`).

Unit tests: where credentials come from (environment, MONAI Label's variables, netrc) and in which order, that a
secret never shows in ``repr``/messages, that credentials in a URL are refused. Against a real Orthanc: an HTTPS
reverse proxy in front of it (as a hospital puts nginx in front of a PACS; Debian's Orthanc 1.10.1 crashed here when
serving HTTPS itself) with a self-signed certificate and a bearer token: certificate verification is on by default
and fails with a clear reason, a CA bundle makes it pass, a wrong token gives HTTP 401, and no secret appears in any
log record (DEBUG level, every logger).
"""

from __future__ import annotations

import http.server
import logging
import os
import shutil
import ssl
import subprocess
import tempfile
import threading
import unittest
from pathlib import Path

import pytest
from parameterized import parameterized

requests = pytest.importorskip("requests")
pytest.importorskip("dicomweb_client", reason="the pacs extra is not installed (pip install .[pacs])")

from monai_jrs.data.dicomweb import (  # noqa: E402
    ENV_CA_BUNDLE,
    DicomWebCredentials,
    DicomWebStore,
    PacsAuthError,
    PacsTLSError,
    check_dicomweb_url,
    resolve_credentials,
)
from tests.pacs.orthanc import Orthanc, orthanc_unavailable  # noqa: E402

URL = "http://pacs.example.org:8042/dicom-web"


class TestCredentials(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.netrc = Path(self.tmp.name) / "netrc"
        self.netrc.write_text("machine pacs.example.org login nina password n3trc-secret\n")
        os.chmod(self.netrc, 0o600)

    def tearDown(self):
        self.tmp.cleanup()

    @parameterized.expand([
        ("token_first", {"MONAI_JRS_DICOMWEB_TOKEN": "t0k-s3cret", "MONAI_JRS_DICOMWEB_USERNAME": "u",
                         "MONAI_JRS_DICOMWEB_PASSWORD": "p"}, (None, None, "t0k-s3cret")),
        ("user_password", {"MONAI_JRS_DICOMWEB_USERNAME": "u", "MONAI_JRS_DICOMWEB_PASSWORD": "p"}, ("u", "p", None)),
        ("monai_label_vars", {"MONAI_LABEL_DICOMWEB_USERNAME": "m", "MONAI_LABEL_DICOMWEB_PASSWORD": "q"},
         ("m", "q", None)),
        ("netrc", {}, ("nina", "n3trc-secret", None)),
    ])
    def test_sources(self, _, env, expected):
        cred = resolve_credentials(URL, {**env, "MONAI_JRS_NETRC": str(self.netrc)})
        self.assertEqual((cred.username, cred.password, cred.token), expected)
        for secret in ("n3trc-secret", "t0k-s3cret"):
            self.assertNotIn(secret, repr(cred) + cred.describe())

    def test_no_credentials(self):
        self.assertIsNone(resolve_credentials("http://other.host/dicom-web", {"MONAI_JRS_NETRC": str(self.netrc)}))

    @parameterized.expand([
        ("half_pair", {"MONAI_JRS_DICOMWEB_USERNAME": "u"}, "set both MONAI_JRS_DICOMWEB_USERNAME and"),
        ("missing_netrc", {"MONAI_JRS_NETRC": "/no/such/netrc"}, "expected a netrc file"),
    ])
    def test_bad_credentials(self, _, env, message):
        with self.assertRaisesRegex(ValueError, message):
            resolve_credentials(URL, env)

    def test_bad_netrc_names_the_file_not_the_secret(self):
        self.netrc.write_text("machine pacs.example.org login nina password\n  s3cr3t-value macdef\n")
        with self.assertRaises(ValueError) as ctx:
            resolve_credentials(URL, {"MONAI_JRS_NETRC": str(self.netrc)})
        self.assertIn(str(self.netrc), str(ctx.exception))

    @parameterized.expand([
        ("credentials", "http://u:secret@pacs/dicom-web", "credentials in the DICOMweb URL are refused"),
        ("scheme", "ftp://pacs/dicom-web", "expected an http:// or https://"),
        ("empty", "", "expected a DICOMweb URL"),
    ])
    def test_url_checks(self, _, url, message):
        with self.assertRaisesRegex(ValueError, message) as ctx:
            check_dicomweb_url(url)
        self.assertNotIn("secret", str(ctx.exception))

    def test_incomplete_explicit_credentials(self):
        with self.assertRaisesRegex(ValueError, "username=set, password=missing"):
            DicomWebCredentials("u", None)

    def test_cache_files_are_private(self):
        """Cached instances are patient data: files 0600 in folders 0700."""
        import stat

        from monai_jrs.data.dicomweb import _atomic_write

        path = Path(self.tmp.name) / "cache" / "images" / "1.2.3.dcm"
        _atomic_write(path, b"DICM")
        self.assertEqual(stat.S_IMODE(path.stat().st_mode), 0o600)
        self.assertEqual(stat.S_IMODE(path.parent.stat().st_mode), 0o700)
        self.assertEqual(path.read_bytes(), b"DICM")
        self.assertEqual(list(path.parent.iterdir()), [path])  # no temporary file left

    def test_missing_ca_bundle(self):
        with self.assertRaisesRegex(ValueError, "CA bundle /no/such.pem"):
            DicomWebStore("https://pacs/dicom-web", ca_bundle="/no/such.pem", credentials=None)


class _TLSProxy:
    """An HTTPS reverse proxy on 127.0.0.1 that requires ``Authorization: Bearer <token>`` and forwards to Orthanc."""

    def __init__(self, target: str, cert: str, key: str, token: str) -> None:
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _forward(self) -> None:
                if self.headers.get("Authorization") != f"Bearer {token}":
                    self.send_response(401)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "authorization")}
                r = requests.request(self.command, target + self.path, data=body or None, headers=headers, timeout=60)
                self.send_response(r.status_code)
                for k, v in r.headers.items():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length", "content-encoding"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(r.content)))
                self.end_headers()
                self.wfile.write(r.content)

            do_GET = do_POST = _forward

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        proxy.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@unittest.skipIf(orthanc_unavailable() is not None, orthanc_unavailable() or "")
@unittest.skipIf(shutil.which("openssl") is None, "openssl is needed to make a test certificate")
class TestTLSAndToken(unittest.TestCase):
    TOKEN = "b3arer-t0ken-value"

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        d = Path(cls.tmp.name)
        cls.cert, key = str(d / "cert.pem"), str(d / "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cls.cert,
                        "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                       check=True, capture_output=True)
        cls.pacs = Orthanc()
        cls.pacs.start()
        cls.proxy = _TLSProxy(cls.pacs.url, cls.cert, key, cls.TOKEN)
        cls.url = cls.proxy.url + "/dicom-web"

    @classmethod
    def tearDownClass(cls):
        cls.proxy.close()
        cls.pacs.stop()
        cls.tmp.cleanup()

    def _store(self, token: str, **kw) -> DicomWebStore:
        return DicomWebStore(self.url, credentials=DicomWebCredentials(token=token, source="test"),
                             cache_dir=Path(self.tmp.name) / "cache", **kw)

    def test_verification_is_on_by_default(self):
        env = os.environ.pop(ENV_CA_BUNDLE, None)
        try:
            with self.assertRaises(PacsTLSError) as ctx:
                self._store(self.TOKEN).image_series()
        finally:
            if env is not None:
                os.environ[ENV_CA_BUNDLE] = env
        self.assertIn("could not be verified", str(ctx.exception))
        self.assertIn(ENV_CA_BUNDLE, str(ctx.exception))

    def test_ca_bundle_and_token(self):
        self.assertEqual(self._store(self.TOKEN, ca_bundle=self.cert).image_series(), [])

    def test_wrong_token_and_no_secret_in_logs(self):
        records: list[str] = []

        class Keep(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                records.append(self.format(record))

        handler, root = Keep(level=logging.DEBUG), logging.getLogger()
        old = root.level
        root.addHandler(handler)
        root.setLevel(logging.DEBUG)
        try:
            with self.assertRaises(PacsAuthError) as ctx:
                self._store("wrong-t0ken-value", ca_bundle=self.cert).image_series()
            self._store(self.TOKEN, ca_bundle=self.cert).image_series()
        finally:
            root.removeHandler(handler)
            root.setLevel(old)
        self.assertIn("HTTP 401", str(ctx.exception))
        self.assertIn("a bearer token from test", str(ctx.exception))
        text = "\n".join(records) + str(ctx.exception)
        self.assertGreater(len(records), 0)
        for secret in (self.TOKEN, "wrong-t0ken-value"):
            self.assertNotIn(secret, text)


if __name__ == "__main__":
    unittest.main()
