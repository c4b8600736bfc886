#!/usr/bin/env bash
# Installs the Debian/Ubuntu packages sdw needs to build, test and run.
# Idempotent and quick when everything is present; as root it uses apt-get,
# otherwise it prints the exact command and fails.
set -euo pipefail

packages=(
  gcc make pkg-config git
  libopenblas-openmp-dev # GEMM for the CPU backend (OpenMP threading, like our own kernels)
  libcjson-dev           # JSON (safetensors headers, configs, protocol)
  libpng-dev             # PNG output
  zlib1g-dev             # gzip (CLIP vocabulary) and PNG
  libjpeg-dev            # JPEG decode/encode (pipeline; libjpeg-turbo on Debian/Ubuntu)
  libwebp-dev            # WebP decode (pipeline)
  libcurl4-openssl-dev   # HTTP downloads (pipeline: metadata, download)
  libzstd-dev            # zstd parquet pages
  libncurses-dev         # the workbench
  libsixel-dev           # sixel previews
  clang                  # libFuzzer targets (make fuzz)
  clang-format           # make check
  mandoc                 # man page lint (make check)
  tmux                   # terminal tests
  openmpi-bin            # mpirun: CPU data-parallel training (sdw train under mpirun)
  libopenmpi-dev         # MPI headers and libmpi (loaded at run time)
  fonts-noto-color-emoji # the demo's images (CBDT bitmaps of Noto Color Emoji)
  unicode-data           # the demo's captions (emoji-test.txt names)
  unicode-cldr-core      # the demo's captions (CLDR English keywords)
  python3                # test helpers
  python3-venv           # .venv-test/ with the reference packages (tools/test-venv.sh)
  python3-pip
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

cmd="apt-get install -y --no-install-recommends ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
  echo "sdw: missing packages: ${missing[*]}" >&2
  echo "sdw: run as root: apt-get update && $cmd" >&2
  exit 1
fi
echo "deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
