"""Copies every executable anonymous mapping of a running process to WORK/code_<start>.bin (see run.sh).

llvmpipe's JIT code lives in such mappings; perf attributes samples there to /tmp/perf-PID.map, with no symbols.
Usage: python3 dump_code.py PID WORK
"""
import sys


def main(pid, work):
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb") as mem:
        for line in maps:
            fields = line.split()
            # Anonymous mappings have no path (5 fields); only executable ones hold code.
            if len(fields) != 5 or "x" not in fields[1]:
                continue
            start, end = (int(x, 16) for x in fields[0].split("-"))
            mem.seek(start)
            with open(f"{work}/code_{start:x}.bin", "wb") as out:
                out.write(mem.read(end - start))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
