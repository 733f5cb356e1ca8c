# Copyright (c) monai_jrs contributors
# Licensed under the Apache License, Version 2.0 (the "License"); see LICENSE.
"""Tests against a real Orthanc PACS with DICOMweb, started by the tests on 127.0.0.1 (tests/pacs/orthanc.py)."""
