"""The seccomp-BPF filter of executor children (x86_64): no new processes, no exec, no network sockets, no
signals, rlimit or scheduling changes aimed at other processes, no ptrace, no mount/namespace/module/clock/
keyring syscalls, no chmod/chown/utime/xattr changes. Threads (clone with CLONE_THREAD) stay allowed.

The filter is a binary decision tree over the sorted numbers of the syscalls it treats specially, so each
syscall (and the kernel's per-syscall cache preparation at install time) walks ~15 instructions, not the
~200 of a linear list. It is assembled once per zygote; `SeccompFilter.install` patches in the caller's pid
(kill/tgkill/prlimit64/... are allowed on the process itself only) and loads it.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import struct

from rstar_jax.execution.sandbox import LIBC, SandboxError, fail

# x86_64 syscall numbers (the only architecture with a table here; see `supported`).
_NR = {
    "clone": 56, "fork": 57, "vfork": 58, "execve": 59, "kill": 62, "socket": 41, "socketpair": 53,
    "ptrace": 101, "syslog": 103, "rt_sigqueueinfo": 129, "mknod": 133, "setpriority": 141,
    "sched_setparam": 142, "sched_setscheduler": 144, "vhangup": 153, "pivot_root": 155, "adjtimex": 159,
    "chroot": 161, "acct": 163, "settimeofday": 164, "mount": 165, "umount2": 166, "swapon": 167,
    "swapoff": 168, "reboot": 169, "sethostname": 170, "setdomainname": 171, "iopl": 172, "ioperm": 173,
    "init_module": 175, "delete_module": 176, "quotactl": 179, "tkill": 200, "sched_setaffinity": 203,
    "lookup_dcookie": 212, "clock_settime": 227, "tgkill": 234, "kexec_load": 246, "add_key": 248,
    "request_key": 249, "keyctl": 250, "ioprio_set": 251, "migrate_pages": 256, "mknodat": 259,
    "unshare": 272, "get_robust_list": 274, "move_pages": 279, "rt_tgsigqueueinfo": 297,
    "perf_event_open": 298, "fanotify_init": 300, "prlimit64": 302, "name_to_handle_at": 303,
    "open_by_handle_at": 304, "clock_adjtime": 305, "setns": 308, "process_vm_readv": 310,
    "process_vm_writev": 311, "kcmp": 312, "finit_module": 313, "sched_setattr": 314, "kexec_file_load": 320,
    "memfd_create": 319, "bpf": 321, "execveat": 322, "userfaultfd": 323, "pidfd_send_signal": 424,
    "io_uring_setup": 425,
    "io_uring_enter": 426, "io_uring_register": 427, "open_tree": 428, "move_mount": 429, "fsopen": 430,
    "fsconfig": 431, "fsmount": 432, "fspick": 433, "pidfd_open": 434, "clone3": 435, "pidfd_getfd": 438,
    "process_madvise": 440, "mount_setattr": 442, "process_mrelease": 448,
    "chmod": 90, "fchmod": 91, "chown": 92, "fchown": 93, "lchown": 94, "utime": 132, "setxattr": 188,
    "lsetxattr": 189, "fsetxattr": 190, "removexattr": 197, "lremovexattr": 198, "fremovexattr": 199,
    "utimes": 235, "fchownat": 260, "futimesat": 261, "fchmodat": 268, "utimensat": 280, "fchmodat2": 452,
    "setxattrat": 463, "removexattrat": 466,
}  # fmt: skip
_DENIED = (
    "fork", "vfork", "execve", "execveat", "ptrace", "syslog", "rt_sigqueueinfo", "rt_tgsigqueueinfo",
    "tkill", "mknod", "mknodat", "vhangup", "pivot_root", "adjtimex", "chroot", "acct", "settimeofday",
    "mount", "umount2", "swapon", "swapoff", "reboot", "sethostname", "setdomainname", "iopl", "ioperm",
    "init_module", "finit_module", "delete_module", "quotactl", "lookup_dcookie", "clock_settime",
    "clock_adjtime", "kexec_load", "kexec_file_load", "add_key", "request_key", "keyctl", "migrate_pages",
    "move_pages", "unshare", "setns", "get_robust_list", "perf_event_open", "fanotify_init",
    "name_to_handle_at", "open_by_handle_at", "process_vm_readv", "process_vm_writev", "kcmp", "bpf",
    "userfaultfd", "pidfd_send_signal", "pidfd_open", "pidfd_getfd", "io_uring_setup", "io_uring_enter",
    "io_uring_register", "open_tree", "move_mount", "fsopen", "fsconfig", "fsmount", "fspick",
    "mount_setattr", "process_madvise", "process_mrelease",
    # Anonymous memory files: pages outside RLIMIT_AS (the zygote makes the output memfds before the fork).
    "memfd_create",
    # Metadata changes Landlock does not cover (a root-owned file's mode, owner, times, xattrs).
    "chmod", "fchmod", "fchmodat", "fchmodat2", "chown", "fchown", "lchown", "fchownat", "utime", "utimes",
    "futimesat", "utimensat", "setxattr", "lsetxattr", "fsetxattr", "removexattr", "lremovexattr",
    "fremovexattr", "setxattrat", "removexattrat",
)  # fmt: skip
# Syscalls whose first argument is a pid: allowed only on the calling process itself (0 or its own pid).
_SELF_PID_ARG0 = ("prlimit64", "sched_setaffinity", "sched_setparam", "sched_setscheduler", "sched_setattr")
# Syscalls whose second argument is a pid ("who").
_SELF_PID_ARG1 = ("setpriority", "ioprio_set")


_CLONE_THREAD = 0x00010000
_AF_UNIX = 1
_AUDIT_ARCH_X86_64 = 0xC000003E
_X32_SYSCALL_BIT = 0x40000000
RET_ALLOW = 0x7FFF0000
RET_KILL_PROCESS = 0x80000000
RET_EPERM = 0x00050000 | errno.EPERM
RET_EACCES = 0x00050000 | errno.EACCES
RET_ENOSYS = 0x00050000 | errno.ENOSYS
_LD_W_ABS, _JA, _JEQ, _JGE, _JSET, _RET = 0x20, 0x05, 0x15, 0x35, 0x45, 0x06
_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER = 22, 2
_LEAF = 4  # syscalls compared linearly at a leaf of the decision tree

Insn = tuple[int, int, int, int]  # struct sock_filter: (code, jt, jf, k)


def supported() -> bool:
    """True where this module has a syscall table (x86_64 Linux)."""
    return platform.system() == "Linux" and platform.machine() == "x86_64"


def _arg(i: int) -> Insn:
    """Load the low 32 bits of syscall argument i (offsetof(struct seccomp_data, args[i]))."""
    return (_LD_W_ABS, 0, 0, 16 + 8 * i)


def _ret(action: int) -> Insn:
    return (_RET, 0, 0, action)


def _handlers(pid: int) -> dict[int, list[Insn]]:
    """Per specially treated syscall number: instructions that decide it (every path ends in a return)."""
    handlers = {_NR[name]: [_ret(RET_EPERM)] for name in _DENIED}
    handlers[_NR["clone3"]] = [_ret(RET_ENOSYS)]  # glibc then falls back to clone, which is checked
    handlers[_NR["clone"]] = [_arg(0), (_JSET, 0, 1, _CLONE_THREAD), _ret(RET_ALLOW), _ret(RET_EPERM)]
    for name in ("socket", "socketpair"):
        handlers[_NR[name]] = [_arg(0), (_JEQ, 1, 0, _AF_UNIX), _ret(RET_EACCES), _ret(RET_ALLOW)]
    # kill(pid): itself or its own process group (0 or -pid); tgkill(tgid, ...): its own threads.
    handlers[_NR["kill"]] = [_arg(0), (_JEQ, 3, 0, pid), (_JEQ, 2, 0, 0), (_JEQ, 1, 0, (-pid) & 0xFFFFFFFF)]
    handlers[_NR["kill"]] += [_ret(RET_EPERM), _ret(RET_ALLOW)]
    handlers[_NR["tgkill"]] = [_arg(0), (_JEQ, 1, 0, pid), _ret(RET_EPERM), _ret(RET_ALLOW)]
    for names, index in ((_SELF_PID_ARG0, 0), (_SELF_PID_ARG1, 1)):
        for name in names:
            handlers[_NR[name]] = [_arg(index), (_JEQ, 2, 0, 0), (_JEQ, 1, 0, pid), _ret(RET_EPERM), _ret(RET_ALLOW)]
    return handlers


def program(pid: int) -> list[Insn]:
    """The filter for the process `pid`, as classic BPF instructions."""
    handlers = _handlers(pid)
    numbers = sorted(handlers)
    # Pass 1: emit with symbolic jump targets ("JA", label) and label markers ("AT", label).
    code: list = [(_LD_W_ABS, 0, 0, 4), (_JEQ, 1, 0, _AUDIT_ARCH_X86_64), _ret(RET_KILL_PROCESS)]
    code += [(_LD_W_ABS, 0, 0, 0), (_JGE, 0, 1, _X32_SYSCALL_BIT), _ret(RET_EPERM)]

    def tree(lo: int, hi: int) -> None:
        if hi - lo <= _LEAF:
            for nr in numbers[lo:hi]:  # a one-instruction decision is inlined, longer ones are jumped to
                code.extend([(_JEQ, 0, 1, nr), handlers[nr][0] if len(handlers[nr]) == 1 else ("JA", nr)])
            code.append(("JA", "allow"))
            return
        mid = (lo + hi) // 2
        code.extend([(_JGE, 0, 1, numbers[mid]), ("JA", ("right", lo, hi))])  # >= pivot: right half
        tree(lo, mid)
        code.append(("AT", ("right", lo, hi)))
        tree(mid, hi)

    tree(0, len(numbers))
    code += [("AT", "allow"), _ret(RET_ALLOW)]
    for nr in numbers:
        if len(handlers[nr]) > 1:
            code += [("AT", nr), *handlers[nr]]
    # Pass 2: resolve labels into relative jumps (BPF_JA takes a 32-bit forward offset).
    where, index = {}, 0
    for item in code:
        if item[0] == "AT":
            where[item[1]] = index
        else:
            index += 1
    out: list[Insn] = []
    for item in code:
        if item[0] == "JA":
            out.append((_JA, 0, 0, where[item[1]] - (len(out) + 1)))
        elif item[0] != "AT":
            out.append(item)
    return out


class SeccompFilter:
    """The filter of `program`, assembled once (in the zygote) and installed per child."""

    _PID_MARK = 0x7EADBEEF  # marker patched with the real pid; never a pid itself (pid_max <= 2**22)

    def __init__(self) -> None:
        if not supported():
            raise SandboxError(errno.ENOSYS, "rstar_jax.execution.seccomp: no syscall table for this arch")
        prog = program(self._PID_MARK)
        template = b"".join(struct.pack("HBBI", *insn) for insn in prog)
        neg = (-self._PID_MARK) & 0xFFFFFFFF
        self._pid_offsets = [8 * i + 4 for i, insn in enumerate(prog) if insn[0] == _JEQ and insn[3] == self._PID_MARK]
        self._neg_pid_offsets = [8 * i + 4 for i, insn in enumerate(prog) if insn[0] == _JEQ and insn[3] == neg]
        # Built once here; a child patches its (copy-on-write) copy in place, touching as few pages as possible.
        self._buf = ctypes.create_string_buffer(template, len(template))
        self._fprog = ctypes.create_string_buffer(struct.pack("HxxxxxxP", len(prog), ctypes.addressof(self._buf)), 16)
        self._fprog_address = ctypes.addressof(self._fprog)

    def install(self) -> None:
        """Load the filter on this (single-threaded, freshly forked) process; irrevocable. Needs no_new_privs.

        Patches the pid into this process's copy of the buffer, so call it only in a forked child.
        """
        pid = os.getpid()
        for offsets, value in ((self._pid_offsets, pid), (self._neg_pid_offsets, (-pid) & 0xFFFFFFFF)):
            for offset in offsets:
                struct.pack_into("I", self._buf, offset, value)
        if LIBC.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, self._fprog_address, 0, 0) != 0:
            raise fail("prctl(PR_SET_SECCOMP)")
