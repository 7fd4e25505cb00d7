"""Build ripu_kernels and its extension ``ripu_kernels._C``.

CPU kernels are always compiled (``csrc/cpu`` + the binding layer in ``python/``); CUDA kernels
(``csrc/cuda`` + ``python/*.cu``) are added when PyTorch has CUDA and nvcc is found. Install with
``pip install --no-build-isolation -e .`` so the build uses the torch already installed.
``DEBUG=1`` builds with ``-O0 -g``; ``RIPU_NO_EXTENSION=1`` skips the extension (pure-Python install).
"""
from __future__ import annotations

import glob
import os
import shutil

from setuptools import find_packages, setup

ROOT = os.path.dirname(os.path.abspath(__file__))


def _sources(*patterns: str) -> list[str]:
    return sorted(p for pat in patterns for p in glob.glob(os.path.join(ROOT, pat)))


def _extensions():
    if os.environ.get("RIPU_NO_EXTENSION") == "1":
        return [], {}
    cpp = _sources("csrc/cpu/*.cpp", "python/*.cpp")
    if not cpp:
        return [], {}
    import torch
    from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension

    debug = os.environ.get("DEBUG") == "1"
    cxx = ["-O0", "-g"] if debug else ["-O3"]
    cxx += ["-std=c++17", "-fopenmp"]
    define_macros = [("Py_LIMITED_API", "0x03090000")]
    include_dirs = [os.path.join(ROOT, "csrc", "include"), os.path.join(ROOT, "csrc")]
    cu = _sources("csrc/cuda/*.cu", "python/*.cu")
    nvcc = shutil.which("nvcc") or (os.environ.get("CUDA_HOME") and os.path.join(os.environ["CUDA_HOME"], "bin", "nvcc"))
    with_cuda = bool(cu) and torch.version.cuda is not None and nvcc and os.path.exists(nvcc)
    if os.environ.get("RIPU_NO_CUDA") == "1":
        with_cuda = False
    kwargs = dict(
        name="ripu_kernels._C",
        include_dirs=include_dirs,
        define_macros=define_macros + ([("RIPU_WITH_CUDA", "1")] if with_cuda else []),
        extra_link_args=["-fopenmp"],
        py_limited_api=True,
    )
    if with_cuda:
        nvcc_flags = ["-O0", "-g", "-G"] if debug else ["-O3"]  # no fast math: NaN and exp/log accuracy are contract
        nvcc_flags += ["-std=c++17", "--expt-relaxed-constexpr"]
        ext = CUDAExtension(sources=cpp + cu, extra_compile_args={"cxx": cxx, "nvcc": nvcc_flags}, **kwargs)
    else:
        ext = CppExtension(sources=cpp, extra_compile_args={"cxx": cxx}, **kwargs)
    return [ext], {"build_ext": BuildExtension.with_options(use_ninja=True)}


ext_modules, cmdclass = _extensions()

# The kernel library needs torch alone; the training driver (`ripu`, ripu_kernels.driver) brings its own extra.
DRIVER_REQUIRES = ["numpy", "pyyaml", "omegaconf>=2.3", "tqdm", "pillow", "matplotlib", "opencv-python-headless",
                   "torchdata>=0.10", "pycocotools>=2.0"]  # pycocotools: COCO/CVAT polygons of annotators' files
# The annotation tools' own readers, to test our exports against them (datumaro pins opencv 4.x and pillow 12.x)
INTEROP_TEST_REQUIRES = ["pycocotools>=2.0", "datumaro>=1.10", "label-studio-converter>=0.0.59"]

setup(
    name="ripu_kernels",
    version="0.1.0",
    description="Fused, exact kernels and a training driver for RIPU region-based active domain adaptation",
    license="MIT",
    license_files=["LICENSE"],
    packages=find_packages(include=["ripu_kernels", "ripu_kernels.*"]),
    package_data={"ripu_kernels.driver": ["configs/*.yaml"]},
    python_requires=">=3.10",
    install_requires=["torch>=2.4"],
    extras_require={
        "driver": DRIVER_REQUIRES,
        "triton": ["triton>=3.0"],
        "test": ["pytest", "pytest-xdist", "hypothesis", "pytest-benchmark", "numpy", *INTEROP_TEST_REQUIRES],
    },
    entry_points={"console_scripts": ["ripu = ripu_kernels.driver.cli:main"]},
    ext_modules=ext_modules,
    cmdclass=cmdclass,
    options={"bdist_wheel": {"py_limited_api": "cp39"}} if ext_modules else {},
    zip_safe=False,
)
