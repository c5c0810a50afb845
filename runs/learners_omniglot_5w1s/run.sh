#!/usr/bin/env bash
# Every learner on real Omniglot 5-way 1-shot at one small budget: the same flags, iterations,
# seed and test episodes for all (README "Learners compared"). Resumable: rerun to continue (a
# finished name resumes at its last iteration without training, and its evaluation is skipped
# when eval_test.json already holds that checkpoint and EPISODES episodes: runs/finished.py).
#   bash runs/learners_omniglot_5w1s/run.sh [ITERS] [EPISODES] [NAME ...]  (from the repository
#   root; NAMEs: a subset of the runs below, default all; the table lists every finished run)
# Each command appends its output to <OUT>/<NAME>.{train,eval}.out, so a rerun keeps earlier logs.
# Environment: WAY (default 5; 20 is the paper's setting) writes to runs/learners_omniglot_<WAY>w1s
# (or OUT); THREADS=N passes --intra_op_threads=N --inter_op_threads=1 to train and evaluate, so
# two NAME subsets can run side by side, each pinned to a core with taskset.
set -euo pipefail
ITERS=${1:-1500}
EPISODES=${2:-600}
WAY=${WAY:-5}
OUT=${OUT:-runs/learners_omniglot_${WAY}w1s}
THREAD_FLAGS=()
if [ -n "${THREADS:-}" ]; then
  THREAD_FLAGS=(--intra_op_threads="$THREADS" --inter_op_threads=1)
fi
mkdir -p "$OUT"
COMMON=(--flagfile=configs/omniglot_1shot_metadrop.cfg --way="$WAY" --data_dir=../shared/data/omniglot
        --n_train_iters="$ITERS" --save_freq=250 --eval_freq="$ITERS" --eval_batches=10 --seed=0)
declare -A LEARNER=(
  [maml]="--learner=maml"
  [fomaml]="--learner=fomaml"
  [metadrop]="--learner=metadrop"
  [metasgd]="--learner=metasgd"
  [metasgd_metadrop]="--learner=metasgd --meta_dropout"
  [anil]="--learner=anil"
  [mamlpp]="--learner=maml --lslr --msl_iters=$((ITERS / 3)) --first_order_iters=$((ITERS / 3))"
  [csn]="--learner=csn"
  [metalstm]="--learner=metalstm"
  [fixed_mult]="--learner=metadrop --noise_type=fixed_mult"
  [fixed_add]="--learner=metadrop --noise_type=fixed_add"
  [learned_add]="--learner=metadrop --noise_type=learned_add"
  [info_dropout]="--learner=metadrop --noise_type=info_dropout"
  [vib]="--learner=metadrop --noise_type=vib"
  [mixup]="--learner=maml --inner_mixup=input"
  [manifold_mixup]="--learner=maml --inner_mixup=manifold"
)
NAMES=("${@:3}")
if [ ${#NAMES[@]} -eq 0 ]; then
  NAMES=(maml fomaml metadrop metasgd metasgd_metadrop anil mamlpp csn metalstm fixed_mult
         fixed_add learned_add info_dropout vib mixup manifold_mixup)
fi
for name in "${NAMES[@]}"; do
  # shellcheck disable=SC2086
  python train.py "${COMMON[@]}" "${THREAD_FLAGS[@]}" ${LEARNER[$name]} --savedir="$OUT/$name" \
    >> "$OUT/$name.train.out" 2>&1
  if ! python runs/finished.py "$OUT/$name/eval_test.json" "$EPISODES"; then
    python evaluate.py --savedir="$OUT/$name" --n_test_iters="$EPISODES" "${THREAD_FLAGS[@]}" \
      >> "$OUT/$name.eval.out" 2>&1
  fi
done
python - "$OUT" <<'PY'
import json, os, sys
out = sys.argv[1]
OPTIONS = ('learner', 'meta_dropout', 'lslr', 'msl_iters', 'first_order_iters', 'noise_type',
           'inner_mixup')
print('| run | options | test accuracy (%) | episodes x MC | train it/s |')
print('| --- | --- | --- | --- | --- |')
for name in ('maml', 'fomaml', 'metadrop', 'metasgd', 'metasgd_metadrop', 'anil', 'mamlpp',
             'csn', 'metalstm', 'fixed_mult', 'fixed_add', 'learned_add', 'info_dropout',
             'vib', 'mixup', 'manifold_mixup'):
  path = os.path.join(out, name, 'eval_test.json')
  if not os.path.exists(path):
    continue
  r = json.load(open(path))
  config = json.load(open(os.path.join(out, name, 'config.json')))
  options = ' '.join(f'--{k}={config.get(k)}' for k in OPTIONS
                     if config.get(k) not in ('', False, 0, None, 'metadrop')
                     or (k == 'learner' and config.get(k)))
  speeds = [float(line.split('|')[2].split()[0]) for line in
            open(os.path.join(out, name, 'train.log')) if ' it/s ' in line]
  print(f"| {name} | `{options}` | {r['accuracy']:.2f} +- {r['ci95']:.2f} | "
        f"{r['n_episodes']} x {r['mc_samples']} | {sum(speeds) / max(len(speeds), 1):.2f} |")
PY
