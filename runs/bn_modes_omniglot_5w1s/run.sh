#!/usr/bin/env bash
# Inductive batch norm on real Omniglot 5-way 1-shot at the budget of "Learners compared"
# (same flags, iterations, seed and test episodes); the transductive rows are those runs
# (runs/learners_omniglot_5w1s). README "Batch-norm modes". Resumable: rerun to continue.
#   bash runs/bn_modes_omniglot_5w1s/run.sh [ITERS] [EPISODES]     (from the repository root)
set -euo pipefail
ITERS=${1:-1000}
EPISODES=${2:-400}
OUT=runs/bn_modes_omniglot_5w1s
COMMON=(--flagfile=configs/omniglot_1shot_metadrop.cfg --way=5 --data_dir=../shared/data/omniglot
        --n_train_iters="$ITERS" --save_freq=250 --eval_freq="$ITERS" --eval_batches=10 --seed=0
        --bn_mode=inductive)
for name in maml metadrop; do
  python train.py "${COMMON[@]}" --learner="$name" --savedir="$OUT/${name}_inductive" \
    > "$OUT/${name}_inductive.train.out" 2>&1
  python evaluate.py --savedir="$OUT/${name}_inductive" --n_test_iters="$EPISODES" \
    > "$OUT/${name}_inductive.eval.out" 2>&1
done
python - <<'PY'
import json
print('| learner | batch norm | test accuracy (%) | episodes x MC | run |')
print('| --- | --- | --- | --- | --- |')
for name in ('maml', 'metadrop'):
  for mode, run in (('transductive', f'runs/learners_omniglot_5w1s/{name}'),
                    ('inductive', f'runs/bn_modes_omniglot_5w1s/{name}_inductive')):
    r = json.load(open(f'{run}/eval_test.json'))
    print(f"| {name} | {mode} | {r['accuracy']:.2f} +- {r['ci95']:.2f} | "
          f"{r['n_episodes']} x {r['mc_samples']} | `{run}` |")
PY
