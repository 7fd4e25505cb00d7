"""Compile every Triton kernel of the backend for an NVIDIA target, on a machine without a GPU.

    python -m ripu_kernels.triton._compile_check [--arch 90] [--allow-spills]

Triton ships ``ptxas``, so the full pipeline (Triton IR -> PTX -> cubin) runs without a device. This catches what
the interpreter cannot (lowering errors, constexpr/specialisation mistakes) and reports registers and local-memory
stack per configuration, using the launchers' own tile choices. Exit status 1 on a failure, or on a spill unless
``--allow-spills``. Must run with ``TRITON_INTERPRET`` unset (under the interpreter there is nothing to compile).
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile

_TYPES = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16", "float64": "fp64", "int32": "i32",
          "int64": "i64", "uint8": "u8"}


def _configs():
    """(kernel, {arg: type string | ("const", value) | constexpr value}, num_warps) for representative launches."""
    from . import _losses as L
    from . import _scores as S
    from ._common import tile_shape

    ptr = lambda t: "*" + _TYPES[t]  # noqa: E731
    one = ("const", 1)  # Triton specialises integer arguments equal to 1 (e.g. the unit stride)
    out = []
    # Pixel kernel: NCHW (FLAT, vectorised), channels-last/strided, the fused resize; 19, 1, 150 and 300 classes.
    for c in (19, 1, 150, 300):
        for xt in ("float32", "float16", "bfloat16", "float64"):
            f64 = xt == "float64"
            ct = "float64" if f64 else "float32"
            for resize, align, flat in ((False, True, True), (False, True, False), (True, True, False),
                                        (True, False, False)):
                if c != 19 and (xt != "float32" or not resize):
                    continue
                out.append((S._pixel_kernel, dict(
                    x_ptr=ptr(xt), e_ptr=ptr(ct), y_ptr=ptr("uint8" if c < 255 else "int32"),
                    C=one if c == 1 else "i32", H_in="i32", W_in="i32", H="i32", W="i32", s_b="i64",
                    s_c=one if (c == 1 or not flat and not resize) else "i32", s_h="i32",
                    s_w=one if (flat or resize) else "i32", RESIZE=resize, ALIGN=align, FLAT=flat, WRITE_LABEL=True,
                    IS_F64=f64, BLOCK_P=S.pixel_tiles(resize, f64)[0], UNROLL=S.pixel_tiles(resize, f64)[1]), 4))
    # Window kernel: the paper's k sweep at 19 classes, float64, one class, a window wider than the tile (WIDE),
    # and 300 classes at k = 150 (several launches: first, middle, last).
    seen = set()
    for c, k, f64 in ((19, 0, False), (19, 1, False), (19, 2, False), (19, 4, False), (19, 8, False),
                      (19, 16, False), (19, 32, False), (19, 64, False), (19, 300, False), (19, 2, True),
                      (1, 1, False), (300, 150, False)):
        plan = S.window_plan(c, 1024, 2048, k, f64)
        ct = "float64" if f64 else "float32"
        groups = plan["groups"]
        for g, (w0, nwa, nwb) in enumerate(groups):
            if 0 < g < len(groups) - 1 and g != 1:
                continue  # the middle launches all compile alike
            for region in (True, False):
                meta = dict(REGION=region, FIRST=g == 0, LAST=g == len(groups) - 1, ES=region and g == 0,
                            WIDE=plan["wide"], IS_F64=f64, TW=plan["tw"], NWA=nwa, NWB=max(nwb, 1),
                            HAS_B=nwb > 0, F=plan["f"], FB=plan["fb"], FAST=not f64)
                key = tuple(sorted(meta.items()))
                if key in seen:
                    continue
                seen.add(key)
                out.append((S._window_kernel, dict(
                    y_ptr=ptr("uint8" if c < 255 else "int32"), e_ptr=ptr(ct), score_ptr=ptr(ct), imp_ptr=ptr(ct),
                    unc_ptr=ptr(ct), acc_ptr=ptr(ct), aux_ptr=ptr("int32"), C=one if c == 1 else "i32", H="i32",
                    W="i32", KH="i32" if k != 1 else one, KW="i32" if k != 1 else one, TH="i32",
                    WORD0="i32" if g else ("const", 0), **meta), 4))
    for xt in ("float32", "float16", "float64"):
        f64 = xt == "float64"
        ct = "float64" if f64 else "float32"
        strides = dict(s_b="i32", s_c="i32", s_h="i32", s_w=one)
        block_p, nw = tile_shape(32, 2048)
        out.append((L._nl_fwd_kernel, dict(x_ptr=ptr(xt), thr_ptr=ptr(ct), psum_ptr=ptr("float64"),
                                           pcnt_ptr=ptr("int64"), C="i32", H="i32", W="i32", **strides,
                                           IS_F64=f64, BLOCK_P=block_p, C_PAD=32), nw))
        out.append((L._nl_bwd_kernel, dict(x_ptr=ptr(xt), thr_ptr=ptr(ct), scale_ptr=ptr(ct), dx_ptr=ptr(xt),
                                           C="i32", H="i32", W="i32", **strides, d_b="i32", d_c="i32",
                                           d_h="i32", d_w=one, IS_F64=f64, BLOCK_P=block_p, C_PAD=32), nw))
        lab = dict(l_b="i32", l_h="i32", l_w=one, ignore="i32")
        for n8 in (False, True):
            out.append((L._lcr_softmax_kernel, dict(x_ptr=ptr(xt), lab_ptr=ptr("int64"), p_ptr=ptr(ct),
                                                    bnd_ptr=ptr("uint8"), C="i32", H="i32", W="i32", **strides,
                                                    **lab, NEIGH8=n8, IS_F64=f64, BLOCK_P=block_p, C_PAD=32), nw))
        block_p, nw = tile_shape(32, L._LCR_BUDGET)
        for kl in (False, True):
            for n8 in (False, True):
                common = dict(C="i32", H="i32", W="i32", KL=kl, NEIGH8=n8, BLOCK_P=block_p, C_PAD=32)
                out.append((L._lcr_fwd_kernel, dict(p_ptr=ptr(ct), bnd_ptr=ptr("uint8"), psum_ptr=ptr("float64"),
                                                    pcnt_ptr=ptr("int64"), **common), nw))
                out.append((L._lcr_gm_kernel, dict(p_ptr=ptr(ct), bnd_ptr=ptr("uint8"), scale_ptr=ptr(ct),
                                                   g_ptr=ptr(ct), **common), nw))
                dx_block, dx_nw = tile_shape(32, L._LCR_DX_BUDGET // (2 if f64 else 1))
                out.append((L._lcr_dx_kernel, dict(p_ptr=ptr(ct), bnd_ptr=ptr("uint8"), g_ptr=ptr(ct),
                                                   scale_ptr=ptr(ct), dx_ptr=ptr(xt), d_b="i32", d_c=one,
                                                   d_h="i32", d_w="i32", **dict(common, BLOCK_P=dx_block)),
                            dx_nw))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", type=int, default=90, help="SM version to compile for (default 90, H100)")
    ap.add_argument("--allow-spills", action="store_true", help="do not fail on local-memory use")
    ap.add_argument("--only", default=None, metavar="NAME", help="compile only the kernels whose name contains NAME")
    ap.add_argument("--dump", default=None, metavar="DIR", help="write each configuration's TTGIR and PTX to DIR")
    args = ap.parse_args(argv)
    if os.environ.get("TRITON_INTERPRET") == "1":
        print("ripu_kernels.triton._compile_check: unset TRITON_INTERPRET (the interpreter compiles nothing)")
        return 2
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    cuobjdump = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
    target = GPUTarget("cuda", args.arch, 32)
    failures = 0
    if args.dump:
        os.makedirs(args.dump, exist_ok=True)
    for n, (fn, spec, num_warps) in enumerate(_configs()):
        if args.only and args.only not in fn.__name__:
            continue
        sig, consts = {}, {}
        for name in fn.arg_names:
            v = spec[name]
            if isinstance(v, tuple):
                sig[name], consts[name] = "constexpr", v[1]
            elif isinstance(v, str):
                sig[name] = v
            else:
                sig[name], consts[name] = "constexpr", v
        label = f"{fn.__name__} {consts} num_warps={num_warps}"
        try:
            kernel = triton.compile(ASTSource(fn, sig, consts), target=target, options={"num_warps": num_warps})
        except Exception as exc:  # report every failing configuration, not only the first
            failures += 1
            print(f"FAIL {label}: {exc!r}"[:2000])
            continue
        if args.dump:
            for ext in ("ttgir", "ptx"):
                with open(os.path.join(args.dump, f"{n:03d}_{fn.__name__}.{ext}"), "w") as f:
                    f.write(f"// {label}\n" + kernel.asm[ext])
        usage = "?"
        if os.path.exists(cuobjdump):
            with tempfile.NamedTemporaryFile(suffix=".cubin", delete=False) as f:
                f.write(kernel.asm["cubin"])
            try:
                dump = subprocess.run([cuobjdump, "--dump-resource-usage", f.name], capture_output=True,
                                      text=True).stdout
            finally:
                os.unlink(f.name)
            m = re.search(r"REG:(\d+) STACK:(\d+)", dump)
            if m:
                usage = m.group(0)
                if int(m.group(2)) > 0 and not args.allow_spills:
                    failures += 1
                    usage += "  <- spills"
        print(f"ok   {label} {usage}")
    print(f"{failures} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
