#!/usr/bin/env bash
# GPU checks and benchmarks (BENCHMARKS.md, "GPU"), from the repository root of a machine with one CUDA GPU:
#
#   benchmarks/gpu.sh check OUT   # the CUDA tests, then speed and figures of the CPU-trained exports on the GPU
#   benchmarks/gpu.sh train OUT   # yelp10k LSTM-VAE, dailydialog-lite HRED and kgCVAE trained on the GPU, evaluated
#   benchmarks/gpu.sh precision OUT  # the yelp10k LSTM-VAE trained alone in fp32, then in bf16-mixed, timed, evaluated
#   benchmarks/gpu.sh scale OUT   # the CUDA tests, then benchmarks/gpu_scale.py: LSTM-VAE tokens/s against batch
#                                 # size and precision, IW-NLL K = 500 over ptb-lite's test set, textvae-train's loop
#                                 # with 0 and 4 loader workers (BENCHMARKS.md, "GPU scale"; about 7 minutes on an H200)
#
# Needs data/yelp10k and data/dailydialog-lite (`scale`: data/ptb-lite; textvae-corpus prepare ...), and for `check`
# the exports runs/yelp10k_lstm_vae/export and runs/dailydialog_lite_kgcvae/export and the act tagger
# runs/dailydialog_lite_act_tagger (benchmarks/dailydialog_lite.py). Logs and JSON go to OUT.
# TEXTVAE_GPU_MINUTES (default 5, whole minutes) caps each training run of `train` and `precision`; the three
# of `train` run side by side on the GPU. Runs log where their recipes say (runs/RECIPE/logs) and export to
# runs/gpu_RECIPE/export (`precision`: runs/gpu_PRECISION/export). TEXTVAE_GPU_DRY_RUN=1 runs `scale` on the CPU
# at tiny sizes (gpu_scale.py --dry-run; the CUDA tests skip themselves): a check of the script before a lease.
set -uo pipefail
stage=${1:?usage: benchmarks/gpu.sh check|train|precision|scale OUT}
out=${2:?usage: benchmarks/gpu.sh check|train|precision|scale OUT}
case "$stage" in
    check|train|precision|scale) ;;
    *) echo "usage: benchmarks/gpu.sh check|train|precision|scale OUT (not: $stage)" >&2; exit 2 ;;
esac
dry=${TEXTVAE_GPU_DRY_RUN:-0}
if [ "$dry" = 1 ] && [ "$stage" != scale ]; then
    echo "benchmarks/gpu.sh: TEXTVAE_GPU_DRY_RUN=1 is for the scale stage only (not: $stage)" >&2
    exit 2
fi
device=cuda
dry_args=()
if [ "$dry" = 1 ]; then
    device=cpu
    dry_args=(--dry-run --threads 1)
fi
mkdir -p "$out"
export TEXTVAE_GPU_DRY_RUN=$dry PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
python=${PYTHON:-python3}

"$python" - <<'EOF' | tee "$out/device.txt"
import os
import sys

import torch
print("torch", torch.__version__, "CUDA", torch.version.cuda, "cuDNN", torch.backends.cudnn.version())
if os.environ["TEXTVAE_GPU_DRY_RUN"] == "1":
    print("dry run on the CPU")
    sys.exit()
print("device", torch.cuda.get_device_name(0), f"{torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB")
sys.path.insert(0, "benchmarks")
from latent_families import matmul_peak_gflops

for dtype in (torch.float32, torch.bfloat16):  # the matmul peak, to print beside every absolute figure
    peak = matmul_peak_gflops(8192, device="cuda", dtype=dtype) / 1000
    print(f"{dtype} matmul peak (8192^3): {peak:.1f} TFLOP/s")
EOF

if [ "$stage" = check ]; then
    "$python" -m pytest -q -p no:cacheprovider tests/test_cuda.py 2>&1 | tee "$out/test_cuda.log" | tail -n 15
    "$python" benchmarks/yelp10k.py --vae runs/yelp10k_lstm_vae/export --device cuda --json "$out/yelp10k_cuda.json" \
        2>&1 | tee "$out/yelp10k_cuda.log" | tail -n 25
    for k in 100 500; do  # IW-NLL at the papers' K too, in batches of 256 sentences
        "$python" -m tools.eval --model runs/yelp10k_lstm_vae/export --data data/yelp10k/test.jsonl \
            --max-sentences 1000 --samples $k --batch-size 256 --device cuda --json "$out/yelp10k_cuda_k${k}_b256.json" \
            2>&1 | tee "$out/yelp10k_cuda_k${k}_b256.log" | grep -E "IW-NLL|speed"
    done
    "$python" benchmarks/dailydialog_lite.py --models kgcvae --contexts 1000 --device cuda \
        --json "$out/dailydialog_lite_cuda.json" 2>&1 | tee "$out/dailydialog_lite_cuda.log" | tail -n 4
elif [ "$stage" = train ]; then
    minutes=${TEXTVAE_GPU_MINUTES:-5}
    cap=$(printf "00:00:%02d:00" "$minutes")
    for recipe in yelp10k_lstm_vae dailydialog_lite_hred dailydialog_lite_kgcvae; do
        "$python" -m tools.train fit --config "recipes/$recipe.yaml" --trainer.accelerator gpu \
            --trainer.max_time "$cap" --trainer.default_root_dir "runs/gpu_$recipe" \
            --trainer.enable_progress_bar false --export "runs/gpu_$recipe/export" >"$out/train_$recipe.log" 2>&1 &
    done
    wait
    for recipe in yelp10k_lstm_vae dailydialog_lite_hred dailydialog_lite_kgcvae; do
        tail -n 2 "$out/train_$recipe.log"
        cp "$(ls -t runs/$recipe/logs/version_*/metrics.csv | head -n 1)" "$out/metrics_$recipe.csv"
    done
    "$python" benchmarks/yelp10k.py --vae runs/gpu_yelp10k_lstm_vae/export --device cuda \
        --json "$out/yelp10k_gpu_trained.json" 2>&1 | tee "$out/yelp10k_gpu_trained.log" | tail -n 16
    "$python" benchmarks/dailydialog_lite.py --models hred=runs/gpu_dailydialog_lite_hred/export \
        kgcvae=runs/gpu_dailydialog_lite_kgcvae/export --contexts 1000 --device cuda \
        --json "$out/dailydialog_lite_gpu_trained.json" 2>&1 | tee "$out/dailydialog_lite_gpu_trained.log" | tail -n 4
elif [ "$stage" = precision ]; then
    minutes=${TEXTVAE_GPU_MINUTES:-5}
    cap=$(printf "00:00:%02d:00" "$minutes")
    for precision in 32-true bf16-mixed; do
        start=$SECONDS
        "$python" -m tools.train fit --config recipes/yelp10k_lstm_vae.yaml --trainer.accelerator gpu \
            --trainer.precision $precision --trainer.max_time "$cap" --trainer.enable_progress_bar false \
            --export "runs/gpu_$precision/export" >"$out/train_$precision.log" 2>&1
        echo "$precision: $((SECONDS - start)) s from launch to export" | tee -a "$out/precision.txt"
        cp "$(ls -t runs/yelp10k_lstm_vae/logs/version_*/metrics.csv | head -n 1)" "$out/metrics_$precision.csv"
        "$python" benchmarks/yelp10k.py --vae "runs/gpu_$precision/export" --device cuda --train-steps 20 \
            --json "$out/yelp10k_$precision.json" 2>&1 | grep -E "IW-NLL|KL|MI|speed" | tee -a "$out/precision.txt"
    done
elif [ "$stage" = scale ]; then
    "$python" -m pytest -q -p no:cacheprovider tests/test_cuda.py 2>&1 | tee "$out/test_cuda.log" | tail -n 3
    "$python" benchmarks/gpu_scale.py --device $device "${dry_args[@]}" --time-budget 300 --iw-models ptb-h256 ptb-h1024 --iw-chunks 0 \
        --json "$out/gpu_scale.json" 2>&1 | tee "$out/gpu_scale.log" | grep -v '^{' | tail -n 60
    "$python" benchmarks/gpu_scale.py --device $device "${dry_args[@]}" --models ptb-h256 --precisions fp32 bf16 --batch-sizes 2048 \
        --iw-models --compile-models --num-workers 0 4 --train-repeats 20 --steps 60 \
        --json "$out/gpu_scale_lightning.json" 2>&1 | tee "$out/gpu_scale_lightning.log" | grep -v '^{' | tail -n 10
fi
