#!/usr/bin/env bash
# make test-cuda: the CUDA backend against the CPU backend and the goldens.
# Without a GPU (or without a CUDA build) it says SKIP and exits 0, so CI
# never depends on a GPU. With one, in this order (kernels/cuda/NOTES.md):
#   1. sdw run cuda-parity: every op forward and backward, CPU vs CUDA, fp32
#      mode (TF32 off: NVIDIA_TF32_OVERRIDE=0 as well as the backend's own
#      setting), one PASS/FAIL line per case;
#   2. the train-step golden (tests/cli/run_unet_grad.sh) with
#      `sdw run unet-grad --backend cuda`: loss and gradients vs PyTorch;
#   3. compute-sanitizer memcheck and racecheck on a subset of the parity
#      cases (small shapes: the tools slow kernels down 10-100x), when the
#      tool is installed;
#   4. the two-rank NCCL check (sdw run allreduce-check --engine nccl over tcp)
#      when this build has it.
# Exit status 1 when any step fails; every step runs, each under a timeout
# (a hung kernel must not eat the GPU session).
set -uo pipefail
cd "$(dirname "$0")/../.."
: "${SDW:=build/sdw}"
if ! "$SDW" info | grep '^  cuda:[0-9]' >/dev/null; then
  echo "SKIP: no CUDA device visible ('$SDW info' lists none)"
  exit 0
fi
if ! "$SDW" info | grep '^backends: .*cuda' >/dev/null; then
  echo "SKIP: a GPU is present but this build has no CUDA op backend"
  exit 0
fi
export NVIDIA_TF32_OVERRIDE=0
unset SDW_CUDA_MATH SDW_CUDA_TF32 # the parity tolerances are for fp32 arithmetic
fail=0
step() { echo; echo "=== $*"; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

step "1. parity: every op, CPU vs CUDA (fp32)"
"$SDW" info | sed -n '/^cuda:/,$p'
if ! timeout 300 "$SDW" run cuda-parity | tee "$tmp/parity.log"; then fail=1; fi

step "2. train-step golden on CUDA (sdw run unet-grad --backend cuda)"
# The models' activation arenas are host mmap memory (core/base/arena.c):
# GPU kernels can read them only where the device has pageable memory access
# (HMM / ATS); elsewhere this step cannot run until arenas can be device memory.
if grep 'pageable memory access (HMM/ATS) no' "$tmp/parity.log" >/dev/null; then
  echo "SKIP: this GPU cannot access pageable host memory (no HMM/ATS); the models'"
  echo "      activation arenas are host memory, so a model cannot run on it yet"
else
real=$(readlink -f "$SDW")
cat >"$tmp/sdw" <<SH
#!/usr/bin/env bash
if [ "\${1:-}" = run ] && [ "\${2:-}" = unet-grad ]; then
  shift 2
  exec "$real" run unet-grad --backend cuda "\$@"
fi
exec "$real" "\$@"
SH
chmod +x "$tmp/sdw"
if ! SDW="$tmp/sdw" timeout 300 bash tests/cli/run_unet_grad.sh; then fail=1; fi
fi

step "3. compute-sanitizer (memcheck, racecheck) on small parity cases"
sanitizer=$(command -v compute-sanitizer 2>/dev/null ||
  ls "${CUDA_HOME:-/usr/local/cuda}"/bin/compute-sanitizer 2>/dev/null || true)
if [ -n "$sanitizer" ]; then
  # small shapes only (each case name carries its shape), one process per tool
  small=("[2,5,7,9]" "[3,1001]" "[2,3,5,7]" "[2,32,9,7]" "[3,5,40]" "matmul [3]" "x[2,3,17,17]"
    "x[2,4,7,7]" "softmax_forward [5,77]" "softmax_backward [5,77]" "B2 Tq37" "B3 Tq33" "Dh160"
    "Dh512" "Tq21" " only d" "embedding" "mse_loss_forward [3" "mse_loss_backward [3" "n=1001")
  for tool in memcheck racecheck; do
    if ! timeout 300 "$sanitizer" --tool "$tool" --error-exitcode 3 "$SDW" run cuda-parity \
      "${small[@]}" >"$tmp/san.log" 2>&1; then
      echo "FAIL: compute-sanitizer --tool $tool:"
      grep -v '^PASS' "$tmp/san.log" | tail -60
      fail=1
    else
      echo "ok: $tool ($(grep -c '^PASS' "$tmp/san.log") cases)"
    fi
  done
else
  echo "SKIP: compute-sanitizer not installed"
fi

step "4. NCCL: two ranks on this GPU (tcp rendezvous)"
if "$SDW" run allreduce-check --help 2>&1 | grep nccl >/dev/null; then
  port=$((20000 + RANDOM % 20000))
  pids=()
  for r in 0 1; do
    SDW_DIST_INIT="tcp://127.0.0.1:$port" SDW_WORLD_SIZE=2 SDW_RANK=$r \
      timeout 120 "$SDW" run allreduce-check --engine nccl >"$tmp/nccl$r.log" 2>&1 &
    pids+=($!)
  done
  for r in 0 1; do
    if ! wait "${pids[$r]}"; then
      if grep -i 'duplicate GPU' "$tmp/nccl$r.log" >/dev/null; then
        # NCCL refuses two ranks on one device: a limit of NCCL, needs two GPUs
        echo "SKIP: rank $r: NCCL does not allow two ranks on one GPU here:"
      else
        echo "FAIL: rank $r:"
        fail=1
      fi
    fi
    cat "$tmp/nccl$r.log"
  done
else
  echo "SKIP: this build's allreduce-check has no nccl engine"
fi

echo
if [ $fail -ne 0 ]; then
  echo "test-cuda: FAILED"
  exit 1
fi
echo "test-cuda: all passed"
