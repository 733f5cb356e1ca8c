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
"""``monai-jrs`` command line: ``monai-jrs register --reference REF --reference-mask MASK --floating FLT ... -o OUT``
and ``monai-jrs pacs --url URL --patient ID`` (:mod:`monai_jrs.apps.pacs`)."""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import time
from collections.abc import Sequence

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``monai-jrs``."""
    parser = argparse.ArgumentParser(prog="monai-jrs", description="Joint registration and segmentation of chest X-rays.")
    sub = parser.add_subparsers(dest="command", required=True)
    reg = sub.add_parser(
        "register",
        help="register follow-up X-rays onto an annotated reference and segment their lungs",
        description="Register each floating (follow-up) X-ray onto the reference and write, per floating image, "
        "OUT_DIR/<stem>/{registered,ddf,registered_mask,floating_mask}.nii.gz, overlay.png, metrics.json and, for "
        "DICOM inputs, floating_mask_seg.dcm; also subtraction.nii.gz/.png, the temporal subtraction (follow-up with "
        "intensities matched minus reference; bright = denser at follow-up).",
    )
    reg.add_argument("--reference", help="reference X-ray: DICOM file/folder, PNG/JPEG, NIfTI")
    reg.add_argument("--reference-mask", help="lung mask of the reference: PNG, NIfTI, NumPy, DICOM SEG")
    reg.add_argument("--floating", nargs="+", help="follow-up X-rays: files and/or DICOM folders")
    reg.add_argument("--datalist", default=None,
                     help="instead of --reference/--reference-mask/--floating: a JSON list of {reference, "
                          "reference_mask, floating} pairs (or a monai_jrs datalist, --section): batched, resumable "
                          "(rerun the same command to continue), multi-process under torchrun; OUT/metrics.csv")
    reg.add_argument("--section", default=None, help="datalist section (default: test)")
    reg.add_argument("--batch-size", type=int, default=4,
                     help="with --datalist: follow-ups of one reference per forward pass (default 4)")
    reg.add_argument("--num-workers", type=int, default=0,
                     help="with --datalist: loader processes (default 0: a background loading thread)")
    reg.add_argument("--processes", type=int, default=1,
                     help="with --datalist: start this many worker processes on this machine, as torchrun would "
                          "(torch.distributed, gloo on CPU; one thread each unless OMP_NUM_THREADS is set). On a CPU, "
                          "one per core is fastest (default 1)")
    reg.add_argument("--output", "-o", required=True, help="output folder (created; never inside an input folder)")
    reg.add_argument("--bundle", default=None, help="bundle folder (default: the bundle shipped with monai_jrs)")
    reg.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    reg.add_argument("--size", type=int, default=None, help="network grid size (default: the bundle's)")
    reg.add_argument("--refine", action=argparse.BooleanOptionalAction, default=True,
                     help="refine each field at full resolution over the whole image (affine + dense, "
                          "monai_jrs.networks.blocks.DenseRefinement; the default). --no-refine: the network alone, "
                          "faster and less accurate (docs/evaluation.md, real radiographs)")
    reg.add_argument("--overlay", action=argparse.BooleanOptionalAction, default=True,
                     help="write overlay.png, a preview with the lung contours (--no-overlay: faster)")
    reg.add_argument("--subtraction", action=argparse.BooleanOptionalAction, default=True,
                     help="write subtraction.nii.gz and subtraction.png, the temporal subtraction (registered "
                          "follow-up minus reference after intensity matching; --no-subtraction: faster)")
    reg.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    reg.add_argument("--no-progress", action="store_true", help="no progress bar")

    pacs = sub.add_parser(
        "pacs",
        help="register every follow-up of a patient in a DICOMweb PACS and store SEG, overlay and subtraction back",
        description="Find the patient's labelled reference visit in a DICOMweb PACS (QIDO-RS), register every other "
        "DX/CR visit onto it and store, as new series in each follow-up's study that reference the sources (STOW-RS): "
        "the lung SEG, a Secondary Capture with the lung contour and a Secondary Capture temporal subtraction "
        "(follow-up minus reference after intensity matching). A second run stores nothing twice; nothing in the "
        "PACS is modified or deleted. Credentials: MONAI_JRS_DICOMWEB_USERNAME + MONAI_JRS_DICOMWEB_PASSWORD, "
        "MONAI_JRS_DICOMWEB_TOKEN or a netrc file (MONAI_JRS_NETRC, default ~/.netrc), never on the command line; "
        "MONAI_JRS_DICOMWEB_CA_BUNDLE: CA file of an https PACS. Exit status: 0 done, 1 some follow-ups failed, "
        "2 bad request (unknown patient/study, no labelled visit, PACS unreachable or refusing the credentials).",
    )
    pacs.add_argument("--url", required=True, help="DICOMweb base URL, e.g. http://127.0.0.1:8042/dicom-web")
    who = pacs.add_mutually_exclusive_group(required=True)
    who.add_argument("--patient", help="PatientID: every visit but the reference is a follow-up")
    who.add_argument("--study", help="StudyInstanceUID: its DX/CR series are the follow-ups")
    pacs.add_argument("--reference", default="earliest", choices=("earliest", "latest", "nearest"),
                      help="which labelled visit is the reference (default: earliest)")
    pacs.add_argument("--output", "-o", default=None,
                      help="also keep the monai-jrs register files under OUTPUT/<follow-up series UID>/")
    pacs.add_argument("--bundle", default=None, help="bundle folder (default: the bundle shipped with monai_jrs)")
    pacs.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    pacs.add_argument("--size", type=int, default=None, help="network grid size (default: the bundle's)")
    pacs.add_argument("--refine", action=argparse.BooleanOptionalAction, default=True,
                      help="full-resolution refinement (default; --no-refine: the network alone)")
    pacs.add_argument("--dry-run", action="store_true", help="report what would be stored; register nothing")
    pacs.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 1 some pairs or PACS follow-ups failed, 2 bad input or
    existing outputs, 3 a ``--processes`` worker crashed)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            print("error: --device cuda requested but no CUDA device is available.", file=sys.stderr)
            return 2
    if args.command == "pacs":
        from monai_jrs.apps.pacs import main_pacs

        return main_pacs(args)
    if args.datalist is not None:
        return _register_datalist(args, sys.argv[1:] if argv is None else list(argv))
    missing = [f"--{k.replace('_', '-')}" for k in ("reference", "reference_mask", "floating") if not getattr(args, k)]
    if missing:
        print(f"error: give --datalist or all of --reference, --reference-mask, --floating (missing {missing}).",
              file=sys.stderr)
        return 2
    from monai_jrs.apps.registration import register

    try:
        results = register(
            args.reference, args.reference_mask, args.floating, args.output, bundle_dir=args.bundle,
            device=args.device, size=args.size, overwrite=args.overwrite, progress=not args.no_progress,
            refine=args.refine, overlay=args.overlay, subtraction=args.subtraction,
        )
    except (FileNotFoundError, FileExistsError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for r in results:
        print(f"{r['output_dir']}: Dice(reference mask, registered mask) = {r['dice_reference_vs_registered_mask']:.3f}, "
              f"{r['timings_s']['total_s']:.2f} s")
    return 0


def _register_datalist(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """``monai-jrs register --datalist``: :func:`monai_jrs.apps.batch.run_batch` (0 all done, 1 some failed)."""
    if any(getattr(args, k) for k in ("reference", "reference_mask", "floating")):
        print("error: --datalist replaces --reference/--reference-mask/--floating; give one or the other.",
              file=sys.stderr)
        return 2
    if args.processes < 1:
        print(f"error: --processes must be >= 1, got {args.processes}.", file=sys.stderr)
        return 2
    if args.processes > 1 and "WORLD_SIZE" not in os.environ:
        return _launch_workers(args.processes, argv)
    from monai_jrs.apps.batch import read_pairs, run_batch
    from monai_jrs.apps.registration import JRSRegistrar

    try:
        pairs = read_pairs(args.datalist, args.section)
        device = args.device
        if device == "cuda":
            device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
        registrar = JRSRegistrar(args.bundle, device=device, size=args.size, refine=args.refine, overlay=args.overlay,
                                 subtraction=args.subtraction)
        report = run_batch(pairs, args.output, registrar, batch_size=args.batch_size, num_workers=args.num_workers,
                           progress=not args.no_progress)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    prefix = f"rank {report.rank}: " if report.world_size > 1 else ""
    import resource

    rate = len(report.done) / report.seconds if report.seconds > 0 else 0.0
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux
    print(f"{prefix}{len(report.done)} pair(s) registered, {len(report.skipped)} already complete, "
          f"{len(report.failed)} failed, {report.seconds:.2f} s ({rate:.3f} pairs/s), peak memory {peak_mib:.0f} MiB")
    for pair_id, reason in report.failed.items():
        print(f"{prefix}failed {pair_id}: {reason}", file=sys.stderr)
    if report.csv_path is not None:
        print(f"metrics: {report.csv_path} ({report.total_failed} of {len(pairs)} pair(s) not done)")
    return 1 if report.failed or report.total_failed else 0


def _without_processes(argv: Sequence[str]) -> list[str]:
    """``argv`` without its ``--processes N`` / ``--processes=N``."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--processes":
            skip = True
        elif not a.startswith("--processes="):
            out.append(a)
    return out


def _launch_workers(processes: int, argv: Sequence[str]) -> int:
    """``register --datalist --processes N``: N copies of the command with torchrun's environment (``RANK``,
    ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` 127.0.0.1, a free ``MASTER_PORT``). Returns the largest exit
    status (0 done, 1 some pairs failed); if a worker dies otherwise, the others are stopped."""
    from monai_jrs.utils.net import free_port

    port = free_port()
    cmd = [sys.executable, "-m", "monai_jrs.apps.cli", *_without_processes(argv)]
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": str(processes),
           "LOCAL_WORLD_SIZE": str(processes)}
    env.setdefault("OMP_NUM_THREADS", "1")  # as torchrun: the processes share the cores
    workers = [subprocess.Popen(cmd, env={**env, "RANK": str(r), "LOCAL_RANK": str(r)}) for r in range(processes)]
    try:
        while True:
            codes = [w.poll() for w in workers]
            bad = [c for c in codes if c is not None and c not in (0, 1)]
            if bad:  # 2: a bad request, which every rank finds; otherwise a crash or a kill
                _stop(workers, grace_s=10.0)
                if bad[0] != 2:
                    print(f"error: a worker process exited with status {bad[0]}; the others were stopped. Run the "
                          "same command again to continue.", file=sys.stderr)
                return bad[0] if bad[0] == 2 else 3
            if all(c is not None for c in codes):
                return max(codes)
            time.sleep(0.2)
    except KeyboardInterrupt:
        _stop(workers, grace_s=0.0)
        return 130


def _stop(workers: Sequence[subprocess.Popen], grace_s: float) -> None:
    """Let ``workers`` end by themselves for ``grace_s`` seconds, then terminate those still running and reap all."""
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and any(w.poll() is None for w in workers):
        time.sleep(0.2)
    for w in workers:
        if w.poll() is None:
            w.terminate()
    for w in workers:
        w.wait()


if __name__ == "__main__":
    sys.exit(main())
