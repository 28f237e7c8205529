#!/usr/bin/env bash
# Real-size speed and memory on one GPU machine with no network (see README.md beside this).
#   benchmarks/gpu/run.sh [--dry] [--out DIR] [--budget SECONDS] [SECTION[@SECONDS] ...]
# Installs the wheels in benchmarks/gpu/wheels/ (if any) into a private folder, then runs each
# section in its own process under its own time limit, most important first, within the budget
# (default 470 s). Results land in OUT/results.jsonl and OUT/results.md as they are taken;
# OUT/log.txt has every section's output. OUT defaults to $OUT, else benchmarks/gpu/out.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
OUT_DIR=${OUT:-$HERE/out}
DRY=""
BUDGET=470
SECTIONS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --dry) DRY="--dry"; BUDGET=300 ;;
    --out) OUT_DIR="$2"; shift ;;
    --budget) BUDGET="$2"; shift ;;
    *) SECTIONS+=("$1") ;;
  esac
  shift
done
if [ ${#SECTIONS[@]} -eq 0 ]; then
  # NAME@SECONDS, in order of importance; each gets at most its seconds and what the budget has left.
  SECTIONS=(env@30 prepare@60 policy@90 track:hf-sam2:300@45 track:sam2:300@45 track:hf-sam2:3000@150
            grpo:lora-7b@90 grpo:full-3b@90 concurrency@110 track:sam2:3000@200)
fi
mkdir -p "$OUT_DIR"
PY=${PYTHON:-python3}
START=$(date +%s)

if [ -z "$DRY" ] && ls "$HERE"/wheels/*.whl >/dev/null 2>&1; then
  SITE=${REVSEG_SITE:-/tmp/revseg-site}
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
    "$HERE"/wheels/*.whl >>"$OUT_DIR/log.txt" 2>&1
  export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
  # A carried transformers that does not import here (a dependency too old) falls back to the machine's own.
  if ! "$PY" -c "import transformers, transformers.models.sam2_video, transformers.models.qwen3_vl" \
      >>"$OUT_DIR/log.txt" 2>&1; then
    echo "carried transformers does not import; using the machine's own" | tee -a "$OUT_DIR/log.txt"
    rm -rf "$SITE"/transformers "$SITE"/transformers-* "$SITE"/huggingface_hub "$SITE"/huggingface_hub-*
  fi
fi
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1

for entry in "${SECTIONS[@]}"; do
  name=${entry%@*}
  limit=$BUDGET
  [ "$name" != "$entry" ] && limit=${entry##*@}
  left=$(( BUDGET - ($(date +%s) - START) ))
  if [ "$left" -lt 10 ]; then
    echo "skipped $name: the budget is spent" | tee -a "$OUT_DIR/log.txt"
    continue
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  echo "== $name (limit ${limit}s, ${left}s left)" | tee -a "$OUT_DIR/log.txt"
  timeout -k 5 "$limit" "$PY" "$HERE/bench_gpu.py" "$name" $DRY --out "$OUT_DIR" >>"$OUT_DIR/log.txt" 2>&1
  rc=$?
  [ $rc -ne 0 ] && echo "section $name ended with status $rc (124 = its time limit)" | tee -a "$OUT_DIR/log.txt"
done
"$PY" "$HERE/bench_gpu.py" table --out "$OUT_DIR" $DRY >/dev/null 2>&1
cat "$OUT_DIR/results.md" 2>/dev/null
echo "total $(( $(date +%s) - START ))s; results in $OUT_DIR"
