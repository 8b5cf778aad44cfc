#!/usr/bin/env bash
# Rebuild the shipped bimacosr-real-x4 from scratch and the README's realistic-degradation table beside it:
# 1. train the chain on Real-ESRGAN degradations (FP ResShift teacher -> FP SinSR one-step student -> 1-bit
#    BiMaCoSR student) and, with the same teacher, initialisation, recipe and steps, the XNOR and ReActNet
#    students (the students see the same batches, so the teacher's outputs are computed once, by the first
#    of them, and read back from runs/teacher-cache-real by the others);
# 2. make the realistic benchmark (Set5 and Set14 degraded with seed 0);
# 3. score bicubic, every model of the chain, the two baselines and the shipped bicubic-trained models on
#    Set5-real, Set14-real and RealSet65 (NIQE), and the new model on clean Set5 / Set14 for its card;
# 4. export the packed model and its card into the package, write the table (binsr report) and the visual
#    comparison on RealSet65 crops (binsr analyze compare).
# Run from the repository root with the data in ../shared/data (or $BINSR_DATA). Every 'binsr train'
# resumes from its last checkpoint when run again. On 2 CPU cores the whole script takes about 2 hours; run
# again, it skips the scores already written.
set -euo pipefail
cd "$(dirname "$0")/.."
export BINSR_DATA=${BINSR_DATA:-../shared/data}
STUDENT=(--set distill.cache_dir=runs/teacher-cache-real)
same_budget() {  # same_budget METHOD: the bimacosr-real-x4-cpu recipe with another binarizer
  binsr train bimacosr-real-x4-cpu --auto-resume --quiet "${STUDENT[@]}" --set binarize.method="$1" \
      --set "binarize.options={}" --set name="$1-real-x4-cpu"
}

# 1. Training (one process at a time: two torch processes on 2 cores slow each other down many times over).
binsr train resshift-real-x4-cpu --auto-resume --quiet
binsr train sinsr-real-x4-cpu --auto-resume --quiet "${STUDENT[@]}"
binsr train bimacosr-real-x4-cpu --auto-resume --quiet "${STUDENT[@]}"
same_budget xnor
same_budget reactnet

# 2. The realistic benchmark, re-created from its seed.
for data in Set5 Set14; do
  [ -f "runs/real/$data/degradation.json" ] || binsr degrade "$data" -o "runs/real/$data" --seed 0
done

# 3. Scores. The new model is scored as shipped: its packed, fp16 file.
[ -f runs/bimacosr-real-x4-cpu/packed.safetensors ] ||
  binsr export runs/bimacosr-real-x4-cpu/model.safetensors -o runs/bimacosr-real-x4-cpu/packed.safetensors --fp16
mkdir -p runs/eval-real
evaluate() {  # evaluate JSON ARGS...: binsr eval, unless an earlier run of this script wrote JSON
  [ -f "$1" ] || binsr eval --quiet --json "$@"
}
score() {  # score NAME MODEL [clean]: realistic Set5 / Set14, RealSet65 NIQE, clean Set5 / Set14 if asked
  for data in Set5 Set14; do
    evaluate "runs/eval-real/$1-$data-real.json" --model "$2" --data $data --lr-data "runs/real/$data" --scale 4
    if [ "${3:-}" = clean ]; then evaluate "runs/eval-real/$1-$data.json" --model "$2" --data $data --scale 4; fi
  done
  # RealSet65 is 8.2 LR megapixels: the 15-step teacher would take about an hour here, BI-DiffSR (its UNet at
  # the output's 131 megapixels) about 2 hours; the one-step models take a minute or two (most of it NIQE)
  case "$1" in resshift-*|bidiffsr-*) return 0 ;; esac
  evaluate "runs/eval-real/$1-RealSet65.json" --model "$2" --lr-data RealSet65 --scale 4
}
score bicubic bicubic
score resshift-real-x4-cpu runs/resshift-real-x4-cpu/model.safetensors
score sinsr-real-x4-cpu runs/sinsr-real-x4-cpu/model.safetensors
score bimacosr-real-x4-cpu runs/bimacosr-real-x4-cpu/packed.safetensors clean
score xnor-real-x4-cpu runs/xnor-real-x4-cpu/model.safetensors
score reactnet-real-x4-cpu runs/reactnet-real-x4-cpu/model.safetensors
score bimacosr-x4 bimacosr-x4
score bidiffsr-x4 bidiffsr-x4

# 4. The shipped file and card, the table, the figure.
binsr export runs/bimacosr-real-x4-cpu/model.safetensors -o binsr/weights/bimacosr-real-x4.safetensors --fp16 \
    --card runs/eval-real/bimacosr-real-x4-cpu-*.json
binsr report runs/eval-real/*-real.json runs/eval-real/*-RealSet65.json -o runs/eval-real/report.md \
    --label bicubic=Bicubic --label "resshift-real-x4-cpu=ResShift teacher (FP, 15 steps)" \
    --label "sinsr-real-x4-cpu=SinSR student (FP, 1 step)" \
    --label "bimacosr-real-x4-cpu=bimacosr-real-x4 (BiMaCoSR, 1-bit, 1 step)" \
    --label "xnor-real-x4-cpu=XNOR student (1-bit, 1 step)" --label "reactnet-real-x4-cpu=ReActNet student (1-bit, 1 step)" \
    --label "bimacosr-x4=bimacosr-x4 (bicubic-trained)" --label "bidiffsr-x4=bidiffsr-x4 (bicubic-trained, DDIM 2 steps)"
binsr analyze compare --lr-data RealSet65 --scale 4 --images Canon_004_LR4.png oldphoto2.png Lincoln.png dog1.jpeg \
    --model bimacosr-x4 --model runs/sinsr-real-x4-cpu/model.safetensors --model runs/xnor-real-x4-cpu/model.safetensors \
    --model runs/reactnet-real-x4-cpu/model.safetensors --model bimacosr-real-x4 --out runs/compare-real --quiet

# 5. The x2 rows: bicubic and the shipped bidiffsr-x2 on Set5 / Set14 degraded for x2 (seed 0).
for data in Set5 Set14; do
  [ -f "runs/real-x2/$data/degradation.json" ] || binsr degrade "$data" -o "runs/real-x2/$data" --seed 0 --scale 2
  for model in bicubic bidiffsr-x2; do
    evaluate "runs/eval-real-x2/$model-$data-real.json" --model $model --data $data --lr-data "runs/real-x2/$data" --scale 2
  done
done
binsr report runs/eval-real-x2/*.json -o runs/eval-real-x2/report.md --label bicubic=Bicubic \
    --label "bidiffsr-x2=bidiffsr-x2 (bicubic-trained, DDIM 2 steps)"
