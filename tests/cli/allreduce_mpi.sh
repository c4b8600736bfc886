#!/usr/bin/env bash
# The MPI data-parallel engine under Open MPI's mpirun: `sdw run
# allreduce-check` on 2 and 3 ranks. Each rank checks the f32 mean against a
# double-precision reference (bound: the roundings of a (world-1)-term f32
# sum and of the 1/world scaling, see core/cli/run_allreduce.c), the exact
# f64 sum of integers, a broadcast from the last rank, and that its mean is
# bit-identical to rank 0's. Also: "auto" picks mpi under mpirun, a failing
# rank ends the job instead of hanging it, and a missing MPI library is one
# error line with exit status 1.
# Skipped (passes with a note) when mpirun or libmpi.so.40 is absent.
set -euo pipefail
cd "$(dirname "$0")/../.."
if ! command -v mpirun >/dev/null || ! ldconfig -p | grep -F libmpi.so.40 >/dev/null; then
  echo "skip: Open MPI (mpirun, libmpi.so.40) is not installed (tools/deps.sh)"
  exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# a container: shared memory between local ranks without ptrace-based
# single copy, no ssh agent needed for local launches, root allowed
export OMPI_MCA_btl=self,vader OMPI_MCA_btl_vader_single_copy_mechanism=none
export OMPI_MCA_plm_rsh_agent= OMPI_MCA_rmaps_base_oversubscribe=1
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMP_NUM_THREADS=1
# under SANITIZE: Open MPI's own allocations outlive MPI_Finalize (its
# plugins are unloaded, LeakSanitizer cannot even name them); our code's
# leaks are checked by the tcp tests and the unit tests
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"

for np in 2 3; do
  timeout 120 mpirun -np $np "$SDW" run allreduce-check --engine mpi --n 20011 >"$tmp/out" 2>"$tmp/err" || {
    cat "$tmp/out" "$tmp/err"
    echo "mpirun -np $np allreduce-check failed"
    exit 1
  }
  for ((r = 0; r < np; r++)); do
    grep -E "^allreduce-check: engine mpi rank $r world $np n 20011 .* identical yes .* ok$" "$tmp/out" >/dev/null || {
      cat "$tmp/out" "$tmp/err"
      echo "rank $r of $np did not report ok"
      exit 1
    }
  done
  [ "$(grep -c '^allreduce-check:' "$tmp/out")" -eq $np ]
done

# auto selects mpi when launched by mpirun
timeout 120 mpirun -np 2 "$SDW" run allreduce-check --n 1000 --repeat 0 >"$tmp/out" 2>"$tmp/err"
[ "$(grep -c '^allreduce-check: engine mpi rank [01] world 2 .* ok$' "$tmp/out")" -eq 2 ]

# a rank that fails ends the job (MPI_Abort at its exit), never hangs it
for np in 2 3; do
  rc=0
  timeout 60 mpirun -np $np "$SDW" run allreduce-check --fail-rank 1 >"$tmp/out" 2>"$tmp/err" || rc=$?
  [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] || { echo "fail-rank: mpirun -np $np exited $rc"; exit 1; }
  grep -F "rank 1 fails on request" "$tmp/err" >/dev/null
done

# outside mpirun auto is single; a missing library is one error line, exit 1
env -u SDW_DIST -u OMPI_COMM_WORLD_SIZE -u PMI_SIZE -u PMIX_RANK -u SDW_DIST_INIT \
  "$SDW" run allreduce-check --n 100 >"$tmp/out"
grep -E '^allreduce-check: engine single rank 0 world 1 .* ok$' "$tmp/out" >/dev/null
rc=0
SDW_MPI_LIB=/nonexistent/libmpi.so "$SDW" run allreduce-check --engine mpi >"$tmp/out" 2>"$tmp/err" || rc=$?
[ "$rc" -eq 1 ]
[ "$(wc -l <"$tmp/err")" -eq 1 ]
grep -F "SDW_MPI_LIB=/nonexistent/libmpi.so" "$tmp/err" >/dev/null
rc=0
"$SDW" run allreduce-check --engine gloo >"$tmp/out" 2>"$tmp/err" || rc=$?
[ "$rc" -eq 1 ]
grep -F "unknown engine 'gloo'" "$tmp/err" >/dev/null
echo ok
