#!/usr/bin/env bash
# Run the notebook chain with papermill: ./run_all.sh [profile]   (default: demo)
# Executed notebooks go to <output_dir>/notebooks/ (outputs/<profile>/notebooks/ for demo and smoke),
# keeping their number prefix (stage notebooks once per model of train.models: <notebook>__<model>.ipynb).
# The chain stops at the first failing notebook and names it; a re-run skips finished work.
set -euo pipefail
profile="${1:-demo}"
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
start=$(date +%s)
# Training stops in time against this clock (interceptor_lib.training.budget): a resumed chain keeps it.
export INTERCEPTOR_SESSION_START="${INTERCEPTOR_SESSION_START:-$start}"

# Validate the params file before any work: a wrong key, type or path stops here, naming the key.
# One Python start (importing the package takes seconds) prints: output dir, models (in start order),
# "<notebook>=<stage>" pairs.
plan=$(python - "$profile" <<'PY'
import sys
try:
    from interceptor_lib.config import STAGE_NAMES, load_params, stale_stages_message, start_order
    from interceptor_lib.errors import InterceptorError
except ImportError as e:
    print(f"error: cannot import interceptor_lib ({e}); install the requirements first: "
          "pip install -r requirements.txt", file=sys.stderr)
    sys.exit(3)
try:
    p = load_params(sys.argv[1])
except InterceptorError as e:
    sys.exit(f"error: {e}")
stale = stale_stages_message(p)   # finished stages are skipped: they must match the params
if stale:
    print(f"error: {stale}", file=sys.stderr)
    sys.exit(4)
print(p.output_dir)
print(" ".join(start_order(p.train.models, p.train.parallel_models)))  # slowest first when parallel
print(" ".join(f"{n}={s}" for s, n in STAGE_NAMES.items()))
print(p.train.parallel_models)
PY
) || { rc=$?
  case $rc in
    3|4) ;;   # the package is not importable, or finished stages do not match the params: said above
    127) echo "run_all: no 'python' on PATH; activate the environment that has the requirements" >&2 ;;
    *) echo "run_all: params/$profile.yaml is not valid (see above)" >&2 ;;
  esac
  exit 2; }
out_dir=$(sed -n 1p <<<"$plan")
models=$(sed -n 2p <<<"$plan")
stage_pairs=$(sed -n 3p <<<"$plan")   # e.g. 02_stage1_faceforensics=stage1
parallel=$(sed -n 4p <<<"$plan")      # train.parallel_models: stage notebooks of that many models at once
nb_out="$out_dir/notebooks"
mkdir -p "$nb_out"

# A kernel that dies before it answers has run no cell, so starting it again is safe. With parallel
# notebooks this happens: two kernels starting at once can be handed the same free TCP port, and one
# fails with zmq's "Address already in use" (seen in stage 4 of a demo run, an hour in).
KERNEL_START_TRIES=3
KERNEL_DIED="Kernel died before replying to kernel_info"

run_notebook() {  # run_notebook NOTEBOOK OUTPUT_NAME [papermill args...]
  local nb="$1" name="$2" try; shift 2
  echo "== $name ($profile)"
  for (( try = 1; ; try++ )); do
    if papermill "$nb" "$nb_out/$name.ipynb" -p profile "$profile" "$@" --cwd "$repo/notebooks" \
         --log-output --no-progress-bar >"$nb_out/$name.log" 2>&1; then
      return 0
    fi
    if (( try < KERNEL_START_TRIES )) && grep -qF "$KERNEL_DIED" "$nb_out/$name.log"; then
      mv "$nb_out/$name.log" "$nb_out/$name.kernel-start-$try.log"
      echo "== $name ($profile): its kernel did not start (${name}.kernel-start-$try.log); starting it again"
      sleep $(( try * 2 ))
      continue
    fi
    tail -n 30 "$nb_out/$name.log" >&2
    echo "run_all: $name failed on profile $profile; the executed notebook is $nb_out/$name.ipynb" >&2
    echo "run_all: finished work is kept; re-running ./run_all.sh $profile resumes from here" >&2
    exit 1
  done
}

for nb in "$repo"/notebooks/[0-9][0-9]_*.ipynb; do
  base=$(basename "$nb" .ipynb)
  stage=""
  for pair in $stage_pairs; do [[ "${pair%%=*}" == "$base" ]] && stage="${pair#*=}"; done
  if [[ -n "$stage" ]]; then
    todo=()
    for model in $models; do            # stage notebooks run once per model: 02_stage1_faceforensics__ll.ipynb
      if [[ -f "$out_dir/runs/$model/$stage/done.json" ]]; then
        echo "== ${base}__${model} ($profile): already trained, skipped"   # its notebook from the first run stays
      else
        todo+=("$model")
      fi
    done
    if (( parallel <= 1 )); then
      for model in "${todo[@]}"; do run_notebook "$nb" "${base}__${model}" -p model "$model"; done
    else
      # train.parallel_models > 1 (CPU profiles): that many models' notebooks at once, the CPU cores
      # shared out between them (a tiny model keeps one core busier than two). All of this stage's
      # notebooks finish before the next stage starts; a failure stops the chain once they have.
      threads=$(( $(nproc) / parallel )); (( threads >= 1 )) || threads=1
      running=0; failed=0
      for model in "${todo[@]}"; do
        if (( running >= parallel )); then   # a slot frees as soon as any running notebook ends
          wait -n || failed=1
          running=$(( running - 1 ))
        fi
        if (( failed )); then break; fi
        OMP_NUM_THREADS=$threads MKL_NUM_THREADS=$threads run_notebook "$nb" "${base}__${model}" -p model "$model" &
        running=$(( running + 1 ))
      done
      while (( running > 0 )); do wait -n || failed=1; running=$(( running - 1 )); done
      if (( failed )); then exit 1; fi
    fi
  else
    run_notebook "$nb" "$base"
  fi
done
echo "run_all: profile $profile done in $(( $(date +%s) - start )) s; notebooks in $nb_out"
