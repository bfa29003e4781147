"""Maps perf samples onto the dumped JIT code and prints where the time went (see run.sh).

Input: WORK/samples.txt (`perf script -F ip,dso`) and WORK/code_<start>.bin (dump_code.py).
Output: the share of samples per shared object, then, for the mapping with the most samples, one line per 2 KB of
its code that holds at least 0.4% of them: offset, share, and the most frequent instructions there; last, the
samples summed by what each 2 KB mostly holds (a heuristic on its instruction mix, see `kind`).
"""
import bisect
import collections
import glob
import os
import re
import subprocess
import sys

CHUNK = 2048
INSTRUCTION = re.compile(r"\s*([0-9a-f]+):\t(?:[0-9a-f]{2} )+\s*\t(\S+)")


def kind(mnemonics):
    """What a stretch of llvmpipe code mostly does, from its instruction mix."""
    n = sum(mnemonics.values())
    share = lambda *names: sum(mnemonics[m] for m in names) / n
    if share("vmulps", "vaddps", "vfmadd231ps") >= 0.25:
        return "arithmetic (multiplies and adds)"
    if share("vpinsrd", "vpextrd", "vmovd") >= 0.3:
        return "lane-by-lane loads without branches (uniform or workgroup memory)"
    if share("je", "jne", "jmp", "jae", "jb", "test", "testb") >= 0.15:
        return "lane-by-lane storage-buffer loads and stores (a branch per lane)"
    return "other"


def main(work):
    samples = []
    for line in open(f"{work}/samples.txt"):
        parts = line.split()
        if len(parts) >= 2:
            samples.append((int(parts[0], 16), parts[1].strip("()")))
    total = len(samples)
    if total == 0:
        sys.exit("jit-profile: perf recorded no samples")
    by_dso = collections.Counter("JIT (anonymous code)" if "perf-" in dso else os.path.basename(dso) for _, dso in samples)
    print(f"{total} samples")
    for dso, n in by_dso.most_common(8):
        print(f"  {n / total:6.1%}  {dso}")

    regions = []
    for path in glob.glob(f"{work}/code_*.bin"):
        start = int(path.rsplit("_", 1)[1].split(".")[0], 16)
        regions.append((start, start + os.path.getsize(path), path))
    hits = {r: sum(r[0] <= ip < r[1] for ip, _ in samples) for r in regions}
    if not hits or max(hits.values()) == 0:
        sys.exit("jit-profile: no sample fell in the dumped code")
    start, end, path = max(hits, key=hits.get)
    print(f"\nhottest code mapping 0x{start:x}-0x{end:x} ({end - start} bytes): {hits[(start, end, path)] / total:.1%} of samples")

    listing = subprocess.run(
        ["objdump", "-D", "-b", "binary", "-m", "i386:x86-64", f"--adjust-vma=0x{start:x}", path],
        check=True, capture_output=True, text=True,
    ).stdout
    code = [(int(m[1], 16), m[2]) for m in map(INSTRUCTION.match, listing.splitlines()) if m]
    addresses = [a for a, _ in code]
    per_instruction = collections.Counter()
    for ip, _ in samples:
        if start <= ip < end:
            per_instruction[bisect.bisect_right(addresses, ip) - 1] += 1
    chunks = collections.defaultdict(lambda: [0, collections.Counter()])
    for i, (address, mnemonic) in enumerate(code):
        chunk = chunks[(address - start) // CHUNK]
        chunk[0] += per_instruction.get(i, 0)
        chunk[1][mnemonic] += 1
    print(f"per {CHUNK} bytes of code with >= 0.4% of samples: offset, share, most frequent instructions")
    for key in sorted(chunks):
        n, mnemonics = chunks[key]
        if n >= 0.004 * total:
            top = ", ".join(f"{m} {c}" for m, c in mnemonics.most_common(6))
            print(f"  +{key * CHUNK:06x} {n / total:6.1%}  {top}")
    kinds = collections.Counter()
    for n, mnemonics in chunks.values():
        kinds[kind(mnemonics)] += n
    print("by kind of code (share of all samples):")
    for name, n in kinds.most_common():
        print(f"  {n / total:6.1%}  {name}")


if __name__ == "__main__":
    main(sys.argv[1])
