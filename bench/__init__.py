"""Benchmarks of ripu_kernels: ``python -m bench [--quick] [--out DIR]`` or ``pytest bench/ --benchmark-only``.

One shared harness (:mod:`bench._harness`), one file per op (``bench_*.py``), the authors'-style baseline
(:mod:`bench.authors`) and the plots (:mod:`bench.plots`). See ``bench/README.md``.
"""
