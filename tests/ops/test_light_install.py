"""The kernel library installs and runs with torch alone: none of the driver's dependencies is imported, and
``ripu`` without them says in one line which extra to install."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DRIVER_ONLY = ["yaml", "omegaconf", "tqdm", "PIL", "matplotlib", "cv2", "torchdata"]

BLOCKER = textwrap.dedent(f"""
    import importlib.abc, sys
    BLOCKED = {DRIVER_ONLY!r}

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"{{name}} is blocked by the test (not installed)")
            return None

    sys.meta_path.insert(0, Block())
""")


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCKER + textwrap.dedent(code)], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)


def test_every_op_runs_without_the_driver_dependencies():
    proc = _run("""
        import sys, torch
        import ripu_kernels as rk
        x = torch.randn(2, 4, 9, 11, dtype=torch.float64, requires_grad=True)
        lab = torch.randint(0, 4, (2, 9, 11))
        for backend in ["reference"] + (["cpu"] if "cpu" in rk.available_backends("cpu") else []):
            rk.pixel_entropy(x, backend=backend)
            s = rk.region_scores(x, k=1, size=(12, 14), backend=backend)
            rk.pixel_scores(x, k=2, backend=backend)
            rk.select_regions(s.score, 3, backend=backend)
            loss = rk.local_consistency_loss(x, lab, backend=backend) + rk.negative_learning_loss(x, backend=backend)
            loss.backward()
        rk.reference.region_scores(x)
        leaked = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
        assert not leaked, leaked
        assert not any(m.startswith("ripu_kernels.driver") for m in sys.modules)
        print("ok", rk.available_backends("cpu"))
    """)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith("ok")


def test_ripu_without_the_driver_extra_names_it_in_one_line():
    proc = _run("""
        import sys
        from ripu_kernels.driver.cli import main
        sys.exit(main(["demo", "--out", "nowhere"]))
    """)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "ripu_kernels[driver]" in lines[0] and "pyyaml" in lines[0] and "opencv-python-headless" in lines[0]
    assert not (ROOT / "nowhere").exists()
