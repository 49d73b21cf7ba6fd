#!/usr/bin/env bash
# GPU check: the paper's setting (CaffeNet fc8:945, DeePSiM fc6 prior, 256 -> 227, `dgn-am`, 200 steps) and a few
# hundred training steps of the RGB recipe (training/configs/imagefolder-64.yaml), with wall-clock timings.
#
#   scripts/gpu_check.sh                 # on cuda: paper size, 8 seeds x 200 steps; 400 training steps
#   scripts/gpu_check.sh --tiny          # on the CPU, reduced widths and a few steps: checks that the script runs
#   CAFFENET=caffenet.safetensors PRIOR=deepsim-fc6.safetensors scripts/gpu_check.sh   # the imported real files
#
#   SPEED=0 scripts/gpu_check.sh         # leave out stage 3 (the speed tables on the GPU)
#
# Without CAFFENET/PRIOR it times random-weight stand-ins (scripts/paper_files.py): the cost does not depend on the
# weights. Writes into $OUT (default: a temporary folder) and prints one "timing" line per stage.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"  # this checkout's dgn_am and training/
PY=${PYTHON:-python}
TINY=0
[[ "${1:-}" == "--tiny" ]] && TINY=1
OUT=${OUT:-$(mktemp -d)}
if [[ $TINY == 1 ]]; then
  DEVICE=${DEVICE:-cpu}; SEEDS=2; STEPS=3; TRAIN_STEPS=4; PER_CLASS=10; BATCH=8; ACCEL=cpu; EPOCHS=1
else
  DEVICE=${DEVICE:-cuda}; SEEDS=${SEEDS:-8}; STEPS=${STEPS:-200}; TRAIN_STEPS=${TRAIN_STEPS:-400}; PER_CLASS=250
  BATCH=64; ACCEL=gpu; EPOCHS=3
fi
now() { date +%s.%N; }
timing() { printf 'timing  %-50s %10s s\n' "$1" "$($PY -c "print(f'{$3 - $2:.2f}')")"; }

echo "gpu_check: out=$OUT device=$DEVICE tiny=$TINY commit=$(git rev-parse --short HEAD 2>/dev/null || echo none)"
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'cpu', 'threads', torch.get_num_threads())"

# 1. the paper's setting
if [[ -z "${CAFFENET:-}" || -z "${PRIOR:-}" ]]; then
  t0=$(now)
  $PY scripts/paper_files.py --out "$OUT/paper" $([[ $TINY == 1 ]] && echo --tiny)
  CAFFENET=$OUT/paper/caffenet.safetensors; PRIOR=$OUT/paper/deepsim-fc6.safetensors
  timing "write random paper-size files" "$t0" "$(now)"
fi
t0=$(now)
$PY -m dgn_am synthesize --model "$CAFFENET" --prior "$PRIOR" --units fc8:945 --method dgn-am --seeds "$SEEDS" \
  --steps "$STEPS" --device "$DEVICE" --out "$OUT/synth" --quiet
t1=$(now)
timing "synthesize fc8:945, $SEEDS seeds x $STEPS steps" "$t0" "$t1"
echo "timing  per image per step (loading included): $($PY -c "print(f'{($t1 - $t0) / ($SEEDS * $STEPS):.4f}')") s"

# 2. the RGB recipe: target classifier, then prior training steps (global_step counts G and D: 2 per batch)
$PY -c "from dgn_am.data import write_shapes_folder; write_shapes_folder('$OUT/shapes', $PER_CLASS, 64)"
mkdir -p "$OUT/recipe"
t0=$(now)
(cd "$OUT/recipe" && $PY -m dgn_am train-classifier \
  --arch fmnist-caffenet --image-folder ../shapes --image-size 64 --channels 3 --epochs "$EPOCHS" \
  --batch-size "$BATCH" --accelerator "$ACCEL" --devices 1 --logger none \
  --out runs/imagefolder-64/target.safetensors > classifier.log 2>&1)
timing "train-classifier, $EPOCHS epochs" "$t0" "$(now)"
t0=$(now)
(cd "$OUT/recipe" && $PY -m dgn_am train-prior \
  --config "$REPO/training/configs/imagefolder-64.yaml" --data.init_args.root ../shapes \
  --data.init_args.batch_size "$BATCH" --trainer.accelerator "$ACCEL" --trainer.devices 1 \
  --trainer.max_steps "$TRAIN_STEPS" --trainer.max_epochs -1 --trainer.logger false \
  --trainer.enable_progress_bar false --trainer.limit_val_batches 1 \
  --out runs/imagefolder-64/prior.safetensors > prior.log 2>&1)
timing "train-prior, $TRAIN_STEPS steps ($((TRAIN_STEPS / 2)) batches of $BATCH)" "$t0" "$(now)"

# 3. the speed tables on the GPU (not with --tiny): scripts/speed.py's rows (Lucent's too where it is importable)
#    and scripts/speed_paper.py's batch sizes, written to $OUT/speed
if [[ $TINY == 0 && "${SPEED:-1}" == 1 ]]; then
  t0=$(now)
  $PY scripts/speed.py --device "$DEVICE" --no-compile --out "$OUT/speed"
  timing "scripts/speed.py --device $DEVICE" "$t0" "$(now)"
  t0=$(now)
  $PY scripts/speed_paper.py --device "$DEVICE" --batches 1 8 32 128 --steps 20 --out "$OUT/speed"
  timing "scripts/speed_paper.py --device $DEVICE" "$t0" "$(now)"
fi
echo "gpu_check: done; logs in $OUT/recipe"
