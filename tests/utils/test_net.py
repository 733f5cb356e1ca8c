# Copyright (c) monai_jrs contributors
# Licensed under the Apache License, Version 2.0 (the "License"); see LICENSE.
from __future__ import annotations

import socket
import unittest

from monai_jrs.utils.net import free_port


class TestFreePort(unittest.TestCase):
    def test_the_port_can_be_bound_on_loopback(self):
        port = free_port()
        self.assertIsInstance(port, int)
        self.assertTrue(1024 <= port <= 65535, port)
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))  # released: a server can take it
            self.assertEqual(s.getsockname()[1], port)


if __name__ == "__main__":
    unittest.main()
