#!/usr/bin/env bash
# Table 1, further (docs/reproducing.md): MAML 20-way 1-shot continued to 20000 and 30000
# iterations, each evaluated with the table's protocol (1000 episodes); the Omniglot 20-way
# 5-shot cells, MAML and Meta Dropout with the reference flags, trained to ITERS_5SHOT and
# evaluated the same way. Resumable: rerun the same command; training resumes from the last
# checkpoint and an evaluation whose eval_test.json already holds the newest checkpoint with
# 1000 episodes is skipped (runs/finished.py). Each evaluation keeps the earlier one of another
# checkpoint as eval_test.step<N>.json.
#   bash runs/table1_further.sh JOB   (from the repository root; one JOB per core:)
#     maml_1shot      runs/omniglot_1shot_maml to 20000, evaluate, to 30000, evaluate
#     maml_5shot      runs/omniglot_5shot_maml to ITERS_5SHOT (default 5000), evaluate
#     metadrop_5shot  runs/omniglot_5shot_metadrop to ITERS_5SHOT, evaluate (30 MC samples in
#                     TEST_MC_CHUNKS chunks, default 3, for memory)
#     maml_lr3e-4     runs/omniglot_1shot_maml_lr3e-4 (MAML at Meta Dropout's meta_lr; created at
#                     2600 with --meta_lr=3e-4) to ITERS_CHECK (default 10000), evaluate
#     maml_seed1      runs/omniglot_1shot_maml_seed1 (created with --seed=1) likewise
#     metadrop_1shot  runs/omniglot_1shot_metadrop_long: a copy of runs/omniglot_1shot_metadrop at
#                     10000 (which Table 1, the robustness runs and the serving tests keep using),
#                     trained on to ITERS_MD1 (default 20000), evaluated
# THREADS (default 1) threads per op; run each JOB pinned: taskset -c 0 bash ... maml_1shot.
# WORKERS=N (default 1) evaluates on N single-core worker processes (multi_worker on loopback
# ports from PORT, default 23456; worker i pinned to core i, worker 0 writes the files and
# evaluate.out, the others log to runs/RUN/evaluate.worker<i>.out); the per-episode results
# equal one process's (docs/scaling.md), so an evaluation interrupted on any worker count
# continues on any other. If a worker fails, the others are stopped (SIGTERM, then SIGKILL after
# GRACE seconds, default 60) and the script exits 1.
set -euo pipefail
JOB=${1:?usage: bash runs/table1_further.sh maml_1shot|maml_5shot|metadrop_5shot|maml_lr3e-4|maml_seed1|metadrop_1shot}
ITERS_5SHOT=${ITERS_5SHOT:-5000}
ITERS_CHECK=${ITERS_CHECK:-10000}
THREADS=${THREADS:-1}
WORKERS=${WORKERS:-1}
PORT=${PORT:-23456}
GRACE=${GRACE:-60}
THREAD_FLAGS=(--intra_op_threads="$THREADS" --inter_op_threads=1)
DATA=--data_dir=../shared/data/omniglot

train_and_evaluate() {  # RUN ITERS [EVALUATE FLAGS...]
  local run=$1 iters=$2
  shift 2
  if [ ! -f "runs/$run/config.json" ]; then
    python train.py --flagfile="configs/$run.cfg" "$DATA" --savedir="runs/$run" \
      --save_freq=100 --eval_freq=500 --eval_batches=10 --n_train_iters="$iters" \
      "${THREAD_FLAGS[@]}" >> "runs/$run.out" 2>&1
  else
    python train.py --savedir="runs/$run" --n_train_iters="$iters" "${THREAD_FLAGS[@]}" \
      >> "runs/$run.out" 2>&1
  fi
  if ! python runs/finished.py "runs/$run/eval_test.json" 1000; then
    evaluate_on_workers "$run" "$@"
  fi
}

evaluate_on_workers() {  # RUN [EVALUATE FLAGS...]: the table's protocol on WORKERS processes
  local run=$1
  shift
  if [ "$WORKERS" -le 1 ]; then
    python evaluate.py --savedir="runs/$run" --n_test_iters=1000 "${THREAD_FLAGS[@]}" "$@" \
      >> "runs/$run/evaluate.out" 2>&1
    return
  fi
  local i pid status=0 stopped= cluster task out pids=() left=()
  cluster=$(python -c "import json; print(json.dumps(['localhost:%d' % ($PORT + i)
                                                      for i in range($WORKERS)]))")
  for ((i = 0; i < WORKERS; i++)); do
    out="runs/$run/evaluate.out"
    if [ "$i" -gt 0 ]; then out="runs/$run/evaluate.worker$i.out"; fi
    task="{\"type\": \"worker\", \"index\": $i}"
    TF_CONFIG="{\"cluster\": {\"worker\": $cluster}, \"task\": $task}" taskset -c "$i" \
      python evaluate.py --savedir="runs/$run" --n_test_iters=1000 --intra_op_threads=1 \
      --inter_op_threads=1 "$@" >> "$out" 2>&1 &
    pids+=($!)
  done
  # Wait for all; once one fails, stop the others (they would wait for it until a collective
  # times out) with SIGTERM, and SIGKILL after GRACE seconds (a signal reaches Python only
  # between TF ops); return 1. Worker 0 saves the partial after every call, so either keeps the
  # episodes it finished.
  while [ "${#pids[@]}" -gt 0 ]; do
    sleep 1
    left=()
    for pid in "${pids[@]}"; do
      if kill -0 "$pid" 2> /dev/null; then left+=("$pid"); elif ! wait "$pid"; then status=1; fi
    done
    pids=(${left[@]+"${left[@]}"})
    if [ "$status" -ne 0 ] && [ "${#pids[@]}" -gt 0 ]; then
      if [ -z "$stopped" ]; then
        kill "${pids[@]}" 2> /dev/null || true
        stopped=$SECONDS
      elif [ $((SECONDS - stopped)) -ge "$GRACE" ]; then
        kill -KILL "${pids[@]}" 2> /dev/null || true
      fi
    fi
  done
  return "$status"
}

evaluated() {  # RUN STEP: exit 0 if an eval_test*.json of RUN holds checkpoint STEP
  python -c "import glob, json, sys; sys.exit(0 if any(json.load(open(p))['checkpoint_step'] == $2
             for p in glob.glob('runs/$1/eval_test*.json')) else 1)"
}

case "$JOB" in
  maml_1shot)  # the 20000 stage only until it is evaluated (past it, it would evaluate the newest)
    evaluated omniglot_1shot_maml 20000 || train_and_evaluate omniglot_1shot_maml 20000
    train_and_evaluate omniglot_1shot_maml 30000 ;;
  maml_5shot)
    train_and_evaluate omniglot_5shot_maml "$ITERS_5SHOT" ;;
  metadrop_5shot)
    train_and_evaluate omniglot_5shot_metadrop "$ITERS_5SHOT" \
      --test_mc_chunks="${TEST_MC_CHUNKS:-3}" ;;
  maml_lr3e-4)
    train_and_evaluate omniglot_1shot_maml_lr3e-4 "$ITERS_CHECK" ;;
  maml_seed1)
    train_and_evaluate omniglot_1shot_maml_seed1 "$ITERS_CHECK" ;;
  metadrop_1shot)
    if [ ! -d runs/omniglot_1shot_metadrop_long ]; then
      mkdir -p runs/omniglot_1shot_metadrop_long/ckpt
      cp runs/omniglot_1shot_metadrop/{config.json,flags.cfg,train.log} \
        runs/omniglot_1shot_metadrop_long/
      cp runs/omniglot_1shot_metadrop/ckpt/{checkpoint,ckpt-10000.*} \
        runs/omniglot_1shot_metadrop_long/ckpt/
    fi
    train_and_evaluate omniglot_1shot_metadrop_long "${ITERS_MD1:-20000}" ;;
  *) echo "unknown JOB $JOB" >&2; exit 2 ;;
esac
