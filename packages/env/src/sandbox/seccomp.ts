/*
 * A seccomp filter for bwrap's --seccomp: a classic BPF program, written out here rather than built by libseccomp
 * (not an npm or Node dependency). It keeps the syscalls an ML script needs and refuses the ones that only widen
 * the kernel surface a hostile script can reach:
 *   - new user namespaces (clone/unshare with CLONE_NEWUSER), inside which uid 0 regains capabilities over what it
 *     creates there; setns;
 *   - mounting, module loading, kexec, swap, reboot, acct, syslog, open_by_handle_at (all need capabilities the run
 *     does not have, refused anyway; here they never reach their code);
 *   - keyrings, bpf, perf_event_open, userfaultfd and io_uring, frequent homes of kernel exploits;
 *   - any other ABI than the native one (x86's 32-bit and x32 entry points have numbers of their own).
 * clone3 gets ENOSYS: its flags sit in memory, out of the filter's reach, and glibc falls back to clone on ENOSYS.
 */

const BPF_LD_W_ABS = 0x20;
const BPF_JEQ = 0x15;
const BPF_JGE = 0x35;
const BPF_JSET = 0x45;
const BPF_RET = 0x06;

const RET_ALLOW = 0x7fff0000;
const RET_ERRNO = 0x00050000;
const EPERM = 1;
const ENOSYS = 38;
const CLONE_NEWUSER = 0x10000000;
/** Offsets into struct seccomp_data. */
const NR = 0;
const ARCH = 4;
const ARG0_LOW = 16; // args[0]'s low 32 bits, on these little-endian machines

interface ArchTable {
  audit: number;
  /** Syscall numbers from this number up are another ABI's (x32). */
  foreignFrom?: number;
  clone: number;
  clone3: number;
  unshare: number;
  denied: Record<string, number>;
}

/** Numbers from <asm/unistd_64.h> (x86-64) and <asm-generic/unistd.h> (arm64). */
const ARCHES: Record<string, ArchTable> = {
  x64: {
    audit: 0xc000003e,
    foreignFrom: 0x40000000,
    clone: 56,
    clone3: 435,
    unshare: 272,
    denied: {
      setns: 308, keyctl: 250, add_key: 248, request_key: 249, bpf: 321, perf_event_open: 298, userfaultfd: 323,
      io_uring_setup: 425, io_uring_enter: 426, io_uring_register: 427, mount: 165, umount2: 166, pivot_root: 155,
      open_tree: 428, move_mount: 429, fsopen: 430, fsconfig: 431, fsmount: 432, fspick: 433, mount_setattr: 442,
      swapon: 167, swapoff: 168, reboot: 169, kexec_load: 246, kexec_file_load: 320, init_module: 175,
      finit_module: 313, delete_module: 176, open_by_handle_at: 304, acct: 163, syslog: 103,
    },
  },
  arm64: {
    audit: 0xc00000b7,
    clone: 220,
    clone3: 435,
    unshare: 97,
    denied: {
      setns: 268, keyctl: 219, add_key: 217, request_key: 218, bpf: 280, perf_event_open: 241, userfaultfd: 282,
      io_uring_setup: 425, io_uring_enter: 426, io_uring_register: 427, mount: 40, umount2: 39, pivot_root: 41,
      open_tree: 428, move_mount: 429, fsopen: 430, fsconfig: 431, fsmount: 432, fspick: 433, mount_setattr: 442,
      swapon: 224, swapoff: 225, reboot: 142, kexec_load: 104, kexec_file_load: 294, init_module: 105,
      finit_module: 273, delete_module: 106, open_by_handle_at: 265, acct: 89, syslog: 116,
    },
  },
};

type Step = { code: number; k: number; jt?: string; jf?: string } | { label: string };

/** The filter for `arch` (process.arch), as bwrap reads it (struct sock_filter[]), or null where there is none. */
export function seccompProgram(arch: string = process.arch): Buffer | null {
  const a = ARCHES[arch];
  if (!a) return null;
  const steps: Step[] = [
    { code: BPF_LD_W_ABS, k: ARCH },
    { code: BPF_JEQ, k: a.audit, jf: 'nosys' },
    { code: BPF_LD_W_ABS, k: NR },
    ...(a.foreignFrom !== undefined ? [{ code: BPF_JGE, k: a.foreignFrom, jt: 'nosys' }] : []),
    { code: BPF_JEQ, k: a.clone3, jt: 'nosys' },
    { code: BPF_JEQ, k: a.clone, jt: 'flags' },
    { code: BPF_JEQ, k: a.unshare, jt: 'flags' },
    ...Object.values(a.denied).map((nr) => ({ code: BPF_JEQ, k: nr, jt: 'eperm' })),
    { code: BPF_RET, k: RET_ALLOW },
    { label: 'flags' },
    { code: BPF_LD_W_ABS, k: ARG0_LOW },
    { code: BPF_JSET, k: CLONE_NEWUSER, jt: 'eperm' },
    { code: BPF_RET, k: RET_ALLOW },
    { label: 'eperm' },
    { code: BPF_RET, k: RET_ERRNO | EPERM },
    { label: 'nosys' },
    { code: BPF_RET, k: RET_ERRNO | ENOSYS },
  ];
  const at = new Map<string, number>();
  let n = 0;
  for (const s of steps) {
    if ('label' in s) at.set(s.label, n);
    else n++;
  }
  const out = Buffer.alloc(n * 8);
  let pc = 0;
  for (const s of steps) {
    if ('label' in s) continue;
    // A jump's offset counts the instructions it skips after itself.
    const offset = (label?: string) => (label === undefined ? 0 : at.get(label)! - pc - 1);
    out.writeUInt16LE(s.code, pc * 8);
    out.writeUInt8(offset(s.jt), pc * 8 + 2);
    out.writeUInt8(offset(s.jf), pc * 8 + 3);
    out.writeUInt32LE(s.k >>> 0, pc * 8 + 4);
    pc++;
  }
  return out;
}
