#!/usr/bin/env bash
# Before the GPU session's device call (docs/gpu-session.md), on a machine with a package index:
# download the carried wheels of the GPU lock into .whl (pip checks each file against the lock's
# sha256), say whether they and the working tree fit the call's 64 MiB, and, given a Python 3.12
# (PYTHON312=...), install them into an empty --target beside a stand-in of the image (the lock's
# own pins for the image's packages, without torch) and import what imports without torch.
#
#   bash benchmarks/gpu_carry.sh                                   # .whl from requirements/gpu.txt
#   PYTHON312=/path/to/python3.12 bash benchmarks/gpu_carry.sh     # and the install/import rehearsal
#
# Exit status: 0, 1 when the carry does not fit (or a step failed).
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-python}
dest=${DEST:-.whl}
lock=${LOCK:-requirements/gpu.txt}
limit_mib=${CARRY_LIMIT_MIB:-64}

rm -rf "$dest"
"$py" -m suite wheels download --from-lock "$lock" --dest "$dest" --python-version 3.12 --glibc 2.28
tree=$(git ls-files -z -co --exclude-standard | du -cb --files0-from=- 2>/dev/null | tail -1 | cut -f1)
carry=$(du -sb "$dest" | cut -f1)
"$py" - "$tree" "$carry" "$limit_mib" "$dest" <<'EOF'
import sys
tree, carry, limit, dest = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
total = (tree + carry) / 2**20
print(f"carry: {dest} {carry / 2**20:.1f} MiB + working tree {tree / 2**20:.1f} MiB = {total:.1f} MiB "
      f"of the call's {limit:.0f} MiB: {'fits' if total <= limit else 'DOES NOT FIT'} ({limit - total:+.1f} MiB)")
sys.exit(0 if total <= limit else 1)
EOF

if [ -z "${PYTHON312:-}" ]; then
  echo "install/import rehearsal skipped: set PYTHON312 to a Python 3.12 interpreter"
  exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "== install into an empty --target with $("$PYTHON312" --version) (no suite dependencies needed)"
"$PYTHON312" -m suite.tools.wheels install "$dest" --target "$work/site"
echo "== a stand-in of the image: the lock's pins for the image's packages, without torch and what needs it"
grep -v '# carried' "$lock" | grep -v '^#' | sed 's/  #.*//' \
  | grep -vE '^(torch|triton|accelerate|nvidia-|cuda-)' > "$work/image.txt"
"$py" -m uv venv -q --seed -p "$PYTHON312" "$work/image"
"$py" -m uv pip install -q --python "$work/image/bin/python" --no-deps -r "$work/image.txt"
echo "== imports, the carried packages from $work/site, the image's from the stand-in"
PYTHONPATH="$work/site" "$work/image/bin/python" - "$work/site" <<'EOF'
import importlib.metadata as md, sys
site = sys.argv[1]
import datasets, dill, multiprocess, trl
print(f"Python {sys.version.split()[0]}: " + ", ".join(f"{n} {md.version(n)}" for n in (
    "trl", "datasets", "dill", "multiprocess", "transformers", "huggingface-hub", "numpy", "pyarrow", "pandas", "fsspec")))
assert datasets.__file__.startswith(site) and trl.__file__.startswith(site), (datasets.__file__, trl.__file__)
ds = datasets.Dataset.from_dict({"text": ["a", "bb", "ccc"]}).map(lambda r: {"n": len(r["text"])}, num_proc=2)
print("datasets map with 2 processes (dill, multiprocess):", ds["n"])
for mod in ("bitsandbytes", "liger_kernel", "trl.trainer.sft_trainer"):
    try:
        __import__(mod)
        print(f"{mod}: imported")
    except ImportError as exc:
        print(f"{mod}: not import-tested here ({exc}): needs the image's torch")
EOF
echo "== pip check (the stand-in has no torch: lines naming torch, triton or accelerate are expected)"
PYTHONPATH="$work/site" "$work/image/bin/python" -m pip check 2>&1 | grep -vE "requires (torch|triton|accelerate)," || true
