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

# mmpoly itself, editable, pointing at this checkout.
here=$(pwd -P)
if ! have "import mmpoly, os; assert os.path.realpath(mmpoly.__file__).startswith('$here/')"; then
  echo "[setup] mmpoly (editable)"
  $PIP install --no-deps --no-build-isolation -e .
fi

"$PY" -c "import torch, mmcv, mmengine, mmseg, mmpoly; print('[setup] ready: torch', torch.__version__, '| mmcv', mmcv.__version__, '| mmengine', mmengine.__version__, '| mmseg', mmseg.__version__, '| mmpoly', mmpoly.__version__)"
