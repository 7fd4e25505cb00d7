"""Provenance and report of ``make gpu-check`` (tools/gpu_check.sh). Standard library (+ torch for provenance).

    python3 tools/gpu_check_report.py --provenance OUT/provenance.json   # GPU, driver, CUDA, torch, triton, git
    python3 tools/gpu_check_report.py OUT                                 # summary.json, summary.md, results files

The report reads what the steps left in OUT (steps.tsv, logs/, junit-*.xml, timings.json, bench/) and decides, per
op and GPU backend, whether the run *verified* it: at least one GPU test of that op ran and passed on that backend,
none failed (a failing test that names no op counts against every op), the backend's test step finished, and for
``cuda`` the compute-sanitizer steps found nothing (a sanitizer the machine refused is reported, not held against
the kernels). ``verified`` in summary.json lists, per op, the verified backends that were timed faster than the
reference, fastest first: tools/update_verified.py turns it into ripu_kernels/_verified.py. Exit status 0 when every
required step passed (or this was a dry run), else 1.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import platform
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OPS = ("pixel_entropy", "region_scores", "pixel_scores", "select_regions", "local_consistency_loss",
       "negative_learning_loss")
# Words (between non-alphanumerics or underscores) that attribute a test to an op besides the op's own name.
ALIASES = {
    "pixel_entropy": ("entropy",),
    "select_regions": ("selection", "select"),
    "local_consistency_loss": ("lcr",),
    "negative_learning_loss": ("nl",),
}
GPU_BACKENDS = ("cuda", "triton")
PER_OP_HEADING = "## Per op (time of the primary case in ms; verified = every GPU test of the op passed)"


# ------------------------------------------------------------------------------------------------ provenance
def _run(cmd: list[str]) -> str | None:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=20, cwd=ROOT)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def provenance() -> dict:
    info: dict = {"date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                  "python": platform.python_version(), "platform": platform.platform()}
    info["git_sha"] = _run(["git", "rev-parse", "HEAD"])
    info["git_branch"] = _run(["git", "rev-parse", "--abbrev-ref", "HEAD"])
    status = _run(["git", "status", "--porcelain", "--untracked-files=no"])
    info["git_dirty"] = bool(status) if status is not None else None
    driver = _run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"])
    info["driver"] = driver.splitlines()[0].strip() if driver else None
    try:
        import torch

        info["torch"] = torch.__version__
        info["cuda"] = torch.version.cuda
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
            info["capability"] = "%d.%d" % torch.cuda.get_device_capability(0)
            info["gpu_count"] = torch.cuda.device_count()
        else:
            info["gpu"] = None
    except Exception as exc:  # noqa: BLE001 -- recorded, not fatal
        info["torch"] = f"unavailable ({exc})"
        info["gpu"] = None
    try:
        import importlib.metadata as md

        info["triton"] = md.version("triton")
    except Exception:  # noqa: BLE001
        info["triton"] = None
    return info


# ------------------------------------------------------------------------------------------------ junit
def _words(nodeid: str) -> set[str]:
    return set(re.split(r"[^a-z0-9]+", nodeid.lower())) | set(re.split(r"[^a-z0-9_]+", nodeid.lower()))


def ops_of(nodeid: str) -> set[str]:
    """The ops a test is about, from its id (file, name, parameters)."""
    low = nodeid.lower()
    words = _words(nodeid)
    found = {op for op in OPS if op in low}
    found |= {op for op, names in ALIASES.items() if any(n in words for n in names)}
    return found


def read_junit(path: Path) -> dict:
    """{"passed": [ids], "failed": [ids], "skipped": [ids]} of one junit XML file (empty when missing)."""
    res: dict[str, list[str]] = {"passed": [], "failed": [], "skipped": []}
    if not path.exists():
        return res
    try:
        tree = ET.parse(path)
    except ET.ParseError:
        res["failed"].append(f"{path.name}: unreadable junit XML")
        return res
    for case in tree.iter("testcase"):
        nodeid = f"{case.get('classname', '')}::{case.get('name', '')}"
        if case.find("failure") is not None or case.find("error") is not None:
            res["failed"].append(nodeid)
        elif case.find("skipped") is not None:
            res["skipped"].append(nodeid)
        else:
            res["passed"].append(nodeid)
    return res


# ------------------------------------------------------------------------------------------------ report
def read_steps(out: Path) -> list[dict]:
    steps = []
    path = out / "steps.tsv"
    if path.exists():
        for line in path.read_text().splitlines():
            parts = line.split("\t")
            if len(parts) == 4:
                steps.append({"name": parts[0], "status": parts[1], "seconds": int(parts[2] or 0),
                              "required": parts[3] == "yes"})
    return steps


def _slug(name: str | None) -> str:
    return re.sub(r"[^a-z0-9]+", "-", (name or "no-gpu").lower()).strip("-") or "gpu"


def verify(steps: list[dict], tests: dict, timings: dict) -> tuple[dict, dict]:
    """Per op and backend: test counts, verified or not (and why), time; and the verified table."""
    status = {s["name"]: s["status"] for s in steps}
    sanitized = all(status.get(f"sanitizer-{t}") in ("pass", "skipped") for t in ("memcheck", "racecheck"))
    primary = timings.get("primary", {})
    ops: dict = {}
    table: dict = {}
    for op in OPS:
        ops[op] = {"reference": {"ms": primary.get(op, {}).get("reference")}}
        ranked = []
        for backend in GPU_BACKENDS:
            junit = tests.get(backend, {"passed": [], "failed": [], "skipped": []})
            passed = [t for t in junit["passed"] if op in ops_of(t)]
            failed = [t for t in junit["failed"] if op in ops_of(t) or not ops_of(t)]
            why = None
            if status.get(f"tests-{backend}") not in ("pass", "fail"):
                why = f"its test step did not finish ({status.get(f'tests-{backend}', 'missing')})"
            elif failed:
                why = f"{len(failed)} failing test(s)"
            elif not passed:
                why = "no test of this op ran"
            elif backend == "cuda" and not sanitized:
                why = "compute-sanitizer reported errors"
            ms = primary.get(op, {}).get(backend)
            ops[op][backend] = {"tests_passed": len(passed), "tests_failed": len(failed), "verified": why is None,
                                "why_not": why, "ms": ms}
            ref_ms = ops[op]["reference"]["ms"]
            if why is None and ms is not None and (ref_ms is None or ms < ref_ms):
                ranked.append((ms, backend))
        table[op] = [b for _, b in sorted(ranked)]
    return ops, table


def _fmt_ms(v) -> str:
    return "-" if v is None else f"{v:.3f}"


def write_report(out: Path) -> int:
    steps = read_steps(out)
    prov = json.loads((out / "provenance.json").read_text()) if (out / "provenance.json").exists() else {}
    tests = {name: read_junit(out / f"junit-{name}.xml") for name in ("cuda", "triton", "cpu")}
    timings = json.loads((out / "timings.json").read_text()) if (out / "timings.json").exists() else {}
    dry = any(s["status"] == "dry-run" for s in steps)
    ok = dry or (bool(steps) and all(s["status"] in ("pass", "skipped") for s in steps if s["required"]))
    ops, table = verify(steps, tests, timings)
    bench_rows = []
    bench_json = out / "bench" / "results.json"
    if bench_json.exists():
        try:
            data = json.loads(bench_json.read_text())
            bench_rows = data.get("rows", data) if isinstance(data, dict) else data
        except json.JSONDecodeError:
            bench_rows = []
    summary = {
        "ok": ok, "dry_run": dry, "provenance": prov, "steps": steps,
        "tests": {k: {"passed": len(v["passed"]), "failed": len(v["failed"]), "skipped": len(v["skipped"]),
                      "failures": v["failed"][:50]} for k, v in tests.items()},
        "ops": ops, "verified": table, "timings": timings,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")

    lines = [f"# gpu-check: {'DRY RUN (plumbing only, nothing ran on a GPU)' if dry else ('PASS' if ok else 'FAIL')}",
             "", "| | |", "| --- | --- |"]
    for key in ("gpu", "capability", "driver", "cuda", "torch", "triton", "python", "git_sha", "git_dirty", "date"):
        lines.append(f"| {key} | {prov.get(key)} |")
    lines += ["", "## Steps", "", "| step | status | seconds | required |", "| --- | --- | --- | --- |"]
    lines += [f"| {s['name']} | {s['status']} | {s['seconds']} | {'yes' if s['required'] else 'no'} |" for s in steps]
    lines += ["", "## Tests", "", "| suite | passed | failed | skipped |", "| --- | --- | --- | --- |"]
    lines += [f"| {k} | {v['passed']} | {v['failed']} | {v['skipped']} |" for k, v in summary["tests"].items()]
    failures = [f for v in summary["tests"].values() for f in v["failures"]]
    if failures:
        lines += ["", "Failures (first 50 per suite):", ""] + [f"- `{f}`" for f in failures]
    lines += ["", PER_OP_HEADING, "",
              "| op | reference ms | cuda ms | cuda verified | triton ms | triton verified | auto would pick |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    for op, row in ops.items():
        cells = [op, _fmt_ms(row["reference"]["ms"])]
        for b in GPU_BACKENDS:
            cells += [_fmt_ms(row[b]["ms"]), "yes" if row[b]["verified"] else f"no: {row[b]['why_not']}"]
        cells.append((table[op] or ["reference"])[0])
        lines.append("| " + " | ".join(cells) + " |")
    if timings.get("rows"):
        lines += ["", "## Timings (tools/gpu_timings.py)", "",
                  f"Copy bandwidth measured in the same run: {timings.get('copy_gbps', '-')} GB/s.", "",
                  "| op | case | backend | ms | GB/s | % of copy |", "| --- | --- | --- | --- | --- | --- |"]
        for r in timings["rows"]:
            gbps = r.get("gbps")
            frac = r.get("copy_fraction")
            lines.append(f"| {r['op']} | {r['case']} | {r['backend']} | {_fmt_ms(r.get('ms'))} | "
                         f"{'-' if gbps is None else f'{gbps:.0f}'} | {'-' if frac is None else f'{100 * frac:.0f}%'} |")
    lines += ["", f"Update the table `backend=\"auto\"` follows: `python3 tools/update_verified.py {out / 'summary.json'}`",
              ""]
    (out / "summary.md").write_text("\n".join(lines))

    results = out / "bench" / "results"
    results.mkdir(parents=True, exist_ok=True)
    slug = _slug(prov.get("gpu"))
    payload = {"provenance": prov, "copy_gbps": timings.get("copy_gbps"), "rows": timings.get("rows", []),
               "bench_rows": bench_rows, "verified": table, "dry_run": dry}
    (results / f"{slug}.json").write_text(json.dumps(payload, indent=2) + "\n")
    md = [f"# GPU results: {prov.get('gpu')} ({'dry run' if dry else 'gpu-check'})", "",
          f"git {prov.get('git_sha')}{' (dirty)' if prov.get('git_dirty') else ''}, torch {prov.get('torch')}, "
          f"triton {prov.get('triton')}, CUDA {prov.get('cuda')}, driver {prov.get('driver')}, {prov.get('date')}.", ""]
    md += lines[lines.index(PER_OP_HEADING):]
    (results / f"{slug}.md").write_text("\n".join(md))
    print(f"gpu-check report: {out / 'summary.md'} ({'dry run' if dry else ('PASS' if ok else 'FAIL')})")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", nargs="?", type=Path, help="the gpu-check output folder to report on")
    p.add_argument("--provenance", type=Path, metavar="FILE", help="write the provenance JSON to FILE and stop")
    args = p.parse_args(argv)
    if args.provenance:
        info = provenance()
        args.provenance.parent.mkdir(parents=True, exist_ok=True)
        args.provenance.write_text(json.dumps(info, indent=2) + "\n")
        print(json.dumps(info, indent=2))
        return 0
    if args.out is None:
        p.error("give the output folder, or --provenance FILE")
    return write_report(args.out)


if __name__ == "__main__":
    sys.exit(main())
