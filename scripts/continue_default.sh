#!/usr/bin/env bash
# The exact continuation that produced the shipped assets/models/demo after scripts/train_default.sh's
# first run (12 identities, runs/default). Recorded so the shipped weights are reproducible; a fresh
# start should instead run scripts/train_default.sh (160 identities by default) with more steps.
#   v2: VAE +900 steps (lr 5e-4), a new stage 1 (2600 steps), stage 2 (700 steps)   [12 identities]
#   v4: 160 new identities; VAE +600 steps; stage 1 +1600 steps on that VAE; stage 2 (500 steps)
set -euo pipefail
cd "$(dirname "$0")/.."
C1=(--seed 0 --threads 1 --no-progress --config demo)
python -m training.trainer vae --data runs/default/synth --out runs/v2/vae --init runs/default/vae --steps 900 \
  --batch 4 --lr 5e-4 --log runs/v2/vae.jsonl "${C1[@]}"
python -m training.trainer stage1 --data runs/default/synth --out runs/v2/stage1 --init runs/v2/vae --steps 2600 \
  --batch 1 --frames 4 --lr 3e-4 --log runs/v2/stage1.jsonl "${C1[@]}"
python -m training.trainer stage2 --data runs/default/synth --out runs/v2/stage2 --init runs/v2/stage1 --steps 700 \
  --batch 2 --frames 4 --log runs/v2/stage2.jsonl "${C1[@]}"

python -m training.synthetic runs/v4/synth --identities 160 --seed 7 --intensities 1.0 --seconds 1.6
C2=(--seed 2 --threads 2 --no-progress --config demo)
python -m training.trainer vae --data runs/v4/synth --out runs/v4/vae --init runs/v2/vae --steps 600 --batch 4 \
  --lr 3e-4 --log runs/v4/vae.jsonl "${C2[@]}"
python - <<'PY'
from engine.checkpoint import load_model, save_model
base, vae = load_model("runs/v2/stage1"), load_model("runs/v4/vae")
base.vae.load_state_dict(vae.vae.state_dict())  # same latent scale as stage 1 was trained with
save_model(base, "runs/v4/stage1_init", notes=dict(base.notes))
PY
python -m training.trainer stage1 --data runs/v4/synth --out runs/v4/stage1 --init runs/v4/stage1_init --steps 1600 \
  --batch 1 --frames 4 --lr 2e-4 --log runs/v4/stage1.jsonl "${C2[@]}"
python -m training.trainer stage2 --data runs/v4/synth --out runs/v4/stage2 --init runs/v4/stage1 --steps 500 \
  --batch 2 --frames 4 --log runs/v4/stage2.jsonl "${C2[@]}"
python -m training.evaluate --model runs/v4/stage2 --data runs/v4/synth --recognizer assets/models/recognizer --json \
  --out runs/v4/eval.json --threads 2 --package-to assets/models/demo --samples docs/images/samples.png
