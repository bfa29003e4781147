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
            core = lib.openblas_get_corename().decode()
            return f"OpenBLAS {version}, {core} kernels{fallback_note(core)}"
        except (OSError, AttributeError, IndexError):
            continue
    return ""


# OpenBLAS core types whose kernels use AVX2 or wider.
AVX2_CORES = {"haswell", "zen", "skylakex", "cooperlake", "sapphirerapids", "excavator"}


def fallback_note(core):
    """A warning where OpenBLAS runs pre-AVX2 kernels on a CPU with AVX2: it did not recognise the model (0.3.21 on
    session 29's Intel host fell back to "Prescott", SSE3, and ran f32 1024^3 2-5x slower than with its Haswell or
    SkylakeX kernels), so a ratio against it flatters ours."""
    try:
        with open("/proc/cpuinfo") as f:
            avx2 = any(line.startswith("flags") and " avx2" in line for line in f)
    except OSError:
        return ""
    if not avx2 or core.lower() in AVX2_CORES:
        return ""
    return " (a fallback: this CPU has AVX2; OPENBLAS_CORETYPE=Haswell or SkylakeX gives torch its vector kernels)"
