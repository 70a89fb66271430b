#!/usr/bin/env bash
# The GPU check: one run, within 5 minutes on one GPU, that says whether the CUDA path works and how fast it is.
# It prints the machine, runs the GPU tests (tests/test_gpu.py), times one repeat of the epoch benchmark against
# the bare loop, and ends with one Markdown table of what passed and the figures, also when a step fails or times
# out. Without CUDA it says so: the tests skip, the benchmark is left out, the table still prints.
#
#   bash benchmarks/gpu_check.sh [MNIST_DIR]
#
# MNIST_DIR (else $MNIST_LIT_DATA_DIR, else .mnist/ in the checkout, else ../shared/mnist) holds MNIST/raw/*.gz.
# A lent GPU machine receives the repository and nothing beside it, so copy the four files into an ignored folder
# of the checkout and send that folder with the call:
#
#   echo /.mnist/ >> .git/info/exclude
#   mkdir -p .mnist/MNIST/raw && cp ../shared/mnist/MNIST/raw/*.gz .mnist/MNIST/raw/
#   bash benchmarks/gpu_check.sh .mnist          # on the GPU machine, with .mnist carried along
#
# What it assumes of the machine: bash, GNU timeout, and a python3 (or $PYTHON) with a CUDA build of torch and
# pytest. When `mnist-lit` is not installed it runs `pip install -q -e .`, which needs a package index. A machine
# without one gets the packages its image lacks as wheels in .whl/ (ignored the same way, carried along): they are
# installed first, then the checkout from them alone. For an image that has torch, Lightning and the scientific
# stack but not the rest, fetch them where pip has an index (hatchling only serves the editable install):
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64 \
#       -d .whl jsonargparse docstring-parser typeshed-client optuna alembic sqlalchemy colorlog mako \
#       hatchling pathspec trove-classifiers
# If the install fails, the checkout runs from PYTHONPATH with what the machine has, and the table says so.
# Logs and the table go to $GPU_CHECK_LOG_DIR (else a fresh temporary folder); $GPU_CHECK_COMMIT names the commit
# where the copy on the machine has no .git.

set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
REPO=$(pwd)
PYTHON=${PYTHON:-python3}
LOG_DIR=${GPU_CHECK_LOG_DIR:-$(mktemp -d -t gpu-check.XXXXXX)}
mkdir -p "$LOG_DIR"
export PYTHONUNBUFFERED=1

# Seconds each step may take; together they stay under 5 minutes.
INSTALL_S=40
MACHINE_S=15
TESTS_S=180
BENCHMARK_S=55

if [ -n "${1:-}" ]; then
    DATA=$1
elif [ -n "${MNIST_LIT_DATA_DIR:-}" ]; then
    DATA=$MNIST_LIT_DATA_DIR
elif [ -d .mnist/MNIST/raw ]; then
    DATA=.mnist
else
    DATA=../shared/mnist
fi
DATA=$(cd "$DATA" 2>/dev/null && pwd || echo "$DATA")
export MNIST_LIT_DATA_DIR=$DATA

ROWS=()  # "step|result|seconds|figures", one per row of the final table
FAILED=0

# run_step NAME SECONDS LOG COMMAND...: COMMAND under timeout, its output to LOG and the terminal; sets STATUS, ELAPSED.
run_step() {
    local name=$1 limit=$2 log=$3
    shift 3
    echo "== $name (at most $limit s)"
    local start=$SECONDS
    timeout -k 10 "$limit" "$@" 2>&1 | tee "$log"
    local rc=${PIPESTATUS[0]}
    ELAPSED=$((SECONDS - start))
    if [ "$rc" -eq 0 ]; then
        STATUS=passed
    elif [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
        STATUS="TIMED OUT after $limit s"
        FAILED=1
    else
        STATUS="FAILED (exit $rc)"
        FAILED=1
    fi
}

# 1. The package: installed, else installed now, else run from the checkout.
if command -v mnist-lit >/dev/null 2>&1 && (cd / && "$PYTHON" -c "import mnist_lit") >/dev/null 2>&1; then
    ROWS+=("install|already installed|0|")
else
    if [ -d .whl ]; then
        INSTALL='"$1" -m pip install -q --no-index --no-deps .whl/*.whl &&
                 "$1" -m pip install -q --no-index --find-links .whl -e .'
    else
        INSTALL='"$1" -m pip install -q --timeout 5 --retries 0 -e .'  # fails fast where there is no index
    fi
    run_step install "$INSTALL_S" "$LOG_DIR/install.log" bash -c "$INSTALL" _ "$PYTHON"
    if [ "$STATUS" != passed ]; then
        export PYTHONPATH=$REPO${PYTHONPATH:+:$PYTHONPATH}
        STATUS="$STATUS; the checkout runs from PYTHONPATH"
        FAILED=0  # reported above; the tests say whether the checkout runs without it
    fi
    ROWS+=("install|$STATUS|$ELAPSED|")
fi

# 2. The machine.
MACHINE_PY='
import torch
print("torch", torch.__version__, "CUDA", torch.version.cuda, "available:", torch.cuda.is_available())
if torch.cuda.is_available():
    print("device", torch.cuda.get_device_name())
'
run_step machine "$MACHINE_S" "$LOG_DIR/machine.log" \
    bash -c 'nvidia-smi -L 2>/dev/null || echo "nvidia-smi: not found"; "$1" -c "$2"' _ "$PYTHON" "$MACHINE_PY"
CUDA=no
grep -q "available: True" "$LOG_DIR/machine.log" && CUDA=yes
DEVICE=$(sed -n 's/^device //p' "$LOG_DIR/machine.log" | head -1)
VERSIONS=$(sed -n 's/^\(torch .*\) available:.*/\1/p' "$LOG_DIR/machine.log" | head -1)
ROWS+=("machine|${DEVICE:-no CUDA device}; ${VERSIONS:-torch not importable}|$ELAPSED|")
if [ ! -d "$DATA/MNIST/raw" ]; then
    ROWS+=("MNIST|MISSING: no $DATA/MNIST/raw (give MNIST_DIR)||")
    FAILED=1
fi

# 3. The GPU tests. The file is named and addopts replaced, so no notebook runs; without CUDA every test skips.
JUNIT=$LOG_DIR/gpu-tests.xml
run_step "GPU tests" "$TESTS_S" "$LOG_DIR/gpu-tests.log" "$PYTHON" -m pytest tests/test_gpu.py -m gpu \
    -p no:cacheprovider -o addopts="" -ra --strict-markers --junitxml="$JUNIT"
SUMMARY=$(grep -E "^=+ .* in [0-9.]+s" "$LOG_DIR/gpu-tests.log" | tail -1 | sed 's/=//g; s/^ *//; s/ *$//')
[ "$CUDA" = no ] && [ "$STATUS" = passed ] && STATUS="no CUDA"
ROWS+=("pytest -m gpu tests/test_gpu.py|$STATUS: ${SUMMARY:-no summary}|$ELAPSED|")
JUNIT_PY='
import sys
import xml.etree.ElementTree as ET

for case in ET.parse(sys.argv[1]).iter("testcase"):
    outcome = "passed"
    for child in case:
        message = (child.get("message") or "").replace("|", "/").replace("\n", " ")[:100]
        if child.tag in ("failure", "error"):
            outcome = f"FAILED: {message}"
        elif child.tag == "skipped":
            outcome = f"skipped: {message}"
    name, seconds = case.get("name"), float(case.get("time", 0))
    print(f"- {name}|{outcome}|{seconds:.1f}|")
'
if [ -s "$JUNIT" ]; then
    while IFS= read -r row; do ROWS+=("$row"); done < <("$PYTHON" -c "$JUNIT_PY" "$JUNIT")
fi

# 4. One repeat of the epoch benchmark (the README's model as users run it, beside the bare loop); GPU only.
BENCHMARK="epoch_speed.py --device cuda --repeats 1 --epochs 3 --contenders mnist-lit bare"
if [ "$CUDA" = yes ]; then
    # shellcheck disable=SC2086  # the options are words
    run_step "epoch benchmark" "$BENCHMARK_S" "$LOG_DIR/epoch-speed.log" "$PYTHON" benchmarks/$BENCHMARK
    # its table's rows: | contender | s/epoch | × bare | peak RSS MB |
    FIGURES=$(awk -F'|' '$2 ~ /^ (mnist-lit|bare) +$/ { gsub(/ /, "", $2); gsub(/ /, "", $3); gsub(/ /, "", $4);
        printf "%s%s %s s/epoch (%s× bare)", sep, $2, $3, $4; sep = ", " }' "$LOG_DIR/epoch-speed.log")
    ROWS+=("$BENCHMARK|$STATUS|$ELAPSED|${FIGURES:-none}")
else
    ROWS+=("$BENCHMARK|skipped: no CUDA|0|")
fi

COMMIT=${GPU_CHECK_COMMIT:-$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)}
CHANGED=$(git -C "$REPO" status --porcelain --untracked-files=no 2>/dev/null)
[ -z "${GPU_CHECK_COMMIT:-}" ] && [ -n "$CHANGED" ] && COMMIT="$COMMIT with uncommitted changes"
{
    echo
    echo "GPU check, $(date -u '+%Y-%m-%d %H:%M UTC'), commit $COMMIT; MNIST from $DATA; logs in $LOG_DIR"
    echo
    echo "| step | result | seconds | figures |"
    echo "|---|---|---:|---|"
    for row in "${ROWS[@]}"; do
        echo "| ${row//|/ | } |"
    done
} | tee "$LOG_DIR/table.md"
exit "$FAILED"
