#!/usr/bin/env bash
# Runs the parity harness (sdw run cuda-parity) against the CUDA kernels
# emulated on the host (emu.h): kernels/cuda/*.cu (all but backend.cu and
# nccl_engine.cu; cuBLAS and cuDNN become the reference loops of
# emu_libs.h) are turned into C++
# (launches become emu_launch calls), compiled with g++ and linked with the
# CPU backend, and compared case by case. Slow (one thread per CUDA thread):
# only small cases. Needs a built tree (make build/sdw). Usage:
#   tools/cuda_emu/run.sh [SUBSTRING...]   (default: the small cases)
# SDW_EMU_SMEM=101376 gives blocks the shared memory of sm_86/89/120.
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${BUILD:=build}"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for f in elementwise activation upsample norm softmax embedding loss optim attention gemm conv; do
  python3 - "kernels/cuda/$f.cu" "$out/$f.cpp" <<'PY'
import re, sys
src = open(sys.argv[1]).read()
src = src.replace('#include "kernels/cuda/cuda_common.h"', '#include "tools/cuda_emu/emu.h"')
src = re.sub(r'#include <cuda_[a-z0-9]*\.h>\n', '', src)
src = src.replace('extern __shared__ float smem[];', 'float *smem = emu_smem;')
pat = re.compile(r'([A-Za-z_][A-Za-z_0-9]*(?:<[^<>;]*>)?)\s*<<<\s*([^,]+?),\s*([^,]+?),\s*([^,]+?),\s*(.+?)>>>\s*\((.*?)\);', re.S)
src, n = pat.subn(lambda m: 'emu_launch(dim3(%s), dim3(%s), %s, [&]{ %s(%s); });' % (m.group(2), m.group(3), m.group(4), m.group(1), m.group(6)), src)
if '<<<' in src:
    sys.exit('untranslated launch in ' + sys.argv[1])
open(sys.argv[2], 'w').write(src)
PY
done
objs=$(ls "$BUILD"/kernels/cpu/*.o "$BUILD"/core/base/*.o "$BUILD"/core/cli/run_cuda_parity.o)
g++ -std=c++20 -O1 -ffp-contract=off -w -I. -I/usr/local/cuda/include "$out"/*.cpp \
  tools/cuda_emu/emu_backend.cpp -x none $objs -o "$out/emu" -fopenmp -lopenblas -lcjson -lpng -ljpeg -lzstd -lz -lm -lpthread
if [ $# -eq 0 ]; then
  set -- "[2,5,7,9]" "[3,1001]" "[3,2002]" "[2,3,5,7]" "[2,32,9,7]" "[3,64,100]" "[3,5,40]" \
    "softmax_forward [5,77]" "softmax_backward [5,77]" "B2 Tq37" "B3 Tq33" "B1 Tq33" "Tq21" \
    "Dh160" "Dh512" "timestep" "embedding" "mse_loss_forward [3" "mse_loss_backward [3" "n=1001" \
    "linear_forward [1,37" "linear_backward [1,37" "linear_forward [3,5,1]" "linear_backward [3,5,1]" \
    "matmul [1]" "matmul [3]" "matmul [2]" "x[2,3,17,17]" "x[2,4,16,15]" "x[1,8,9,9]" "x[1,4,11,11]" \
    "x[2,4,7,7]" "x[1,8,8,8]" " only d"
fi
"$out/emu" "$@"
