#!/usr/bin/env bash
# Proves the fresh-machine paths of the README, each in a brand-new virtual environment with nothing preinstalled:
#   1. the README's main command (the fenced block after `<!-- main-command -->`), exactly as written, with
#      `--train#trainer#max_epochs 1` appended, on a copy of this checkout with an empty monai_jrs cache (so the
#      embedded dataset is rendered as on a new machine); a model file must be written; then the documented bundle
#      inference command on that default data with the shipped model;
#   2. `pip wheel .`, the wheel installed into another new environment, and `monai-jrs register` run on a generated
#      pair from a folder outside the checkout, with the shipped model found inside the wheel.
# Called by .ci/run after the test command; runs standalone too: `bash .ci/fresh_machine.sh`.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
python=${PYTHON:-python3}
work=$(mktemp -d "${TMPDIR:-/tmp}/monai_jrs_fresh.XXXXXX")
trap 'rm -rf "$work"' EXIT
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1

main_cmd=$(awk '/<!-- main-command -->/{f=1;next} f&&/^```bash/{g=1;next} g&&/^```/{exit} g{print}' README.md)
if [ -z "$main_cmd" ]; then echo "fresh_machine: no main command found in README.md" >&2; exit 2; fi

# --- 1. the main command in a new environment, on a copy of the checkout (tracked + untracked, not ignored) ---
mkdir -p "$work/checkout"
git ls-files -z --cached --others --exclude-standard | tar -C "$repo" --null -T - -cf - | tar -C "$work/checkout" -xf -
"$python" -m venv "$work/venv-main"
echo "+ [new venv, empty cache] $main_cmd --train#trainer#max_epochs 1"
(
  cd "$work/checkout"
  # shellcheck disable=SC1091
  source "$work/venv-main/bin/activate"
  export MONAI_JRS_CACHE="$work/cache"
  t0=$(date +%s)
  bash -euo pipefail -c "$main_cmd --train#trainer#max_epochs 1"
  echo "fresh_machine: main command took $(( $(date +%s) - t0 )) s"
  ls -l jrs_run/models
  test -s jrs_run/models/checkpoint_final.pt || { echo "fresh_machine: no checkpoint_final.pt written" >&2; exit 1; }
  python - <<'EOF'
import torch
ckpt = torch.load("jrs_run/models/checkpoint_final.pt", map_location="cpu", weights_only=True)
assert "model" in ckpt and any(k.endswith("weight") for k in ckpt["model"]), sorted(ckpt)
print("fresh_machine: checkpoint holds", len(ckpt["model"]), "generator tensors")
EOF
  # bundle inference as documented, on the default data the main command generated, with the shipped model
  infer_cmd=$(grep -o 'python -m monai.bundle run --config_file bundle/configs/inference.json[^`]*' bundle/docs/README.md | head -n 1)
  test -n "$infer_cmd" || { echo "fresh_machine: no inference command in bundle/docs/README.md" >&2; exit 1; }
  echo "+ [same venv] $infer_cmd"
  bash -euo pipefail -c "$infer_cmd"
  n=$(ls jrs_out/*/metrics.json | wc -l)
  test "$n" -gt 0 || { echo "fresh_machine: bundle inference wrote no outputs" >&2; exit 1; }
  echo "fresh_machine: bundle inference wrote $n pairs"
)

# --- 2. the wheel in another new environment, used from a folder outside the checkout ---
"$work/venv-main/bin/python" -m pip wheel --no-deps -q -w "$work/dist" "$work/checkout"
wheel=$(ls "$work"/dist/monai_jrs-*.whl)
echo "+ [new venv] pip install torch==2.13.0 && pip install $(basename "$wheel")"
"$python" -m venv "$work/venv-wheel"
(
  # shellcheck disable=SC1091
  source "$work/venv-wheel/bin/activate"
  pip install -q torch==2.13.0
  pip install -q "$wheel"
  mkdir -p "$work/elsewhere" && cd "$work/elsewhere"
  python - <<'EOF'
import numpy as np
from PIL import Image

import monai_jrs.apps.registration as reg
from monai_jrs.data.testing import make_synthetic_xray

assert "site-packages" in str(reg.default_bundle_dir()), reg.default_bundle_dir()
image, mask = make_synthetic_xray((320, 288), max_value=65535, seed=1)
Image.fromarray(image).save("reference.png")
Image.fromarray(mask * 255).save("reference_mask.png")
shifted = np.roll(image, (6, -4), axis=(0, 1))
Image.fromarray(shifted).save("followup.png")
EOF
  monai-jrs register --reference reference.png --reference-mask reference_mask.png --floating followup.png \
    --output out --no-progress
  for f in registered.nii.gz ddf.nii.gz floating_mask.nii.gz registered_mask.nii.gz overlay.png metrics.json; do
    test -s "out/followup/$f" || { echo "fresh_machine: out/followup/$f missing" >&2; exit 1; }
  done
  python -c "import json; m = json.load(open('out/followup/metrics.json')); print('fresh_machine: wheel register ok,', \
{k: m[k] for k in m if 'dice' in k})"
)
echo "fresh_machine: both fresh-machine paths passed"
