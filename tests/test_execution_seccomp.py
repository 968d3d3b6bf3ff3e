"""The seccomp decision tree, checked by a small classic-BPF interpreter against a plain table of intent.

The kernel-level behaviour (fork, exec, sockets, kill... really refused) is covered by the hostile battery;
this checks, without any process, that the tree routes every syscall number 0..499 to the right decision.
"""

from __future__ import annotations

import struct

import pytest

from rstar_jax.execution import seccomp

PID = 4242
X86_64 = 0xC000003E
ALLOW, EPERM, EACCES, ENOSYS, KILL = (
    seccomp.RET_ALLOW,
    seccomp.RET_EPERM,
    seccomp.RET_EACCES,
    seccomp.RET_ENOSYS,
    seccomp.RET_KILL_PROCESS,
)
# x86_64 numbers written out independently of the module's table.
FORK, VFORK, EXECVE, EXECVEAT, CLONE, CLONE3, SOCKET, SOCKETPAIR = 57, 58, 59, 322, 56, 435, 41, 53
KILL_NR, TGKILL, PTRACE, MOUNT, CHMOD, PRLIMIT64, SETPRIORITY = 62, 234, 101, 165, 90, 302, 141
READ, WRITE, MMAP, OPENAT, EXIT_GROUP, GETPID = 0, 1, 9, 257, 231, 39


def run_bpf(prog: list[tuple[int, int, int, int]], nr: int, args: tuple[int, ...] = (), arch: int = X86_64) -> int:
    """Execute classic BPF over struct seccomp_data {int nr; u32 arch; u64 ip; u64 args[6]}."""
    data = struct.pack("<iIQ6Q", nr, arch, 0, *(list(args) + [0] * (6 - len(args))))
    acc, pc, steps = 0, 0, 0
    while True:
        steps += 1
        assert steps < 10_000
        code, jt, jf, k = prog[pc]
        pc += 1
        if code == 0x20:  # ld [k]
            acc = struct.unpack_from("<I", data, k)[0]
        elif code == 0x05:  # ja k
            pc += k
        elif code in (0x15, 0x35, 0x45):  # jeq / jge / jset k
            taken = {0x15: acc == k, 0x35: acc >= k, 0x45: bool(acc & k)}[code]
            pc += jt if taken else jf
        elif code == 0x06:  # ret k
            return k
        else:
            raise AssertionError(f"unexpected opcode {code:#x}")


@pytest.fixture(scope="module")
def prog():
    return seccomp.program(PID)


def test_fits_the_kernel_limit_and_jumps_stay_in_bounds(prog) -> None:
    assert len(prog) <= 4096
    for i, (code, jt, jf, k) in enumerate(prog):
        if code == 0x05:
            assert 0 <= i + 1 + k < len(prog)
        elif code in (0x15, 0x35, 0x45):
            assert i + 1 + max(jt, jf) < len(prog)


def test_wrong_arch_and_x32_are_refused(prog) -> None:
    assert run_bpf(prog, READ, arch=0x40000003) == KILL  # i386 syscalls from a 64-bit process
    assert run_bpf(prog, 0x40000000 | READ) == EPERM


@pytest.mark.parametrize(
    ("nr", "args", "expected"),
    [
        (FORK, (), EPERM), (VFORK, (), EPERM), (EXECVE, (), EPERM), (EXECVEAT, (), EPERM), (PTRACE, (), EPERM),
        (MOUNT, (), EPERM), (CHMOD, (), EPERM), (CLONE3, (), ENOSYS),
        (CLONE, (0x3D0F00,), ALLOW),  # pthread_create flags (CLONE_THREAD set)
        (CLONE, (0x01200011,), EPERM),  # fork(): CLONE_CHILD_SETTID | CLONE_CHILD_CLEARTID | SIGCHLD
        (SOCKET, (1, 1, 0), ALLOW), (SOCKET, (2, 1, 0), EACCES), (SOCKET, (10, 2, 0), EACCES),
        (SOCKETPAIR, (1, 1, 0), ALLOW), (SOCKETPAIR, (2, 1, 0), EACCES),
        (KILL_NR, (PID, 9), ALLOW), (KILL_NR, (0, 9), ALLOW), ((KILL_NR), ((-PID) & 0xFFFFFFFF, 9), ALLOW),
        (KILL_NR, (1, 9), EPERM), (KILL_NR, (0xFFFFFFFF, 9), EPERM), (KILL_NR, (PID + 1, 15), EPERM),
        (TGKILL, (PID, PID, 6), ALLOW), (TGKILL, (PID + 1, PID + 1, 6), EPERM),
        (PRLIMIT64, (0, 9), ALLOW), (PRLIMIT64, (PID, 9), ALLOW), (PRLIMIT64, (1, 9), EPERM),
        (SETPRIORITY, (0, 0, 5), ALLOW), (SETPRIORITY, (0, 77, 5), EPERM),
        (READ, (), ALLOW), (WRITE, (), ALLOW), (MMAP, (), ALLOW), (OPENAT, (), ALLOW), (GETPID, (), ALLOW),
        (EXIT_GROUP, (), ALLOW),
    ],
)  # fmt: skip
def test_decisions(prog, nr: int, args: tuple[int, ...], expected: int) -> None:
    assert run_bpf(prog, nr, args) == expected


def test_every_syscall_number_matches_the_intent_table(prog) -> None:
    """Tree routing vs. a flat reading of the module's lists (what a linear filter would decide)."""
    denied = {seccomp._NR[name] for name in seccomp._DENIED}
    for nr in range(500):
        got = run_bpf(prog, nr, (0x20345, 0x54321))  # no CLONE_THREAD bit, not a pid of ours
        if nr in denied:
            assert got == EPERM, nr
        elif nr == CLONE3:
            assert got == ENOSYS
        elif nr in (CLONE, KILL_NR, TGKILL):
            assert got == EPERM, nr  # arg0 is neither CLONE_THREAD-flagged nor this process
        elif nr in (SOCKET, SOCKETPAIR):
            assert got == EACCES
        elif nr in {seccomp._NR[n] for n in seccomp._SELF_PID_ARG0 + seccomp._SELF_PID_ARG1}:
            assert got == EPERM, nr
        else:
            assert got == ALLOW, nr
