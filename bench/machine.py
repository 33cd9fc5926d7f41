"""What every benchmark reports beside its figures: the machine, and its dense float32 matmul rate."""

from __future__ import annotations

import os
import platform
import statistics
import time

import torch

WATCHED_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile")


def machine_info() -> dict:
    model, flags = platform.processor(), set()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "cpu_flags": [flag for flag in WATCHED_FLAGS if flag in flags],
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
    }


def sgemm_gflops(size: int = 4096, repeats: int = 5) -> float:
    """Median rate of a size x size float32 torch.mm on all cores: the roofline figures are quoted against."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        torch.mm(a, b)
        times.append(time.perf_counter() - started)
    return 2 * size**3 / statistics.median(times) / 1e9
