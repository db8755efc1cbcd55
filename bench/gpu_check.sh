#!/usr/bin/env bash
# The one prepared GPU check (issue 5: the distillation side; issue 26: the vendor), for a machine lent
# for a few minutes.
#
#   bench/gpu_check.sh prepare          # here, with pip: the wheels the GPU image lacks, into .whl/ (git-ignored)
#   bench/gpu_check.sh run OUTDIR       # there, from the repository root (python3 with torch + CUDA, no install)
#   bench/gpu_check.sh vendor OUTDIR    # there: only step 0 below (about 2-3 minutes)
#
# `run` measures, each result in OUTDIR/*.txt:
#   0. vendor.txt       the vendor on the GPU (bench/vendor_throughput.py --device cuda): ViT-B-32's raw forward
#                       by batch size and the served images/s in the four traffic shapes, served/raw, the batch
#                       the server measured at start-up; torch under bf16 autocast, and the onnx engine too when
#                       the image's onnxruntime has the CUDA provider (onnxruntime-gpu; a CPU-only onnxruntime
#                       is said in the file and skipped);
#   1. throughput.txt   images/s of ADiP's distill loop vs the raw student train step, ResNet-50 at 224 px,
#                       bf16 autocast + channels_last (bench/distill_throughput.py; target ratio >= 0.80);
#   2. same at the CPU setting (resnet18, 64 px) on the GPU, for comparison with the CPU figure;
#   3. erm_cuda.txt / erm_cpu.txt   one short real `vl2v distill` run (ERM: needs no vendor) on the GPU
#                       (AMP, pinned-memory loaders) and the same command on the CPU: accuracies agree up
#                       to numerics (bf16 vs fp32), not bit for bit;
#   4. erm_torchrun.txt the same run under `torchrun --nproc_per_node 1` (DDP with NCCL).
# About 4-6 minutes on one H200 (rendering and the CPU run dominate). Everything is synthetic.
set -euo pipefail
cd "$(dirname "$0")/.."

WHEELS="open_clip_torch==3.3.0 ftfy==6.3.1 wcwidth==0.9.4 tenacity==9.2.1 pydantic==2.14.4 pydantic_core==2.50.5
        annotated-types==0.8.0 typing-inspection==0.4.5 diskcache==5.6.3 pydantic-settings==2.16.3 python-dotenv==1.2.4
        fastapi==0.165.0 starlette==1.10.0 uvicorn==0.55.0 opentelemetry-api==1.45.3"

case "${1:-}" in
prepare)
  grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
  # the GPU image's python is 3.12 on x86-64 (see the device notes); only pydantic_core is binary
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .whl $WHEELS
  ls .whl
  ;;
run|vendor)
  out=${2:?usage: bench/gpu_check.sh run|vendor OUTDIR}
  mkdir -p "$out"
  if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/vl2v-site .whl/*.whl
    export PYTHONPATH="$PWD:/tmp/vl2v-site${PYTHONPATH:+:$PYTHONPATH}"
  else
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
  fi
  export PYTHONUNBUFFERED=1
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/device.txt" || true
  python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" | tee -a "$out/device.txt"

  engines=torch
  if python3 -c "import onnxruntime as o, sys; sys.exit('CUDAExecutionProvider' not in o.get_available_providers())"; then
    engines=torch,onnx
  else
    echo "onnxruntime here has no CUDA provider: the onnx engine is not measured on the GPU" | tee "$out/vendor.txt"
  fi
  python3 bench/vendor_throughput.py --device cuda --no-infinity --engines "$engines" --images "${VENDOR_IMAGES:-512}" \
    --rounds 2 | tee -a "$out/vendor.txt"
  [ "$1" = vendor ] && exit 0

  bpd=(--batch-per-domain "${BPD:-32}")  # STEPS_224, BPD, PER_CLASS, STEPS: smaller for a trial on a CPU
  python3 bench/distill_throughput.py --student resnet50 --size 224 --steps "${STEPS_224:-30}" "${bpd[@]}" | tee "$out/throughput.txt"
  python3 bench/distill_throughput.py --steps 20 "${bpd[@]}" | tee -a "$out/throughput.txt"

  data=/tmp/vl2v-gpu-data
  [ -f "$data/.done" ] || { python3 -m client_distill.cli data synth --task synth-pacs --out "$data" --per-class "${PER_CLASS:-40}" --overwrite \
                              --workers 8 && touch "$data/.done"; }
  erm=(distill --method erm --data "$data" --dataset synth-pacs --test-domain sketch --seed 0 --profile synth
       --hparams "{\"steps\": ${STEPS:-200}, \"checkpoint_freq\": ${STEPS:-200}}")
  run_erm() {  # NAME LAUNCHER...: one run into a fresh folder, wall time and its result line
    local name=$1; shift
    rm -rf "/tmp/vl2v-gpu-$name"
    local t0=$SECONDS
    "$@" "${erm[@]}" --out "/tmp/vl2v-gpu-$name" > "$out/erm_$name.txt" 2>&1
    echo "wall $((SECONDS - t0)) s" >> "$out/erm_$name.txt"
    tail -n 2 "$out/erm_$name.txt"
  }
  run_erm cuda python3 -m client_distill.cli
  run_erm cpu env CUDA_VISIBLE_DEVICES= python3 -m client_distill.cli
  run_erm torchrun torchrun --standalone --nproc_per_node 1 -m client_distill.cli
  ;;
*)
  sed -n '2,25p' "$0"; exit 2 ;;
esac
