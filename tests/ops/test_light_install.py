"""The kernel library installs and runs with what it requires (torch and NumPy): in an interpreter that sees only
those, their own requirements and this package, every op runs; and ``ripu`` there says in one line which extra
to install."""
from __future__ import annotations

import importlib.metadata as md
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DRIVER_ONLY = ["yaml", "omegaconf", "tqdm", "PIL", "matplotlib", "cv2", "torchdata"]


def _requirements(dist: str, seen: set[str]) -> None:
    """``dist`` and, recursively, the distributions it requires (no extras, markers that apply here)."""
    key = dist.lower().replace("_", "-")
    if key in seen:
        return
    seen.add(key)
    for req in md.distribution(dist).requires or []:
        name, _, marker = req.partition(";")
        if "extra" in marker:
            continue
        name = re.split(r"[ <>=!~\[(]", name.strip(), maxsplit=1)[0]
        try:
            _requirements(name, seen)
        except md.PackageNotFoundError:  # an optional platform dependency not installed here
            pass


@pytest.fixture(scope="module")
def torch_only(tmp_path_factory) -> Path:
    """A folder of links to the top-level modules of torch, NumPy and their requirements only (setup.py's
    install_requires)."""
    site = tmp_path_factory.mktemp("torch_only")
    dists: set[str] = set()
    _requirements("torch", dists)
    _requirements("numpy", dists)
    for dist in dists:
        for f in md.distribution(dist).files or []:
            top = f.parts[0]
            if top.endswith((".dist-info", ".data")) or top == ".." or top.startswith("__"):
                continue
            src = Path(f.locate()).resolve()
            while src.name != top and src.parent != src:
                src = src.parent
            link = site / top
            if src.exists() and not link.exists():
                os.symlink(src, link)
    return site


def _run(site: Path, code: str) -> subprocess.CompletedProcess:
    # -S: no site-packages; only the standard library, the torch-only folder and this checkout are importable
    prelude = f"import sys; sys.path[:0] = [{str(ROOT)!r}, {str(site)!r}]\n"
    return subprocess.run([sys.executable, "-S", "-c", prelude + textwrap.dedent(code)], capture_output=True,
                          text=True, cwd=ROOT, timeout=600, env={**os.environ, "PYTHONNOUSERSITE": "1"})


def test_every_op_runs_with_torch_alone(torch_only):
    proc = _run(torch_only, f"""
        import importlib.util, sys, torch
        absent = [m for m in {DRIVER_ONLY!r} if importlib.util.find_spec(m) is not None]
        assert not absent, f"not a torch-only interpreter: {{absent}}"
        import ripu_kernels as rk
        x = torch.randn(2, 4, 9, 11, dtype=torch.float64, requires_grad=True)
        lab = torch.randint(0, 4, (2, 9, 11))
        backends = ["reference"] + (["cpu"] if "cpu" in rk.available_backends("cpu") else [])
        for backend in backends:
            rk.pixel_entropy(x, backend=backend)
            s = rk.region_scores(x, k=1, size=(12, 14), backend=backend)
            rk.pixel_scores(x, k=2, backend=backend)
            rk.select_regions(s.score, 3, backend=backend)
            loss = rk.local_consistency_loss(x, lab, backend=backend) + rk.negative_learning_loss(x, backend=backend)
            loss.backward()
        rk.reference.region_scores(x)
        assert not any(m.startswith("ripu_kernels.driver") for m in sys.modules)
        print("ok", backends)
    """)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith("ok")


def test_ripu_without_the_driver_extra_names_it_in_one_line(torch_only, tmp_path):
    proc = _run(torch_only, f"""
        import sys
        from ripu_kernels.driver.cli import main
        sys.exit(main(["demo", "--out", {str(tmp_path / "nowhere")!r}]))
    """)
    assert proc.returncode == 2, proc.stderr[-3000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "ripu_kernels[driver]" in lines[0] and "pyyaml" in lines[0] and "opencv-python-headless" in lines[0]
    assert not (tmp_path / "nowhere").exists()
