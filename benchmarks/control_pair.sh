#!/usr/bin/env bash
# The control pair (docs/upgrade.md#the-control-pair): upgrade-check between two releases of a package
# that nothing the cases run touches, so its gate must pass. A red gate here is the suite's own false
# alarm (noise gated as a change, a check of the wrong thing), not a finding about the stack.
#
#   bash benchmarks/control_pair.sh                                   # the whole tiny matrix (-m tiny)
#   bash benchmarks/control_pair.sh -m "tiny and lora and not gpu" --no-invariants   # a smaller selection
#
# The pair: nvidia-ml-py (pynvml), which only a CUDA run imports (GPU memory sampling in suite/train/measure.py,
# the GPU list in suite/machine.py, which on a machine without a driver returns nothing); the candidate is the
# control lock's release, the baseline the one before it. Override with BASELINE= / CANDIDATE= (pins), OUT=,
# PYTHON=. Arguments after the script's go to upgrade-check (a later -m replaces -m tiny). Exit status: the gate's.
cd "$(dirname "$0")/.." || exit 2
BASELINE="${BASELINE:-nvidia-ml-py==13.610.43}"
CANDIDATE="${CANDIDATE:-nvidia-ml-py==13.615.71}"
OUT="${OUT:-reports/control-pair}"
start=$(date +%s)
"${PYTHON:-python}" -m suite upgrade-check --baseline "$BASELINE" --candidate "$CANDIDATE" -m tiny --out "$OUT" "$@"
code=$?
echo "control pair $BASELINE -> $CANDIDATE: exit $code (the gate), wall time $(( $(date +%s) - start )) s; report: $OUT/report.md"
exit $code
