#!/usr/bin/env bash
# Install everything mmpoly needs into the active Python environment, the way OpenMMLab's
# guides do. Idempotent: each step is skipped when what it installs already works, so a
# second run takes seconds.
#
#   bash tools/setup_env.sh
#
# mmsegmentation 1.2.2 imports mmcv.ops, so it needs the full mmcv (not mmcv-lite) < 2.2,
# i.e. mmcv 2.1.0, which has no wheel for torch 2.13 and is compiled here (about 15 minutes
# on 2 cores). Set MMCV_WHEEL=/path/to/mmcv-2.1.0-*.whl to install a prebuilt one instead.
#
# mmpretrain 1.2.0 (the DINOv2 configs' encoder) imports torchvision.ops, whose compiled ops
# must match the torch build: torchvision 0.28.0 beside the CPU-only torch-2.13.0+cpu file some
# pip configurations prefer fails with "operator torchvision::nms does not exist". So torch
# and torchvision are installed as the index's standard matched pair (about 2.6 GB with its
# CUDA libraries, which also run without a GPU), and torchvision.ops.nms is checked.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
PIP="$PY -m pip"

# run checks outside the checkout so that "import mmpoly" finds only an installed one
have() { (cd / && "$PY" -c "$1") >/dev/null 2>&1; }

if ! have "import setuptools, ninja, wheel; v = tuple(map(int, setuptools.__version__.split('.')[:2])); assert (77, 0) <= v < (81, 0)"; then
  echo "[setup] build tools"
  $PIP install -r requirements/build.txt
fi

if ! have "import torch; assert torch.__version__.startswith('2.13.')"; then
  echo "[setup] torch 2.13"
  $PIP install torch==2.13.0
fi

if ! have "import mmengine; assert mmengine.__version__ == '0.10.7'"; then
  echo "[setup] mmengine"
  $PIP install mmengine==0.10.7
fi

if ! have "import mmcv, mmcv.ops; assert mmcv.__version__ == '2.1.0'"; then
  if [ -n "${MMCV_WHEEL:-}" ]; then
    echo "[setup] mmcv from $MMCV_WHEEL"
    $PIP install "$MMCV_WHEEL"
  else
    echo "[setup] mmcv 2.1.0 with ops, built from source (about 15 minutes on 2 cores)"
    MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-$(nproc)} \
      $PIP install --no-build-isolation --no-binary mmcv mmcv==2.1.0
  fi
fi

# skimage: the thinning of PASCAL-Context's edge labels; numba: the edge metric's compiled
# thinning and matching; xdist: the suite's two workers
if ! have "import mmseg, scipy, cv2, matplotlib, ftfy, regex, skimage, numba, pytest, xdist; assert mmseg.__version__ == '1.2.2'"; then
  echo "[setup] mmsegmentation and runtime requirements"
  $PIP install mmsegmentation==1.2.2 -r requirements/runtime.txt -r requirements/tests.txt
fi

# torch + torchvision as a matched pair: torchvision's own nms op must run
TV_CHECK="import torch, torchvision; assert torch.__version__.startswith('2.13.') and torchvision.__version__.startswith('0.28.'); torchvision.ops.nms(torch.rand(3, 4), torch.rand(3), 0.5)"
if ! have "$TV_CHECK"; then
  why=$( (cd / && "$PY" -c "$TV_CHECK") 2>&1 | tail -n 1 || true)
  echo "[setup] torch + torchvision: no working matched pair ($why);"
  echo "[setup]   installing the standard pair from the package index (about 2.6 GB)"
  # --isolated: not the machine's pip configuration (it may prefer the +cpu torch file);
  # --force-reinstall: pip takes an installed 2.13.0+cpu for 2.13.0 and would keep it;
  # --no-deps there, then the missing dependencies only (CUDA libraries), so that numpy,
  # setuptools, ... already installed are not replaced
  $PIP install --isolated --force-reinstall --no-deps torch==2.13.0 torchvision==0.28.0
  $PIP install --isolated torch==2.13.0 torchvision==0.28.0
  have "$TV_CHECK" || { echo "[setup] torchvision.ops.nms still fails:"; (cd / && "$PY" -c "$TV_CHECK"); exit 1; }
  # the new torch must still load mmcv's compiled ops (same torch version, same ABI)
  have "import mmcv.ops, torch; mmcv.ops.nms(torch.rand(3, 4) * 10, torch.rand(3), 0.5)" \
    || { echo "[setup] mmcv.ops no longer loads with the new torch: rebuild mmcv (rerun this script after pip uninstall -y mmcv)"; exit 1; }
fi

if ! have "import mmpretrain, mmpretrain.models; assert mmpretrain.__version__ == '1.2.0'"; then
  echo "[setup] mmpretrain 1.2.0"
  $PIP install mmpretrain==1.2.0
fi

# mmpoly itself, editable, pointing at this checkout.
here=$(pwd -P)
if ! have "import mmpoly, os; assert os.path.realpath(mmpoly.__file__).startswith('$here/')"; then
  echo "[setup] mmpoly (editable)"
  $PIP install --no-deps --no-build-isolation -e .
fi

"$PY" -c "import torch, torchvision, mmcv, mmengine, mmseg, mmpretrain, mmpoly; print('[setup] ready: torch', torch.__version__, '| torchvision', torchvision.__version__, '| mmcv', mmcv.__version__, '| mmengine', mmengine.__version__, '| mmseg', mmseg.__version__, '| mmpretrain', mmpretrain.__version__, '| mmpoly', mmpoly.__version__)"
