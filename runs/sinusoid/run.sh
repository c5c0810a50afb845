#!/usr/bin/env bash
# Sinusoid regression (Finn et al. 2017) with the shipped configs: train, evaluate on the
# first 1000 test tasks, plot three of them. Resumable: rerun to continue.
#   bash runs/sinusoid/run.sh [LEARNER:SHOTS ...]   (from the repository root)
# default: maml, metadrop and csn at 5 and 10 shots; LEARNER names configs/sinusoid_LEARNER.cfg
# (configs/sinusoid_maml.cfg with --learner=LEARNER when there is no such file).
set -euo pipefail
OUT=runs/sinusoid
RUNS=("$@")
if [ ${#RUNS[@]} -eq 0 ]; then RUNS=(maml:5 metadrop:5 csn:5 maml:10 metadrop:10 csn:10); fi
for run in "${RUNS[@]}"; do
  name=${run%%:*}; shots=${run##*:}
  config=configs/sinusoid_$name.cfg
  extra=()
  if [ ! -f "$config" ]; then config=configs/sinusoid_maml.cfg; extra=(--learner="$name"); fi
  dir="$OUT/${name}_${shots}shot"
  python train.py --flagfile="$config" "${extra[@]}" --shot="$shots" --savedir="$dir" \
    > "$dir.train.out" 2>&1
  python evaluate.py --savedir="$dir" > "$dir.eval.out" 2>&1
  python export.py --savedir="$dir" --mode=visualize > "$dir.plot.out" 2>&1
  tail -2 "$dir.eval.out"
done
