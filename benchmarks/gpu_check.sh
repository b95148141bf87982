#!/usr/bin/env bash
# The CUDA checks in one run, each step capped in time (under 10 minutes in all on one
# H100 / H200): the CUDA tests, the layer benchmark (B=1024 and 4096, float32 and bfloat16,
# every backend: eager, compiled, fused, triton, the compiling ones also with CUDA graphs,
# against the one-GEMM floor and a copy of the input, peak memory with capture included) and
# the training step against NFN's (DWSNet with and without CUDA graphs, NFN with and without).
# Logs go to $OUT (default benchmarks/results/gpu-<date>), one file per step, plus the JSON
# rows of the layer runs. DRY_RUN=1 prints the steps without running them (a test checks
# that every command in it parses). On a machine that cannot reach a package index, put
# wheels of what it lacks (here nfn and platformdirs) in .whl/ beside the repository's
# root; they are installed to /tmp/site.
set -u
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
PY=${PY:-python3}
OUT=${OUT:-benchmarks/results/gpu-$(date +%Y-%m-%d)}
DRY_RUN=${DRY_RUN:-0}
if [ "$DRY_RUN" = 1 ]; then
  step() { # step NAME SECONDS COMMAND...
    local name=$1 limit=$2
    shift 2
    echo "$name $limit $*"
  }
else
  mkdir -p "$OUT"
  if compgen -G ".whl/*.whl" >/dev/null; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
      --target /tmp/site .whl/*.whl || exit 1
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
    $PY -c "import torch, triton; print('torch', torch.__version__, 'triton', \
triton.__version__, torch.cuda.get_device_name())"
    nproc
  } >"$OUT/env.txt" 2>&1
  cat "$OUT/env.txt"
fi
SHAPES="2,32,32,1 2,32,32,32,32,1"
L="$PY benchmarks/layer_speed.py --device cuda --compile --cudagraphs --repeats 9"
L="$L --min-block 0.02 --backends fused triton"
step tests 120 $PY -m pytest -q -p no:cacheprovider -rs tests/codegen/test_cuda.py \
  tests/codegen/test_layers.py -k cuda
step layer1024_fp32 150 $L --shapes $SHAPES --batch 1024 --dtypes float32 \
  --json "$OUT/layer1024_fp32.json"
step layer1024_bf16 100 $L --shapes $SHAPES --batch 1024 --dtypes bfloat16 --no-passes \
  --json "$OUT/layer1024_bf16.json"
step layer4096 90 $L --shapes 2,32,32,1 --batch 4096 --dtypes float32 bfloat16 --no-passes \
  --json "$OUT/layer4096.json"
step model512 130 $PY benchmarks/model_speed.py --device cuda --compile --cudagraphs \
  --repeats 7 --min-block 0.05 --models dws dws-compiled dws-compiled-cudagraphs \
  dws-backend-compiled dws-backend-compiled-nographs dws-backend-triton \
  dws-backend-triton-nographs bound nfn nfn-cudagraphs
[ "$DRY_RUN" = 1 ] || echo "total $(($(date +%s) - start))s"
