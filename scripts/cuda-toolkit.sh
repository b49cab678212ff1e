#!/usr/bin/env bash
# Fetch the pieces of NVIDIA's CUDA 13.0 toolkit that building shelfrank with
# `--features cuda` needs (nvcc, cicc, the runtime, cuBLAS, cuRAND, NVRTC, the CCCL
# and CRT headers) as wheels from PyPI, unpack them into the git-ignored `.cuda/`,
# and print the environment to export. For machines without a CUDA toolkit
# package; no GPU is needed to build. Versions are pinned; the GPU machine has
# CUDA 13 (driver 580).
#
# Linking also needs the unversioned library names (`libcublas.so`, made here as
# links to the wheels' `.so.13` files) and the driver library `libcuda.so`, which
# ships with the GPU driver, not in a wheel: like the toolkit's own
# `lib64/stubs/libcuda.so`, a stub with the driver API's function names (read from
# the wheel's cuda.h) is built for the linker. The binary asks for `libcuda.so.1`,
# which the real driver provides at run time. Every stub function returns 100
# (CUDA_ERROR_NO_DEVICE), so a binary run against the stub says there is no GPU.
#
# Usage: eval "$(scripts/cuda-toolkit.sh)"   then   cargo build --release --features cuda
#   CUDA_COMPUTE_CAP (default 90, the H100/H200) is the architecture candle's kernels
#   are compiled for when no GPU can be asked.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DEST="$ROOT/.cuda"
CUDA="$DEST/nvidia/cu13"
WHEELS=(
    "nvidia-cuda-nvcc==13.0.88"
    "nvidia-nvvm==13.0.88"
    "nvidia-cuda-runtime==13.0.96"
    "nvidia-cuda-cccl==13.0.85"
    "nvidia-cuda-crt==13.0.88"
    "nvidia-cublas==13.1.0.3"
    "nvidia-curand==10.4.0.35"
    "nvidia-cuda-nvrtc==13.0.88"
)

# What a complete `.cuda/` was made from; anything else is fetched again.
WANT="${WHEELS[*]} stub-2"
if [[ "$(cat "$DEST/.complete" 2>/dev/null)" != "$WANT" ]]; then
    PY="$(command -v python3 || command -v python || true)"
    if [[ -z "$PY" ]]; then
        echo "error: python3 with pip is needed to download the CUDA wheels from PyPI" >&2
        exit 1
    fi
    WORK="$(mktemp -d)"
    trap 'rm -rf "$WORK"' EXIT
    echo "downloading ${#WHEELS[@]} CUDA 13.0 wheels from PyPI ..." >&2
    "$PY" -m pip download --quiet --no-deps --only-binary=:all: \
        --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 --platform manylinux_2_12_x86_64 \
        --platform manylinux2010_x86_64 --python-version 3.11 \
        -d "$WORK" "${WHEELS[@]}" >&2
    rm -rf "$DEST.partial"
    mkdir -p "$DEST.partial"
    for w in "$WORK"/*.whl; do
        "$PY" -m zipfile -e "$w" "$DEST.partial/"
    done
    chmod +x "$DEST.partial/nvidia/cu13/bin/"* "$DEST.partial/nvidia/cu13/nvvm/bin/"*
    lib="$DEST.partial/nvidia/cu13/lib"
    for name in cudart cublas cublasLt curand nvrtc; do
        versioned=""
        for f in "$lib/lib$name.so."*; do
            [[ "$f" =~ /lib$name\.so\.[0-9]+$ ]] && { versioned="${f##*/}"; break; }
        done
        [[ -n "$versioned" ]] || { echo "error: no lib$name.so.N in the wheels" >&2; exit 1; }
        ln -sf "$versioned" "$lib/lib$name.so"
    done
    mkdir -p "$lib/stubs"
    echo '#include <cuda.h>' | cc -E -P -I"$DEST.partial/nvidia/cu13/include" - \
        | grep -oE '\bcu[A-Z][A-Za-z0-9_]*[[:space:]]*\(' | tr -d '( \t' | sort -u \
        | sed 's/.*/int &(void) { return 100; }/' >"$WORK/libcuda-stub.c"
    [[ $(wc -l <"$WORK/libcuda-stub.c") -gt 100 ]] \
        || { echo "error: too few driver functions found in cuda.h" >&2; exit 1; }
    cc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$lib/stubs/libcuda.so" "$WORK/libcuda-stub.c"
    echo "$WANT" >"$DEST.partial/.complete"
    rm -rf "$DEST"
    mv "$DEST.partial" "$DEST"
fi
"$CUDA/bin/nvcc" --version | tail -n1 >&2
cat <<ENV
export CUDA_ROOT="$CUDA"
export CUDA_PATH="$CUDA"
export CUDA_TOOLKIT_ROOT_DIR="$CUDA"
export PATH="$CUDA/bin:\$PATH"
export LD_LIBRARY_PATH="$CUDA/lib\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
export CUDA_COMPUTE_CAP="\${CUDA_COMPUTE_CAP:-90}"
ENV
