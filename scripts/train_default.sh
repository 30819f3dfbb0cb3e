#!/usr/bin/env bash
# Train the bundled default model (assets/models/demo) from scratch on this machine's CPU.
#
#   synthetic data -> vae -> stage1 -> stage2 -> expression recogniser -> ablations -> eval + package
#
# Everything is seeded (SEED). Step counts are sized for ~60 minutes of one CPU core
# (torch threads = 1, so a second core stays usable); raise them on a GPU. Work files go to WORK
# (runs/ is git-ignored); the packaged model (fp16 safetensors + config.json with notes: the
# commands and the measured evaluation) goes to assets/models/demo, the recogniser to
# assets/models/recognizer.
set -euo pipefail
cd "$(dirname "$0")/.."

SEED=${SEED:-0}
WORK=${WORK:-runs/default}
IDENTITIES=${IDENTITIES:-12}
VAE_STEPS=${VAE_STEPS:-350}
STAGE1_STEPS=${STAGE1_STEPS:-1200}
STAGE2_STEPS=${STAGE2_STEPS:-700}
ABLATION_STEPS=${ABLATION_STEPS:-200}   # 0 = skip the ablation table
RECOGNISER_STEPS=${RECOGNISER_STEPS:-600}
THREADS=${THREADS:-1}
COMMON=(--seed "$SEED" --threads "$THREADS" --no-progress --config demo)

mkdir -p "$WORK"
stamp() { echo "[$(date +%T)] $*"; }

if [ ! -f "$WORK/synth/index.json" ]; then
  stamp "synthetic data ($IDENTITIES identities, compound eval clips)"
  python -m training.synthetic "$WORK/synth" --identities "$IDENTITIES" --compound --seed "$SEED"
fi

stamp "vae"
python -m training.trainer vae --data "$WORK/synth" --out "$WORK/vae" --steps "$VAE_STEPS" --batch 4 \
  --log "$WORK/vae.jsonl" "${COMMON[@]}"

stamp "stage1"
python -m training.trainer stage1 --data "$WORK/synth" --out "$WORK/stage1" --init "$WORK/vae" \
  --steps "$STAGE1_STEPS" --batch 1 --frames 4 --log "$WORK/stage1.jsonl" "${COMMON[@]}"

stamp "stage2"
python -m training.trainer stage2 --data "$WORK/synth" --out "$WORK/stage2" --init "$WORK/stage1" \
  --steps "$STAGE2_STEPS" --batch 2 --frames 4 --log "$WORK/stage2.jsonl" "${COMMON[@]}"

stamp "recogniser"
python -m training.recognizer --data "$WORK/synth" --out assets/models/recognizer --steps "$RECOGNISER_STEPS" \
  --seed "$SEED" --threads "$THREADS"

ABLATIONS=()
if [ "$ABLATION_STEPS" -gt 0 ]; then
  for variant in full no-moe no-global-gate no-noisy-sampling; do
    case $variant in
      full) flags=() ;;
      no-noisy-sampling) flags=(--no-noisy-sampling) ;;
      *) flags=(--ablation "$variant") ;;
    esac
    stamp "ablation $variant ($ABLATION_STEPS stage-2 steps)"
    python -m training.trainer stage2 --data "$WORK/synth" --out "$WORK/ablation-$variant" --init "$WORK/stage1" \
      --steps "$ABLATION_STEPS" --batch 2 --frames 4 --log "$WORK/ablation-$variant.jsonl" "${COMMON[@]}" "${flags[@]}"
    ABLATIONS+=("$variant=$WORK/ablation-$variant")
  done
fi

stamp "evaluate + package"
python -m training.evaluate --model "$WORK/stage2" --data "$WORK/synth" --recognizer assets/models/recognizer \
  --json --out "$WORK/eval.json" --threads "$THREADS" --package-to assets/models/demo \
  --samples docs/images/samples.png ${ABLATIONS[@]/#/--ablation-model }
stamp "done"
