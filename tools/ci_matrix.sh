#!/usr/bin/env bash
# The suite under every CPU kernel set torch can pick on this machine and 1 or 2 torch threads:
# float32 rounding differs between them (AVX-512 vs AVX2 vs plain kernels, matmul blockings),
# so an equality claim that holds in one cell only is caught here, not on a user's machine.
# A last cell stands in for another BLAS (arm64's, an older CPU's): plain ATen kernels, MKL's
# conditional-reproducibility path (MKL_CBWR=COMPATIBLE: other blockings, and a row's product
# may depend on the rows around it) and oneDNN limited to SSE4.1.
#
#   bash tools/ci_matrix.sh                 # the whole suite, 7 cells (about 50 minutes on 2 cores)
#   bash tools/ci_matrix.sh tests/models    # a part of it
#
# Each cell is `python -m pytest ARGS -n 2` with ATEN_CPU_CAPABILITY and MMPOLY_TORCH_THREADS
# (read by tests/conftest.py) set; the script stops at the first red cell and names it.
set -uo pipefail
cd "$(dirname "$0")/.."
args=("$@")
[ ${#args[@]} -gt 0 ] || args=(tests)
native=$(python -c "import torch; print(torch.backends.cpu.get_cpu_capability().lower())")
caps=(default avx2)
case " ${caps[*]} " in *" $native "*) ;; *) caps+=("$native") ;; esac
cell() {  # cell VAR=VALUE...: the suite with those variables set; stop at a red one
  echo "[matrix] $*"
  if ! env "$@" python -m pytest "${args[@]}" -n 2 -q -p no:cacheprovider; then
    echo "[matrix] RED: $*" >&2
    exit 1
  fi
}
for cap in "${caps[@]}"; do
  for threads in 1 2; do
    cell ATEN_CPU_CAPABILITY="$cap" MMPOLY_TORCH_THREADS="$threads"
  done
done
cell ATEN_CPU_CAPABILITY=default MKL_CBWR=COMPATIBLE ONEDNN_MAX_CPU_ISA=SSE41
echo "[matrix] green in every cell: ${caps[*]} x threads 1, 2; another BLAS's blockings"
