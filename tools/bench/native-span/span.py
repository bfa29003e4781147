"""Cuts the longest branch-free run of instructions out of llvmpipe's generated code and wraps it in a loop.

Input: the text GALLIVM_DEBUG=asm prints (one "offset:<tab>mnemonic<tab>operands" line per instruction).
Output: block.s, a function `block(char *frame, long iters)` that runs the span `iters` times with the
shader's stack frame (%rsp) replaced by `frame` and its coroutine frame (%rbx, where llvmpipe keeps a kernel's
variables when it has a barrier) by `frame` + 256 KB, and the span's instruction counts on stdout.
An optional FRACTION keeps only the span's first part: how the same code runs as a shorter loop (one that fits
the instruction cache).
Usage: python3 span.py ASM OUT.s [FRACTION]
"""
import collections
import re
import sys

LINE = re.compile(r"\s*([0-9a-f]+):\s+(\S+)\s*(.*)")


def spans(instructions):
    run = []
    for ins in instructions:
        _, op, args = ins
        if op.startswith("j") or op.startswith("call") or "rip" in args or op.startswith("ret"):
            if run:
                yield run
            run = []
        elif not op.startswith("nop"):
            run.append(ins)
    if run:
        yield run


def main(asm_path, out_path, fraction=1.0):
    instructions = [(int(m[1], 16), m[2], m[3]) for m in map(LINE.match, open(asm_path)) if m]
    span = max(spans(instructions), key=len)
    span = span[: max(1, int(len(span) * fraction))]
    counts = collections.Counter(op for _, op, _ in span)
    size = span[-1][0] - span[0][0]
    print(f"span at 0x{span[0][0]:x}: {len(span)} instructions, ~{size // 1024} KB; " + ", ".join(f"{op} {n}" for op, n in counts.most_common(6)))
    body = "\n".join(f"  {op} {args.replace('(%rsp)', '(%rdi)')}" for _, op, args in span)
    with open(out_path, "w") as f:
        f.write(".text\n.globl block\nblock:\n  push %rbx\n  lea 262144(%rdi), %rbx\n")
        f.write(f"1:\n{body}\n  dec %rsi\n  jnz 1b\n  vzeroupper\n  pop %rbx\n  ret\n")
        f.write('.section .note.GNU-stack,"",@progbits\n')


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], float(sys.argv[3]) if len(sys.argv) > 3 else 1.0)
