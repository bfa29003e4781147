"""Which BLAS a CPU torch reference runs on, for the benchmarks' reports (core-kernels' and policy's torch scripts)."""
import ctypes


def blas_kernels():
    """OpenBLAS's version and the kernels it picked for this CPU, e.g. "OpenBLAS 0.3.21, Haswell kernels", or "".

    The ratio depends on it: Debian's OpenBLAS 0.3.21 runs its AVX2 (Haswell) kernels on AMD Zen hosts and its AVX-512
    (SkylakeX) kernels on Intel AVX-512 hosts, about 1.8x faster at f32 1024^3 on the same 2 cores
    (OPENBLAS_CORETYPE=SkylakeX forces them; see docs/BENCHMARKS.md).
    """
    with open("/proc/self/maps") as maps:
        libs = sorted({line.split()[-1] for line in maps if "openblas" in line and line.split()[-1].startswith("/")})
    for path in libs:
        try:
            lib = ctypes.CDLL(path)
            lib.openblas_get_corename.restype = lib.openblas_get_config.restype = ctypes.c_char_p
            version = lib.openblas_get_config().decode().split()[1]
            return f"OpenBLAS {version}, {lib.openblas_get_corename().decode()} kernels"
        except (OSError, AttributeError, IndexError):
            continue
    return ""
