"""One line that says where a figure was measured: CPU model, cores, numpy's BLAS and the
kernel it runs, torch's CPU capability and threads.

    .venv/bin/python bench/machine.py

Every speed figure in the README carries this line (``make bench`` prints it above its
table), and ``.ci/run`` prints it before each kernel-variant test run, so a result can be
tied to the kernels that produced it (OPENBLAS_CORETYPE, ATEN_CPU_CAPABILITY and
MKL_ENABLE_INSTRUCTIONS change them).
"""

from __future__ import annotations

import os
import platform


def cpu_model() -> str:
    """'AMD EPYC', 'Intel(R) Xeon(R) Platinum 8488C', ... (lscpu's 'Model name')."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def describe() -> str:
    import numpy as np
    import torch
    from threadpoolctl import threadpool_info

    flags = cpu_flags()
    simd = "avx512f" if "avx512f" in flags else "avx2" if "avx2" in flags else "sse"
    blas = next((i for i in threadpool_info() if i.get("user_api") == "blas"), {})
    blas_text = (f"{blas.get('internal_api', '?')} {blas.get('version', '')} kernel "
                 f"{blas.get('architecture', '?')}, {blas.get('num_threads', '?')} threads"
                 if blas else "no BLAS found")
    return (f"machine: {cpu_model()}, {os.cpu_count()} cores ({simd}) · numpy {np.__version__}: "
            f"{blas_text} · torch {torch.__version__}: capability "
            f"{torch.backends.cpu.get_cpu_capability()}, {torch.get_num_threads()} threads")


if __name__ == "__main__":
    print(describe())
