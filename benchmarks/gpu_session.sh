#!/usr/bin/env bash
# The GPU session in one device call (docs/gpu-session.md), from the repository root:
#
#   bash benchmarks/gpu_session.sh [--limit 540] [--pack 45] RUN_ID [pytest args...]     # on the GPU machine
#   bash benchmarks/gpu_session.sh --plan smoke RUN_ID [pytest args...]                  # rehearsal on a CPU
#
# Installs the carried wheels (WHEELS, default .whl) into /tmp/site, reads the kernel-class facts,
# then runs the cases in order of value (tiny full/LoRA/QLoRA on CUDA, the Llama-2-7B-shaped QLoRA and
# LoRA cases, then the unsloth twin and a Liger row where their wheels were carried), each stage only
# while time is left; stops itself before --limit and packs what finished into $OUT (default gpu-out).
# Exit status: 0 all ran and passed, 1 a case failed, 124 the limit stopped or left out a stage,
# 3 the wheels or the stack failed (facts still packed), 2 usage. benchmarks/gpu_session.py does the work.
cd "$(dirname "$0")/.." || exit 2
exec "${PYTHON:-python3}" -m benchmarks.gpu_session "$@"
