#!/usr/bin/env bash
# Run the notebook chain with papermill: ./run_all.sh [profile | params file]   (default: demo)
# A profile is a name in params/ (kaggle); an argument ending in .yaml/.yml or naming an existing file
# is a params file (my_session.yaml, which may say `extends: kaggle`), passed to every notebook by path.
# Executed notebooks go to <output_dir>/notebooks/ (outputs/<profile>/notebooks/ for demo and smoke),
# keeping their number prefix (stage notebooks once per model of train.models: <notebook>__<model>.ipynb,
# or per group of train.models_per_notebook models: <notebook>__<model>+<model>.ipynb).
# The chain stops at the first failing notebook and names it; a re-run skips finished work.
set -euo pipefail
arg="${1:-demo}"
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [[ "$arg" == *.yaml || "$arg" == *.yml || -f "$arg" ]]; then
  # Absolute: papermill runs the notebooks in notebooks/, not here.
  if [[ "$arg" == /* ]]; then params_file="$arg"; else params_file="$PWD/$arg"; fi
  kind=file; label="$params_file"; what="params file $params_file"; params_desc="$params_file"
  nb_params=(-p params_file "$params_file")
else
  kind=profile; label="$arg"; what="profile $arg"; params_desc="params/$arg.yaml"
  nb_params=(-p profile "$arg")
fi
start=$(date +%s)
# Training stops in time against this clock (interceptor_lib.training.budget): a resumed chain keeps it.
export INTERCEPTOR_SESSION_START="${INTERCEPTOR_SESSION_START:-$start}"
# Progress bars write at most once a minute: papermill copies every update into the notebook's log.
export INTERCEPTOR_PROGRESS="${INTERCEPTOR_PROGRESS:-log}"

# Validate the params file before any work: a wrong key, type or path, or missing backbone weights,
# stops here, naming the key.
# One Python start (importing the package takes seconds) prints the plan of the whole chain (stderr),
# then: output dir, models (in start order), "<notebook>=<stage>" pairs, parallel models, finished
# "<model>/<stage>" pairs.
plan=$(python - "$kind" "$label" <<'PY'
import sys
try:
    from interceptor_lib.config.schema import STAGE_NAMES
    from interceptor_lib.layout import done_record, stale_stages_message
    from interceptor_lib.params import load_params
    from interceptor_lib.pipeline.launch import start_order
    from interceptor_lib.errors import InterceptorError
    from interceptor_lib.models.backbone import check_backbone_weights
except ImportError as e:
    print(f"error: cannot import interceptor_lib ({e}); install the requirements first: "
          "pip install -r requirements.txt", file=sys.stderr)
    sys.exit(3)
kind, label = sys.argv[1:3]
try:
    p = load_params(path=label) if kind == "file" else load_params(label)
    check_backbone_weights(p.train, p.profile)   # missing ImageNet weights stop the chain here, not after preprocessing
except InterceptorError as e:
    sys.exit(f"error: {e}")
stale = stale_stages_message(p)   # finished stages are skipped: they must match the params
if stale:
    print(f"error: {stale}", file=sys.stderr)
    sys.exit(4)
try:  # the plan of the whole chain, first (stderr: stdout answers this script)
    from interceptor_lib.pipeline.plan import default_sizes, format_plan, make_plan
    sizes = default_sizes(p)
    if sizes:
        print(format_plan(make_plan(p, sizes)) + "\n", file=sys.stderr)
except InterceptorError as e:
    print(f"warning: no plan: {e}", file=sys.stderr)
print(p.output_dir)
print(" ".join(start_order(p.train.models, p.train.parallel_models)))  # slowest first when parallel
print(" ".join(f"{n}={s}" for s, n in STAGE_NAMES.items()))
print(p.train.parallel_models)
# finished (model, stage) pairs, here or in train.previous_outputs: their notebooks are skipped
print(" ".join(f"{m}/{s}" for m in p.train.models for s in p.train.stages if done_record(p, m, s) is not None))
print(p.train.models_per_notebook)
PY
) || { rc=$?
  case $rc in
    3|4) ;;   # the package is not importable, or finished stages do not match the params: said above
    127) echo "run_all: no 'python' on PATH; activate the environment that has the requirements" >&2 ;;
    *) echo "run_all: $params_desc is not valid (see above)" >&2 ;;
  esac
  exit 2; }
out_dir=$(sed -n 1p <<<"$plan")
models=$(sed -n 2p <<<"$plan")
stage_pairs=$(sed -n 3p <<<"$plan")   # e.g. 02_stage1_faceforensics=stage1
parallel=$(sed -n 4p <<<"$plan")      # train.parallel_models: stage notebooks of that many models at once
finished=" $(sed -n 5p <<<"$plan") "  # e.g. " ll/stage1 tm/stage1 ": found here or in an attached earlier output
per_nb=$(sed -n 6p <<<"$plan"); per_nb=${per_nb:-1}   # train.models_per_notebook: models one kernel trains
nb_out="$out_dir/notebooks"
mkdir -p "$nb_out"

# A kernel that dies before it answers has run no cell, so starting it again is safe. With parallel
# notebooks this happens: two kernels starting at once can be handed the same free TCP port, and one
# fails with zmq's "Address already in use" (seen in stage 4 of a demo run, an hour in).
KERNEL_START_TRIES=3
KERNEL_DIED="Kernel died before replying to kernel_info"

run_notebook() {  # run_notebook NOTEBOOK OUTPUT_NAME [papermill args...]
  local nb="$1" name="$2" try; shift 2
  echo "== $name ($label)"
  for (( try = 1; ; try++ )); do
    # ipykernel warns on every start that its local TCP sockets are unencrypted (nothing leaves this
    # machine, and nothing in the run can change it): left out of the log.
    if papermill "$nb" "$nb_out/$name.ipynb" "${nb_params[@]}" "$@" --cwd "$repo/notebooks" \
         --log-output --no-progress-bar 2>&1 | sed -u '/Kernel is running over TCP without encryption/d' \
         >"$nb_out/$name.log"; then
      return 0
    fi
    if (( try < KERNEL_START_TRIES )) && grep -qF "$KERNEL_DIED" "$nb_out/$name.log"; then
      mv "$nb_out/$name.log" "$nb_out/$name.kernel-start-$try.log"
      echo "== $name ($label): its kernel did not start (${name}.kernel-start-$try.log); starting it again"
      sleep $(( try * 2 ))
      continue
    fi
    tail -n 30 "$nb_out/$name.log" >&2
    echo "run_all: $name failed on $what; the executed notebook is $nb_out/$name.ipynb" >&2
    echo "run_all: finished work is kept; re-running ./run_all.sh $label resumes from here" >&2
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
      if [[ "$finished" == *" $model/$stage "* ]]; then
        echo "== ${base}__${model} ($label): already trained, skipped"   # its notebook from the first run stays
      else
        todo+=("$model")
      fi
    done
    # Units of work: one model each, or train.models_per_notebook models trained one after another in
    # one kernel (dealt round-robin in start order, so the slow clip models land in different units):
    # 02_stage1_faceforensics__tm+ll+cm.ipynb, notebook parameter model="tm,ll,cm".
    units=()
    if (( per_nb > 1 && ${#todo[@]} > 0 )); then
      n_units=$(( (${#todo[@]} + per_nb - 1) / per_nb ))
      for (( u = 0; u < n_units; u++ )); do
        unit=""
        for (( i = u; i < ${#todo[@]}; i += n_units )); do unit+="${unit:+,}${todo[$i]}"; done
        units+=("$unit")
      done
    else
      units=("${todo[@]}")
    fi
    if (( parallel <= 1 )); then
      for model in "${units[@]}"; do run_notebook "$nb" "${base}__${model//,/+}" -p model "$model"; done
    else
      # train.parallel_models > 1 (CPU profiles): that many models' notebooks at once, the CPU cores
      # shared out between them (a tiny model keeps one core busier than two). All of this stage's
      # notebooks finish before the next stage starts; a failure stops the chain once they have.
      threads=$(( $(nproc) / parallel )); (( threads >= 1 )) || threads=1
      running=0; failed=0
      for model in "${units[@]}"; do
        if (( running >= parallel )); then   # a slot frees as soon as any running notebook ends
          wait -n || failed=1
          running=$(( running - 1 ))
        fi
        if (( failed )); then break; fi
        OMP_NUM_THREADS=$threads MKL_NUM_THREADS=$threads run_notebook "$nb" "${base}__${model//,/+}" -p model "$model" &
        running=$(( running + 1 ))
      done
      while (( running > 0 )); do wait -n || failed=1; running=$(( running - 1 )); done
      if (( failed )); then exit 1; fi
    fi
  else
    run_notebook "$nb" "$base"
  fi
done
echo "run_all: $what done in $(( $(date +%s) - start )) s; notebooks in $nb_out"
