"""The GPU session in one device call (docs/gpu-session.md), run from the repository root:

    bash benchmarks/gpu_session.sh RUN_ID [pytest args...]                 # on the GPU machine (H100 or H200)
    bash benchmarks/gpu_session.sh --plan smoke RUN_ID [pytest args...]    # the same steps on a CPU, stand-in cases

In this order, and each step only while time is left: install the carried wheels (WHEELS, default
.whl) into /tmp/site; read the facts a GPU kernel class is made of (benchmarks/gpu_facts.py); then
the cases, in order of value, one pytest run per stage:

    tiny      tiny-llama full, LoRA and QLoRA on CUDA, regression mode, into RUN_ID-regression
              (regression records are what a kernel class's references, its golden curves, are made of)
    7b-qlora  the Llama-2-7B-shaped model, built once into FTSUITE_CACHE, QLoRA + gradient checkpointing
    7b-lora   the same model, LoRA + gradient checkpointing
    unsloth   the unsloth twin of the 7B QLoRA case (only if unsloth imports: its wheels were carried)
    liger     the 7B QLoRA case with Liger kernels (only if liger_kernel imports)

The 7B and later stages run in benchmark mode into RUN_ID. A stage starts only with at least its
`min_s` left before the cases' deadline (--limit less --pack); its cases get `--case-timeout` of the
time left (the suite then records a killed case as an error with its reason), and at the deadline
the stage's process group gets SIGINT (SIGKILL 15 s later). After every stage, and at the end, what
finished is packed into $OUT (default gpu-out): RUN_ID.tar.gz (both runs' records, the facts, the
session summary with the wheel manifests, the log; no checkpoints), RUN_ID.md / .html and
RUN_ID-regression.md (the reports), RUN_ID.log, RUN_ID.facts.json, RUN_ID.session.json.

Exit status: 0 every stage ran and every case passed or skipped; 1 a case failed (or errored);
124 the limit stopped a stage or left one unstarted; 3 the wheels did not install or the stack does
not import (the facts are still read and packed); 2 usage.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GRACE_S = 15  # after SIGINT, before SIGKILL
MAX_FILE_BYTES = 4 * 2**20  # a file in the run folder larger than this stays out of the archive (and is named)
STACK = ("trl", "datasets", "bitsandbytes")  # what every case needs beside the image's torch and transformers


@dataclass(frozen=True)
class Stage:
    name: str
    what: str
    cases: tuple[str, ...]
    min_s: float  # not started with less left before the deadline: the least it could take
    needs: tuple[str, ...] = ()  # modules that must import (else their wheels were not carried: skipped)
    benchmark: bool = True  # benchmark mode into RUN_ID; else regression mode into RUN_ID-regression

    def run_id(self, base: str) -> str:
        return base if self.benchmark else f"{base}-regression"


GPU = (
    # regression mode: the records a kernel class's references are made of (golden curves: tiny cases only)
    Stage("tiny", "tiny-llama full, LoRA and QLoRA on CUDA, regression mode",
          ("tiny-llama/full/base", "tiny-llama/lora/base", "tiny-llama/qlora/base"), 30, benchmark=False),
    Stage("7b-qlora", "Llama-2-7B-shaped (built once), QLoRA + gradient checkpointing",
          ("llama2-7b-shaped/qlora/gradient_checkpointing",), 120),
    Stage("7b-lora", "Llama-2-7B-shaped, LoRA + gradient checkpointing",
          ("llama2-7b-shaped/lora/gradient_checkpointing",), 75),
    Stage("unsloth", "the unsloth twin of the 7B QLoRA case",
          ("llama2-7b-shaped/unsloth/gradient_checkpointing",), 120, ("unsloth",)),
    Stage("liger", "the 7B QLoRA case with Liger kernels",
          ("llama2-7b-shaped/qlora/gradient_checkpointing+liger",), 90, ("liger_kernel",)),
)
# On a CPU: the same stages, limit and packing, with a tiny case standing in for each GPU one
SMOKE = (
    Stage("tiny", "stand-in: tiny-llama LoRA, regression mode", ("tiny-llama/lora/base",), 5, benchmark=False),
    Stage("7b-qlora", "stand-in: tiny-llama QLoRA", ("tiny-llama/qlora/base",), 5),
    Stage("7b-lora", "stand-in: tiny-llama full", ("tiny-llama/full/base",), 5),
    *(s for s in GPU if s.needs),
)
PLANS = {"gpu": GPU, "smoke": SMOKE}


class Session:
    def __init__(self, args: argparse.Namespace):
        self.t0 = time.monotonic()
        self.args, self.run_id = args, args.run_id
        self.plan = tuple(s for s in PLANS[args.plan] if not args.stages or s.name in args.stages)
        self.deadline = self.t0 + args.limit - args.pack  # the cases stop here
        self.end = self.t0 + args.limit - 10  # the report must be done here (the last pack takes a second)
        self.out = Path(os.environ.get("OUT") or "gpu-out")
        self.out.mkdir(parents=True, exist_ok=True)
        self.results = Path(os.environ.get("FTSUITE_RESULTS") or ROOT / "results")
        self.reports = Path(os.environ.get("FTSUITE_REPORTS") or ROOT / "reports")
        self.log = open(self.out / f"{self.run_id}.log", "a", buffering=1)
        self.site = Path(args.site)
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        if args.plan == "gpu":  # the 7B-shaped weights (13.5 GB) on local disk, kept while the machine is warm
            self.env.setdefault("FTSUITE_CACHE", "/tmp/ftsuite-cache")
        self.summary: dict = {"run_id": self.run_id, "plan": args.plan, "limit_s": args.limit, "pack_s": args.pack,
                              "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "wheels": [], "stages": []}
        self.stopping = False  # SIGTERM / SIGINT to this script: stop the stage, pack, leave

    # -- plumbing ----------------------------------------------------------------------------------

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def say(self, msg: str) -> None:
        line = f"[gpu-session {self.elapsed():6.1f} s] {msg}"
        print(line, flush=True)
        self.log.write(line + "\n")

    def run(self, cmd: list[str], until: float, label: str, echo: bool = True) -> tuple[int | None, bool]:
        """Run cmd (its output to the log, and the terminal if echo) until the monotonic time `until`;
        then SIGINT its process group, SIGKILL after GRACE_S. Returns (exit code, stopped by the limit)."""
        proc = subprocess.Popen(cmd, cwd=ROOT, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, bufsize=1, errors="replace", start_new_session=True)

        def pump():
            for line in proc.stdout:
                if echo:
                    sys.stdout.write(line)
                self.log.write(line)
        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        stopped = False
        try:
            proc.wait(timeout=max(0.0, until - time.monotonic()))
        except (subprocess.TimeoutExpired, KeyboardInterrupt) as exc:
            stopped = True
            self.stopping |= isinstance(exc, KeyboardInterrupt)
            self.say(f"{label}: {'interrupted' if self.stopping else 'the limit'}: SIGINT to its processes")
            self._signal(proc, signal.SIGINT)
            try:
                proc.wait(timeout=GRACE_S)
            except subprocess.TimeoutExpired:
                self.say(f"{label}: still running {GRACE_S} s after SIGINT: SIGKILL")
                self._signal(proc, signal.SIGKILL)
                proc.wait()
        reader.join(timeout=5)
        return proc.returncode, stopped

    @staticmethod
    def _signal(proc: subprocess.Popen, sig: int) -> None:
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass

    # -- steps -------------------------------------------------------------------------------------

    def install_wheels(self) -> bool:
        ok = True
        for folder in self.args.wheels.split():
            if not (ROOT / folder / "manifest.json").is_file():
                self.say(f"wheels: {folder}/manifest.json not found: nothing carried there")
                self.summary["wheels"].append({"folder": folder, "status": "absent"})
                continue
            t = time.monotonic()
            code, stopped = self.run([sys.executable, "-m", "suite.tools.wheels", "install", folder, "--target",
                                      str(self.site)], min(self.deadline, time.monotonic() + 180), f"wheels {folder}")
            manifest = json.loads((ROOT / folder / "manifest.json").read_text())
            status = "installed" if code == 0 and not stopped else "failed"
            self.summary["wheels"].append({"folder": folder, "status": status,
                                           "seconds": round(time.monotonic() - t, 1), "count": manifest.get("count"),
                                           "mib": round(manifest.get("total_bytes", 0) / 2**20, 1),
                                           "lock": manifest.get("lock"),
                                           "manifest": {k: v for k, v in manifest.items() if k != "have"}})
            ok &= status == "installed"
        if self.site.is_dir():
            self.env["PYTHONPATH"] = os.pathsep.join(p for p in (str(self.site), self.env.get("PYTHONPATH")) if p)
            sys.path.insert(0, str(self.site))
            importlib.invalidate_caches()
        return ok

    def read_facts(self) -> None:
        facts = self.out / f"{self.run_id}.facts.json"
        code, _ = self.run([sys.executable, "-m", "benchmarks.gpu_facts", str(facts), "--site", str(self.site)],
                           min(self.end, time.monotonic() + 120), "facts")
        self.summary["facts"] = {"file": facts.name, "rc": code}
        if facts.is_file():
            f = json.loads(facts.read_text())
            dev = (f.get("torch") or {}).get("device") or {}
            self.summary["device"] = {"name": dev.get("name"), "capability": dev.get("capability"),
                                      "kernel_class": (f.get("kernel_class") or {}).get("class")}

    def stack_imports(self) -> bool:
        code, _ = self.run([sys.executable, "-c", f"import {', '.join(STACK)}"], time.monotonic() + 120, "stack")
        return code == 0

    def run_stage(self, stage: Stage) -> dict:
        row = {**asdict(stage), "status": None, "seconds": 0.0, "cases_status": {}}
        missing = [m for m in stage.needs if importlib.util.find_spec(m) is None]
        left = self.left()
        if self.stopping:
            row.update(status="not started", reason="the session was interrupted")
        elif missing:
            row.update(status="skipped", reason=f"{', '.join(missing)} does not import: its wheels were not carried "
                                                f"(see docs/gpu-session.md)")
        elif left < stage.min_s:
            row.update(status="not started", reason=f"{left:.0f} s left before the cases' deadline, the stage needs "
                                                    f"at least {stage.min_s:.0f} s")
        else:
            self.say(f"stage {stage.name}: {stage.what} ({len(stage.cases)} case(s), {left:.0f} s left)")
            t = time.monotonic()
            # regression mode runs a case per process (pytest-xdist): the tiny ones side by side on the GPU
            mode = ["--benchmark"] if stage.benchmark else ["-n", str(len(stage.cases))]
            cmd = [sys.executable, "-m", "pytest", *[f"tests/test_matrix.py::test_case[{c}]" for c in stage.cases],
                   "--rootdir", str(ROOT), "-p", "no:cacheprovider", "-q", "-rs", *mode,
                   "--run-id", stage.run_id(self.run_id), "--keep-checkpoints", "never", "--no-baselines",
                   "--case-timeout", str(max(1, int(left - 10))),
                   *self.args.pytest_args]
            code, stopped = self.run(cmd, self.deadline, f"stage {stage.name}")
            row["seconds"] = round(time.monotonic() - t, 1)
            row["exit_code"] = code
            row["status"] = "stopped at the limit" if stopped else {0: "passed", 1: "failed", 5: "no such case"}.get(
                code, f"exit {code}")
        row["run_id"] = stage.run_id(self.run_id)
        row["cases_status"] = self.case_statuses(row["run_id"], stage.cases)
        if row["status"] != "passed":
            self.say(f"stage {stage.name}: {row['status']}" + (f": {row['reason']}" if row.get("reason") else ""))
        return row

    def run_ids(self) -> list[str]:
        """The runs this session wrote (benchmark and regression), those that exist."""
        ids = dict.fromkeys(s.run_id(self.run_id) for s in self.plan)
        return [i for i in ids if (self.results / i).is_dir()]

    def case_statuses(self, run_id: str, cases: tuple[str, ...]) -> dict:
        found = {}
        for path in sorted((self.results / run_id).glob("*.json")):
            if path.name == "manifest.json":
                continue
            try:
                rec = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if rec.get("case_id") in cases:
                found[rec["case_id"]] = {"status": rec.get("status"), "wall_s": rec.get("wall_s"),
                                         "reason": (rec.get("reason") or "")[:300] or None}
        return {c: found.get(c, {"status": "no record"}) for c in cases}

    def report(self) -> None:
        """Each run's report (Markdown back in $OUT; HTML for the benchmark run: $OUT returns 8 files)."""
        runs = [i for i in self.run_ids() if (self.results / i / "manifest.json").is_file()]
        if not runs:
            self.say("no records: no case stage began")
        for run_id in runs:
            where = self.reports / run_id
            code, _ = self.run([sys.executable, "-m", "suite", "report", run_id, "--results-dir", str(self.results),
                                "--out", str(where), "--fail-on", "none"], self.end, f"report {run_id}", echo=False)
            for ext in ("md", "html") if run_id == self.run_id else ("md",):
                if (where / f"report.{ext}").is_file():
                    shutil.copy(where / f"report.{ext}", self.out / f"{run_id}.{ext}")
            self.summary.setdefault("report_rc", {})[run_id] = code

    def pack(self) -> None:
        """RUN_ID.tar.gz of what is there now (written aside, then renamed: a kill never leaves half a file)."""
        files, big = [], []
        for run_id in self.run_ids():
            for path in sorted((self.results / run_id).rglob("*")):
                parts = path.relative_to(self.results).parts
                if not path.is_file() or any(p in ("checkpoint", "trainer") or p.startswith("checkpoint-")
                                             for p in parts):
                    continue
                (big if path.stat().st_size > MAX_FILE_BYTES else files).append(path)
        self.summary["left_out_of_archive"] = [f"{p.relative_to(self.results)} ({p.stat().st_size / 2**20:.1f} MiB)"
                                               for p in big]
        self.summary["elapsed_s"] = round(self.elapsed(), 1)
        session = self.out / f"{self.run_id}.session.json"
        session.write_text(json.dumps(self.summary, indent=1, default=str) + "\n")
        tmp = self.out / f".{self.run_id}.tar.gz.part"
        with tarfile.open(tmp, "w:gz") as tar:
            for path in files:  # RUN_ID/... and RUN_ID-regression/..., as under results/
                tar.add(path, arcname=str(path.relative_to(self.results)))
            for name in (f"{self.run_id}.facts.json", session.name, f"{self.run_id}.log"):
                if (self.out / name).is_file():
                    tar.add(self.out / name, arcname=f"{self.run_id}/session/{name}")
        tmp.replace(self.out / f"{self.run_id}.tar.gz")

    # -- the session -------------------------------------------------------------------------------

    def main(self) -> int:
        signal.signal(signal.SIGTERM, _interrupt)
        self.say(f"run {self.run_id}, plan {self.args.plan}: {self.args.limit:.0f} s in all, cases stop at "
                 f"{self.args.limit - self.args.pack:.0f} s, {len(self.plan)} stages")
        if self.args.plan == "gpu":
            cache = Path(self.env["FTSUITE_CACHE"])
            for stale in cache.glob("random/*.tmp*"):  # a build killed mid-save
                shutil.rmtree(stale, ignore_errors=True)
            where = cache if cache.exists() else Path("/tmp")
            self.summary["disk_free_gib"] = round(shutil.disk_usage(where).free / 2**30, 1)
        stack_ok = False
        try:
            wheels_ok = self.install_wheels()
            self.read_facts()
            stack_ok = wheels_ok and self.stack_imports()
            if not stack_ok:
                self.say(f"the stack does not import ({', '.join(STACK)}) or the wheels did not install: no case runs")
            for stage in self.plan:
                if not stack_ok:
                    row = {**asdict(stage), "status": "not started", "reason": "the stack does not import"}
                else:
                    row = self.run_stage(stage)
                self.summary["stages"].append(row)
                self.pack()
        except KeyboardInterrupt:
            self.stopping = True
            self.say("interrupted: packing what finished")
        if not self.stopping:
            self.report()
        code = self.exit_code(stack_ok)
        self.summary["exit"] = code
        self.pack()
        self.say(f"done in {self.elapsed():.0f} s, exit {code}")
        for row in self.summary["stages"]:
            cases = ", ".join(f"{c} {s['status']}" for c, s in row.get("cases_status", {}).items())
            self.say(f"  {row['name']:9s} {row['status']:22s} {row.get('seconds', 0):6.1f} s  {cases}")
        self.say(f"packed: {', '.join(sorted(p.name for p in self.out.iterdir() if not p.name.startswith('.')))}")
        return code

    def exit_code(self, stack_ok: bool) -> int:
        if not stack_ok:
            return 3
        rows = self.summary["stages"]
        if self.stopping or len(rows) < len(self.plan) or any(r["status"] in ("stopped at the limit", "not started")
                                                               for r in rows):
            return 124
        bad = [c for r in rows for c, s in r.get("cases_status", {}).items() if s["status"] in ("failed", "error")]
        return 1 if bad or any(r["status"] not in ("passed", "skipped") for r in rows) else 0


def _interrupt(*_) -> None:
    raise KeyboardInterrupt


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="benchmarks/gpu_session.sh", description=__doc__.splitlines()[0])
    ap.add_argument("--plan", choices=sorted(PLANS), default=os.environ.get("GPU_SESSION_PLAN", "gpu"),
                    help="gpu: the session's cases; smoke: tiny stand-ins on a CPU (the order, the limit, the packing)")
    ap.add_argument("--limit", type=float, default=float(os.environ.get("GPU_SESSION_LIMIT_S", "540")),
                    help="seconds the whole script may take: the device call's limit (default 540)")
    ap.add_argument("--pack", type=float, default=float(os.environ.get("GPU_SESSION_PACK_S", "45")),
                    help="seconds kept after the cases' deadline for the SIGINT grace, the report and the archive")
    ap.add_argument("--wheels", default=None, help="carried wheel folders, in order (default: .whl on the gpu plan)")
    ap.add_argument("--site", default="/tmp/site", help="where the wheels go (put on PYTHONPATH)")
    ap.add_argument("--stages", type=lambda v: [x for x in v.split(",") if x], default=None, metavar="NAME,...",
                    help="only these stages, in the plan's order (default: all)")
    ap.add_argument("run_id")
    ap.add_argument("pytest_args", nargs=argparse.REMAINDER, help="more pytest arguments for every stage")
    args = ap.parse_args(argv)
    if args.wheels is None:
        args.wheels = os.environ.get("WHEELS", ".whl" if args.plan == "gpu" else "")
    unknown = sorted(set(args.stages or ()) - {s.name for s in PLANS[args.plan]})
    if unknown:
        ap.error(f"--stages: no stage {', '.join(unknown)} in the {args.plan} plan "
                 f"({', '.join(s.name for s in PLANS[args.plan])})")
    if args.pack < GRACE_S + 15 or args.limit <= args.pack:
        ap.error(f"--pack must be at least {GRACE_S + 15} s and --limit larger than --pack")
    return args


def main(argv: list[str] | None = None) -> int:
    return Session(parse(argv)).main()


if __name__ == "__main__":
    sys.exit(main())
