#!/usr/bin/env bash
# ResNet-12 next to conv-4 on real Omniglot 5-way 1-shot, MAML, at one small budget: the same
# flags, iterations, seed and test episodes for both (README "Backbones"). Resumable: rerun to
# continue.
#   bash runs/resnet12_omniglot_5w1s/run.sh [ITERS] [EPISODES] [NAME ...]  (from the repository
#   root; NAMEs: resnet12 (widths 64-128-256-512), resnet12_w32 (32-64-128-256), conv4;
#   default resnet12 and conv4)
set -euo pipefail
ITERS=${1:-500}
EPISODES=${2:-400}
OUT=runs/resnet12_omniglot_5w1s
COMMON=(--flagfile=configs/omniglot_1shot_metadrop.cfg --learner=maml --way=5
        --data_dir=../shared/data/omniglot --n_train_iters="$ITERS" --save_freq=100
        --eval_freq="$ITERS" --eval_batches=10 --seed=0)
declare -A BACKBONE=(
  [resnet12]="--backbone=resnet12 --resnet_widths=64,128,256,512"
  [resnet12_w32]="--backbone=resnet12 --resnet_widths=32,64,128,256"
  [conv4]="--backbone=conv4"
)
NAMES=("${@:3}")
if [ ${#NAMES[@]} -eq 0 ]; then
  NAMES=(resnet12 conv4)
fi
for name in "${NAMES[@]}"; do
  # shellcheck disable=SC2086
  python train.py "${COMMON[@]}" ${BACKBONE[$name]} --savedir="$OUT/$name" > "$OUT/$name.train.out" 2>&1
  python evaluate.py --savedir="$OUT/$name" --n_test_iters="$EPISODES" > "$OUT/$name.eval.out" 2>&1
  tail -1 "$OUT/$name.eval.out"
done
