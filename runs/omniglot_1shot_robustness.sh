#!/usr/bin/env bash
# Table 1's evaluation and the robustness curves of the 20-way 1-shot runs (README "Results
# (Table 1)" and "Adversarial robustness"; issue 17), on each run's newest checkpoint:
#   1. the reference protocol: 1000 test episodes (30 MC samples for Meta Dropout, from the
#      run's config), written to runs/<RUN>/eval_test.json;
#   2. PGD on the first EPISODES of those episodes for L1, L2 and L-inf, eval_test_pgd_<norm>.json:
#      L-inf at the paper's radii; L1 and L2 over the paper's range (0-100, 0-5) but denser
#      at small radii, because our attack leaves MAML near 0 % beyond L1 50 and L2 2 (README
#      "Adversarial robustness");
#   3. one figure per norm with each of the two runs that has its json:
#      runs/omniglot_1shot_pgd_<norm>.png.
# Each step resumes if stopped (evaluate.py continues a partial json of the same checkpoint),
# and a step whose json already holds the newest checkpoint, the same episode count and
# radii is skipped (runs/finished.py), so rerunning the script continues where it stopped;
# each evaluation appends its output to runs/<RUN>/evaluate[_pgd_<norm>].out, so a rerun
# keeps the earlier logs.
#   bash runs/omniglot_1shot_robustness.sh [EPISODES] [RUN ...]   (from the repository root;
#   RUNs default: omniglot_1shot_maml omniglot_1shot_metadrop; THREADS=N as in
#   runs/learners_omniglot_5w1s/run.sh, to run the two side by side, each pinned with taskset;
#   CLEAN_EPISODES=N replaces the 1000 clean episodes, for a quick check only)
set -euo pipefail
EPISODES=${1:-200}
CLEAN_EPISODES=${CLEAN_EPISODES:-1000}
RUNS=("${@:2}")
if [ ${#RUNS[@]} -eq 0 ]; then
  RUNS=(omniglot_1shot_maml omniglot_1shot_metadrop)
fi
THREAD_FLAGS=()
if [ -n "${THREADS:-}" ]; then
  THREAD_FLAGS=(--intra_op_threads="$THREADS" --inter_op_threads=1)
fi
declare -A EPS=(
  [l1]=2.5,5,10,20,40,100
  [l2]=0.25,0.5,1,2,3,5
  [linf]=0.02,0.04,0.06,0.08,0.1
)
finished() {  # JSON EPISODES [EPS]: see runs/finished.py
  python runs/finished.py "$@"
}
for run in "${RUNS[@]}"; do
  if ! finished "runs/$run/eval_test.json" "$CLEAN_EPISODES"; then
    python evaluate.py --savedir="runs/$run" --n_test_iters="$CLEAN_EPISODES" "${THREAD_FLAGS[@]}" \
      >> "runs/$run/evaluate.out" 2>&1
  fi
  for norm in linf l2 l1; do
    if finished "runs/$run/eval_test_pgd_$norm.json" "$EPISODES" "${EPS[$norm]}"; then
      continue
    fi
    python evaluate.py --savedir="runs/$run" --attack=pgd --attack_norm="$norm" \
      --attack_eps="${EPS[$norm]}" --n_test_iters="$EPISODES" "${THREAD_FLAGS[@]}" \
      >> "runs/$run/evaluate_pgd_$norm.out" 2>&1
  done
done
declare -A LABEL=([omniglot_1shot_maml]=MAML [omniglot_1shot_metadrop]='Meta Dropout')
for norm in linf l2 l1; do
  results=()
  for run in omniglot_1shot_maml omniglot_1shot_metadrop; do
    json="runs/$run/eval_test_pgd_$norm.json"
    if [ -f "$json" ]; then
      step=$(python -c "import json, sys; print(json.load(open(sys.argv[1]))['checkpoint_step'])" "$json")
      results+=("${LABEL[$run]} ($step it)=$json")
    fi
  done
  if [ ${#results[@]} -gt 0 ]; then
    python -m metadrop_tf.export.plots robustness "runs/omniglot_1shot_pgd_$norm.png" "${results[@]}"
  fi
done
