#!/usr/bin/env bash
# One part of the GPU baseline session (docs/gpu-session.md), run from the repository root on a GPU
# machine that may have no package index: install the carried wheels, run the part's cases in
# benchmark mode, render its report, and pack the records and the report into $OUT (or ./gpu-out).
#
#   bash benchmarks/gpu_session.sh PART RUN_ID [extra pytest args...]
#
# PART selects the cases; each part is sized to finish inside a 10-minute call on an H200:
#   lora      7B-shaped Llama-2: LoRA and full fine-tune (bf16, gradient checkpointing)
#   qlora     7B-shaped Llama-2 QLoRA: gradient checkpointing, packing+NEFTune, FA2, eager
#   arch      7B-shaped Mistral and Qwen2.5 QLoRA
#   unsloth   7B-shaped unsloth, Llama-2 and Mistral (next to their HF QLoRA twins)
#   tiny      the tiny matrix on CUDA (unsloth and flash-attn rows skip unless carried)
#   smoke     tiny-llama/lora/base alone, to check the plumbing (runs on a CPU too)
# Exit status: that of the pytest run (1 when a case failed), 3 when the wheels do not install or
# the stack does not import; 124 when the part ran past PART_TIMEOUT_S (default 480 s, so that the
# report and the archive are still made inside a 10-minute call; what finished is in them).
set -uo pipefail
part=${1:?usage: benchmarks/gpu_session.sh PART RUN_ID [pytest args...]}
run_id=${2:?usage: benchmarks/gpu_session.sh PART RUN_ID [pytest args...]}
shift 2
out=${OUT:-gpu-out}
mkdir -p "$out"

case "$part" in
  lora)    select=(-m "7b and (lora or full) and not qlora and not multigpu" -k "llama2-7b-shaped") ;;
  qlora)   select=(-m "7b and qlora and not multigpu" -k "llama2-7b-shaped") ;;
  arch)    select=(-m "7b and qlora and not multigpu" -k "mistral-7b-shaped or qwen2.5-7b-shaped") ;;
  unsloth) select=(-m "7b and unsloth" -k "shaped") ;;
  tiny)    select=(-m "tiny and not multigpu") ;;
  smoke)   select=(-m "tiny and lora and text" -k "tiny-llama/lora/base") ;;
  *) echo "unknown part '$part': one of lora, qlora, arch, unsloth, tiny, smoke" >&2; exit 2 ;;
esac

# WHEELS: the carried wheel folders to install, in order (later ones replace earlier versions);
# /tmp/site outlives the call while the machine stays warm, so a later call may carry only its own.
for dir in ${WHEELS:-.whl}; do
  if [ -f "$dir/manifest.json" ]; then
    python3 -m suite wheels install "$dir" --target /tmp/site || exit 3
  fi
done
if [ -d /tmp/site ]; then export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}; fi
# A machine that went cold between calls has lost /tmp/site: say so now rather than skip every case.
python3 -c "import trl, bitsandbytes, datasets" \
  || { echo "the stack does not import: carry the wheels (WHEELS=...), see docs/gpu-session.md" >&2; exit 3; }
# The 7B-shaped weights (13-15 GB each) go to local disk, kept while the machine stays warm.
export FTSUITE_CACHE=${FTSUITE_CACHE:-/tmp/ftsuite-cache} PYTHONUNBUFFERED=1
rm -rf "$FTSUITE_CACHE"/random/*.tmp*  # a build killed mid-save
case "$part" in  # the disk (64 GB) holds two shapes at most: drop what later parts do not use
  arch) rm -rf "$FTSUITE_CACHE"/random/llama2-7b-* ;;
  unsloth) python3 -m xformers.info 2>&1 | grep -iE "^xformers|torch|cuda|flash" | head -8 ;;
esac
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
df -h /tmp .

timeout -s INT "${PART_TIMEOUT_S:-480}" python3 -m suite run "${select[@]}" --benchmark --run-id "$run_id" \
  --keep-checkpoints never --no-baselines -p no:cacheprovider -q -rs "$@" 2>&1 | tee "$out/$run_id.log"
code=${PIPESTATUS[0]}
reports=${FTSUITE_REPORTS:-reports} results=${FTSUITE_RESULTS:-results}
[ "$code" = 124 ] && echo "the part ran past PART_TIMEOUT_S=${PART_TIMEOUT_S:-480} s: what finished is packed" >&2
if [ -f "$results/$run_id/manifest.json" ]; then
  python3 -m suite report "$run_id" --out "$reports/$run_id" --fail-on none > /dev/null \
    && cp "$reports/$run_id/report.md" "$out/$run_id.md" && cp "$reports/$run_id/report.html" "$out/$run_id.html"
  tar czf "$out/$run_id.tar.gz" --exclude='*/checkpoint' --exclude='*/trainer' -C "$results" "$run_id"
else
  echo "no records: the run stopped before it began" >&2
fi
ls -l "$out"
exit "$code"
