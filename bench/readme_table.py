"""``python -m bench.readme_table RESULTS.json``: the README's benchmark table, rendered from a results file.

The README's numbers are never typed by hand: run ``python -m bench --save`` (it writes
``bench/results/<machine>.json`` and ``.md``), commit those, and paste what this prints. One row per timed case
of the op tables (the sweeps are left to ``results.md`` and the plots), one column per backend (median time),
the authors'-style baseline, and the fastest ``ripu_kernels`` backend's speedup over it. A line above the table
names the machine, the versions, the commit and the date, and says when the run was a quick or dry one.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ORDER = ("pixel_entropy", "region_scores", "pixel_scores", "select_regions", "local_consistency_loss",
         "negative_learning_loss")
KERNEL_BACKENDS = ("cpu", "cuda", "triton")
AUTHORS = "authors"


def fmt_time(ms: float | None) -> str:
    if ms is None:
        return ""
    if ms >= 1000:
        return f"{ms / 1000:.2f} s"
    if ms >= 100:
        return f"{ms:.0f} ms"
    if ms >= 10:
        return f"{ms:.1f} ms"
    if ms >= 1:
        return f"{ms:.2f} ms"
    return f"{ms * 1000:.0f} us"


def fmt_ratio(v: float | None) -> str:
    if v is None:
        return ""
    if v >= 10:
        return f"{v:,.0f}x"
    return f"{v:.1f}x" if v >= 0.95 else f"{v:.2g}x"


def _cell(row: dict | None) -> str:
    if row is None:
        return ""
    if row.get("median_ms") is not None:
        return fmt_time(row["median_ms"])
    if row.get("status") == "skipped":
        note = row.get("note") or ""
        if "multiply-adds" in note:
            return f"(skipped: {note.split(' multiply-adds')[0].split('need ')[-1]} multiply-adds)"
        return "(skipped)"
    return f"({row.get('status', '')})"


def title(meta: dict) -> str:
    """The line above the table: where, what, when."""
    mode = ""
    if meta.get("dry_run"):
        mode = " **Dry run (tiny shapes): not a measurement.**"
    elif meta.get("quick"):
        mode = " **Quick run (small shapes, short budgets): indicative only.**"
    where = (f"{meta['device_name']} (host CPU {meta.get('cpu_model', '?')})" if meta["device_type"] == "cuda"
             else f"{meta['device_name']}, {meta.get('cpu_count', '?')} cores, {meta.get('threads', '?')} threads")
    versions = f"torch {meta['torch']}" + (f", triton {meta['triton']}" if meta.get("triton") else "")
    if meta.get("driver"):
        versions += f", driver {meta['driver']}"
    return (f"Measured with `python -m bench` on {where}; {versions}; commit {str(meta['git_sha'])[:10]}, "
            f"{meta['time_utc'][:10]}; main shape {meta['main_shape']} float32, medians.{mode}")


def render(data: dict) -> str:
    meta, rows = data["meta"], data["rows"]
    tables = [t for t in ORDER if any(r.get("table", r["op"]) == t for r in rows)]
    backends = [b for b in ("reference", *KERNEL_BACKENDS) if any(r["backend"] == b for r in rows)]
    kernels = [b for b in backends if b in KERNEL_BACKENDS]
    has_authors = any(r["backend"] == AUTHORS for r in rows)
    head = ["op", "case", *[f"`{b}`" for b in kernels], *([f"`reference`"] if "reference" in backends else []),
            *(["authors'-style", "vs authors"] if has_authors else [])]
    lines = [title(meta), "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for table in tables:
        cases = []
        for r in rows:
            if r.get("table", r["op"]) == table and r["case"] not in cases:
                cases.append(r["case"])
        for case in cases:
            by = {r["backend"]: r for r in rows if r.get("table", r["op"]) == table and r["case"] == case}
            cells = [f"`{table}`", case]
            cells += [_cell(by.get(b)) for b in kernels]
            if "reference" in backends:
                cells.append(_cell(by.get("reference")))
            if has_authors:
                cells.append(_cell(by.get(AUTHORS)))
                timed = [by[b] for b in kernels if b in by and by[b].get("median_ms")]
                best = min(timed, key=lambda r: r["median_ms"]) if timed else None
                auth = by.get(AUTHORS)
                ratio = (auth["median_ms"] / best["median_ms"]
                         if best and auth and auth.get("median_ms") else None)
                cells.append(fmt_ratio(ratio) + (f" (`{best['backend']}`)" if ratio and len(kernels) > 1 else ""))
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.readme_table", description=__doc__.splitlines()[0])
    ap.add_argument("results", type=Path, help="a results file written by python -m bench (results.json or "
                                                "bench/results/<machine>.json)")
    args = ap.parse_args(argv)
    try:
        data = json.loads(args.results.read_text())
        data["meta"], data["rows"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"python -m bench.readme_table: {args.results} is not a results file of python -m bench ({exc})",
              file=sys.stderr)
        return 2
    sys.stdout.write(render(data))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
