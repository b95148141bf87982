#!/usr/bin/env bash
# The CUDA checks in one run, each step capped in time: the CUDA tests, then the layer
# benchmark (B=1024 and 4096, float32 and bfloat16, eager / compiled / compiled with CUDA
# graphs / fused) and the model step. Logs go to $OUT (default ./gpu_out), one file per step.
# On a machine that cannot reach a package index, put wheels of what it lacks (here nfn
# and platformdirs) in .whl/ beside the repository's root; they are installed to /tmp/site.
set -u
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
OUT=${OUT:-gpu_out}
mkdir -p "$OUT"
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
    .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
start=$(date +%s)
step() { # step NAME SECONDS COMMAND...
  local name=$1 limit=$2
  shift 2
  echo "== $name (t=$(($(date +%s) - start))s, limit ${limit}s): $*" | tee -a "$OUT/steps.txt"
  timeout "$limit" "$@" >"$OUT/$name.txt" 2>&1
  echo "   rc=$? after $(($(date +%s) - start))s" | tee -a "$OUT/steps.txt"
  tail -n 40 "$OUT/$name.txt"
}
{
  nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,clocks.max.mem --format=csv
  python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, torch.cuda.get_device_name())"
  nproc
} >"$OUT/env.txt" 2>&1
cat "$OUT/env.txt"
step tests 100 python3 -m pytest -q -p no:cacheprovider -rs tests/codegen/test_cuda.py tests/codegen/test_layers.py -k cuda
L="python3 benchmarks/layer_speed.py --device cuda --compile --cudagraphs --repeats 9 --min-block 0.02"
L="$L --shapes 2,32,32,1 2,32,32,32,32,1"
step layer1024_fp32 140 $L --batch 1024 --dtypes float32 --backends fused
step layer1024_bf16 90 $L --batch 1024 --dtypes bfloat16
step model512 120 python3 benchmarks/model_speed.py --device cuda --compile --cudagraphs \
  --repeats 7 --min-block 0.05 --models dws dws-compiled dws-compiled-cudagraphs \
  dws-backend-fused bound nfn
step layer4096 100 $L --no-passes --batch 4096 --dtypes float32 bfloat16
echo "total $(($(date +%s) - start))s"
