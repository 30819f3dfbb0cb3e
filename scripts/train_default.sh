#!/usr/bin/env bash
# Train the bundled default model (assets/models/demo) from scratch on this machine's CPU.
#
#   synthetic data -> vae -> stage1 -> stage2 (+ same-budget ablation runs beside it on the
#   second core) -> expression recogniser -> evaluation + packaging
#
# Everything is seeded (SEED). Step counts are sized for about an hour on 2 CPU cores with
# torch threads = 1 per process (so a second process / the tests can use the other core); raise
# them on a GPU. A stage whose output folder already holds a model is skipped, so the script
# can be re-run after an interruption (a stage interrupted mid-way: re-run its command with
# --resume). Work files go to WORK (runs/ is git-ignored); the packaged model (fp16 safetensors
# + config.json whose notes hold the commands and the measured evaluation) goes to
# assets/models/demo, the recogniser to assets/models/recognizer, sample frames to
# docs/images/samples.png.
set -euo pipefail
cd "$(dirname "$0")/.."

SEED=${SEED:-0}
WORK=${WORK:-runs/default}
IDENTITIES=${IDENTITIES:-160}  # 12 proved far too few: the VAE and ReferenceNet overfit to them
VAE_STEPS=${VAE_STEPS:-350}
STAGE1_STEPS=${STAGE1_STEPS:-800}
STAGE2_STEPS=${STAGE2_STEPS:-360}
ABLATION_STEPS=${ABLATION_STEPS:-90}   # 0 = skip the ablation table
RECOGNISER_STEPS=${RECOGNISER_STEPS:-1500}
EVAL_IDENTITIES=${EVAL_IDENTITIES:-2}
ABLATION_EVAL_IDENTITIES=${ABLATION_EVAL_IDENTITIES:-1}
THREADS=${THREADS:-1}
COMMON=(--seed "$SEED" --threads "$THREADS" --no-progress --config demo)

mkdir -p "$WORK"
stamp() { echo "[$(date +%T)] $*"; }
done_already() { [ -f "$1/model.safetensors" ] && stamp "skip: $1 exists"; }

if [ ! -f "$WORK/synth/index.json" ]; then
  stamp "synthetic data ($IDENTITIES identities, compound eval clips)"
  python -m training.synthetic "$WORK/synth" --identities "$IDENTITIES" --compound --seed "$SEED"
fi

stamp "vae"
done_already "$WORK/vae" || python -m training.trainer vae --data "$WORK/synth" --out "$WORK/vae" \
  --steps "$VAE_STEPS" --batch 4 --log "$WORK/vae.jsonl" "${COMMON[@]}"

stamp "stage1"
done_already "$WORK/stage1" || python -m training.trainer stage1 --data "$WORK/synth" --out "$WORK/stage1" \
  --init "$WORK/vae" --steps "$STAGE1_STEPS" --batch 1 --frames 4 --log "$WORK/stage1.jsonl" "${COMMON[@]}"

# Ablations: stage 2 from the same stage-1 model with one budget for all four variants
# ("full" is the complete method at that budget), in the background on the second core.
ABLATIONS=()
run_ablations() {
  for variant in full no-moe no-global-gate no-noisy-sampling; do
    case $variant in
      full) flags=() ;;
      no-noisy-sampling) flags=(--no-noisy-sampling) ;;
      *) flags=(--ablation "$variant") ;;
    esac
    stamp "ablation $variant ($ABLATION_STEPS stage-2 steps)"
    done_already "$WORK/ablation-$variant" || python -m training.trainer stage2 --data "$WORK/synth" \
      --out "$WORK/ablation-$variant" --init "$WORK/stage1" --steps "$ABLATION_STEPS" --batch 2 --frames 4 \
      --log "$WORK/ablation-$variant.jsonl" "${COMMON[@]}" "${flags[@]}"
  done
}
ABLATION_PID=""
if [ "$ABLATION_STEPS" -gt 0 ]; then
  run_ablations > "$WORK/ablations.log" 2>&1 &
  ABLATION_PID=$!
  for variant in full no-moe no-global-gate no-noisy-sampling; do
    ABLATIONS+=(--ablation-model "$variant=$WORK/ablation-$variant")
  done
fi

stamp "stage2"
done_already "$WORK/stage2" || python -m training.trainer stage2 --data "$WORK/synth" --out "$WORK/stage2" \
  --init "$WORK/stage1" --steps "$STAGE2_STEPS" --batch 2 --frames 4 --log "$WORK/stage2.jsonl" "${COMMON[@]}"

stamp "recogniser"
[ -f assets/models/recognizer/recognizer.safetensors ] && stamp "skip: recogniser exists" || \
  python -m training.recognizer --data "$WORK/synth" --out assets/models/recognizer --steps "$RECOGNISER_STEPS" \
    --seed "$SEED" --threads "$THREADS"

if [ -n "$ABLATION_PID" ]; then
  stamp "waiting for the ablation runs"
  wait "$ABLATION_PID"
fi

stamp "evaluate + package"
python -m training.evaluate --model "$WORK/stage2" --data "$WORK/synth" --recognizer assets/models/recognizer \
  --identities "$EVAL_IDENTITIES" --ablation-identities "$ABLATION_EVAL_IDENTITIES" \
  --json --out "$WORK/eval.json" --threads "$THREADS" --package-to assets/models/demo \
  --samples docs/images/samples.png "${ABLATIONS[@]}"
stamp "done"
