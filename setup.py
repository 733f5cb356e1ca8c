# Copyright (c) monai_jrs contributors
# Licensed under the Apache License, Version 2.0 (the "License"); see LICENSE.
"""Packaging for monai_jrs. ``pip install -e .`` for the library, ``.[dev]`` for the test tools."""

from __future__ import annotations

import os

from setuptools import find_packages, setup

here = os.path.abspath(os.path.dirname(__file__))
version: dict[str, str] = {}
with open(os.path.join(here, "monai_jrs", "_version.py")) as f:
    exec(f.read(), version)

with open(os.path.join(here, "README.md"), encoding="utf-8") as f:
    long_description = f.read()

# torch is deliberately unpinned beyond MONAI's own floor: users who already have a torch build keep it.
install_requires = [
    "torch>=2.8",
    "monai>=1.6.1,<1.7",
    "numpy>=1.24,<3",
    "scipy>=1.10",  # connected components, distance transforms, zoom (simulation/drr.py, transforms/post, ...)
    "pytorch-ignite>=0.4.11",
    "nibabel>=5.0",
    "pydicom>=3.0.1",
    "highdicom>=0.26.1",
    "pillow>=9.0",
    "tqdm>=4.60",
    "fire>=0.5",  # python -m monai.bundle
    "pyyaml>=6.0",  # YAML bundle configs
    "jsonschema>=3.2",  # monai.bundle verify_metadata (draft-07 schema); <4 is what monailabel's pydicom-seg allows
    "tensorboard>=2.10",  # TensorBoard handlers of the bundle
]

#: files of the shipped MONAI bundle, relative to the package (see package_data below).
BUNDLE_FILES = [
    "bundle/LICENSE",
    "bundle/configs/*.json",
    "bundle/configs/logging.conf",
    "bundle/docs/*.md",
    "bundle/docs/*.txt",
    "bundle/models/model.pt",
]

extras_require = {
    # playwright drives Debian's chromium for the OHIF viewer check; dcmqi writes the SEGs of 3D Slicer and MONAI
    # Label's stock datastore that read_dicom_seg must read (tests/pacs, tests/data/test_dicom_seg_compat.py)
    "dev": ["pytest>=7", "pytest-xdist>=3", "parameterized>=0.9", "playwright>=1.40", "dcmqi>=1.3"],
    "elastix": ["itk-elastix>=0.20"],
    # python -m monai.bundle onnx_export and its check with ONNX Runtime (bundle/docs/README.md)
    "onnx": ["onnx>=1.17", "onnxruntime>=1.20", "onnxscript>=0.2"],
    # MONAI Label 0.8.5 needs torchvision; see docs/monailabel.md: install torch==2.14.1 torchvision==0.29.1 first.
    # SimpleITK writes the result labels with the image geometry (docs/monailabel.md).
    # fastapi (a dependency of monailabel): the DICOMweb datastore answers HTTP errors itself
    "monailabel": ["monailabel==0.8.5", "SimpleITK>=2.2", "dicomweb-client>=0.59", "requests>=2.28", "fastapi"],
    # monai-jrs pacs and the MONAI Label DICOMweb datastore (docs/pacs.md)
    "pacs": ["dicomweb-client>=0.59", "requests>=2.28"],
}
extras_require["all"] = sorted({d for k, v in extras_require.items() if k != "monailabel" for d in v})

setup(
    name="monai_jrs",
    version=version["__version__"],
    description="Joint registration and segmentation of chest X-rays with GANs (Mahapatra et al.), as MONAI components",
    long_description=long_description,
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    packages=find_packages(include=["monai_jrs", "monai_jrs.*"]),
    # The MONAI bundle lives once, at the repository root (bundle/); monai_jrs/bundle is a symbolic link to it, so
    # that importlib.resources finds it from a checkout, an editable install and a wheel alike
    # (monai_jrs.apps.registration.default_bundle_dir). Only the files of the bundle itself are packaged, never
    # run outputs that a user may have written under bundle/ (eval/, checkpoints).
    package_data={"monai_jrs": ["py.typed", *BUNDLE_FILES]},
    python_requires=">=3.10",
    install_requires=install_requires,
    extras_require=extras_require,
    entry_points={"console_scripts": ["monai-jrs = monai_jrs.apps.cli:main"]},
    classifiers=[
        "License :: OSI Approved :: Apache Software License",
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Medical Science Apps.",
    ],
)
