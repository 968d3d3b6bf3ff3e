"""Kernel-level confinement primitives for the executor, via ctypes (no extra dependency).

Everything here is Linux-specific and is applied in two places:

- the zygote (once, at start-up): `enter_namespaces` moves it into a new network namespace (no interface
  but a down loopback, so no network) and a new mount namespace in which `mount_tmpfs` puts a size-capped
  tmpfs over the work root (model programs cannot fill the disk);
- each forked child (before the model's code runs): `drop_capabilities`, `apply_landlock` (reads only in the
  interpreter's trees, system library dirs and its own directory; writes only in its own work directory; no
  TCP bind/connect; no signals or abstract sockets outside itself), and the seccomp filter of `seccomp.py`.

Each function raises `SandboxError` (naming the step and errno) when the kernel refuses; the zygote probes
every layer once at start-up and reports which ones are in force (`rstar_jax.execution.zygote`).
"""

from __future__ import annotations

import ctypes
import os
import struct
from collections.abc import Sequence

LIBC = ctypes.CDLL(None, use_errno=True)
LIBC.syscall.restype = ctypes.c_long
LIBC.personality.argtypes = [ctypes.c_ulong]
LIBC.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]

_SYS_LANDLOCK_CREATE_RULESET, _SYS_LANDLOCK_ADD_RULE, _SYS_LANDLOCK_RESTRICT_SELF = 444, 445, 446
_SYS_CAPGET, _SYS_CAPSET = 125, 126

_PR_SET_PDEATHSIG, _PR_SET_NO_NEW_PRIVS, _PR_SET_CHILD_SUBREAPER = 1, 38, 36

_CLONE_NEWNS, _CLONE_NEWUSER, _CLONE_NEWNET = 0x00020000, 0x10000000, 0x40000000
_MS_NOSUID, _MS_NODEV, _MS_REC, _MS_PRIVATE = 0x2, 0x4, 0x4000, 1 << 18

# Landlock access rights by ABI version (linux/landlock.h).
_LL_FS_EXECUTE, _LL_FS_WRITE_FILE, _LL_FS_READ_FILE, _LL_FS_READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
_LL_FS_TRUNCATE, _LL_FS_IOCTL_DEV = 1 << 14, 1 << 15
_LL_FS_WRITE_V1 = sum(1 << b for b in (1, 4, 5, 6, 7, 8, 9, 10, 11, 12))  # write/remove/make-* rights
_LL_NET_BIND_TCP, _LL_NET_CONNECT_TCP = 1 << 0, 1 << 1
_LL_SCOPE_ABSTRACT_UNIX, _LL_SCOPE_SIGNAL = 1 << 0, 1 << 1
_LL_RULE_PATH_BENEATH, _LL_CREATE_RULESET_VERSION = 1, 1 << 0


class SandboxError(OSError):
    """A confinement step was refused by the kernel; the message names the step."""


def fail(step: str) -> SandboxError:
    err = ctypes.get_errno()
    return SandboxError(err, f"rstar_jax.execution.sandbox: {step} failed: {os.strerror(err)}")


def set_no_new_privs() -> None:
    """prctl(PR_SET_NO_NEW_PRIVS): required by unprivileged seccomp and Landlock; irrevocable."""
    if LIBC.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise fail("prctl(PR_SET_NO_NEW_PRIVS)")


def set_parent_death_signal(sig: int) -> None:
    """prctl(PR_SET_PDEATHSIG): this process gets `sig` when its parent thread exits."""
    if LIBC.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0) != 0:
        raise fail("prctl(PR_SET_PDEATHSIG)")


def set_child_subreaper() -> None:
    """prctl(PR_SET_CHILD_SUBREAPER): orphaned descendants are re-parented to this process."""
    if LIBC.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise fail("prctl(PR_SET_CHILD_SUBREAPER)")


def enter_namespaces() -> None:
    """unshare a new network + mount namespace (root), or user + network + mount (unprivileged).

    The mount namespace is made private recursively, so mounts made afterwards stay invisible outside.
    """
    uid, gid = os.getuid(), os.getgid()
    if uid == 0:
        if LIBC.unshare(_CLONE_NEWNET | _CLONE_NEWNS) != 0:
            raise fail("unshare(CLONE_NEWNET|CLONE_NEWNS)")
    else:
        if LIBC.unshare(_CLONE_NEWUSER | _CLONE_NEWNET | _CLONE_NEWNS) != 0:
            raise fail("unshare(CLONE_NEWUSER|CLONE_NEWNET|CLONE_NEWNS)")
        for path, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"), ("gid_map", f"{gid} {gid} 1")):
            with open(f"/proc/self/{path}", "w") as f:
                f.write(text)
    if LIBC.mount(b"none", b"/", None, _MS_REC | _MS_PRIVATE, None) != 0:
        raise fail("mount(/, MS_REC|MS_PRIVATE)")


MAX_FILES = 16384
"""Files and directories a zygote's tmpfs holds at once (`nr_inodes`): bounds the kernel memory outside the size
cap (about 1.8 KB per empty file) and the time to delete what a program leaves (about 0.3 s for all of them)."""

_ADDR_NO_RANDOMIZE = 0x0040000


def disable_aslr() -> bool:
    """Turn off address-space randomisation for the next exec of this process (`personality`); True when it
    was on and the kernel accepted the change (then exec again to take effect), False otherwise."""
    current = LIBC.personality(0xFFFFFFFF)
    if current < 0 or current & _ADDR_NO_RANDOMIZE:
        return False
    return LIBC.personality(current | _ADDR_NO_RANDOMIZE) >= 0 and bool(
        LIBC.personality(0xFFFFFFFF) & _ADDR_NO_RANDOMIZE
    )


def mount_tmpfs(path: str, size_mb: int) -> None:
    """Mount a tmpfs of at most `size_mb` MiB and `MAX_FILES` entries over `path` (private mount namespace)."""
    opts = f"size={int(size_mb)}m,nr_inodes={MAX_FILES},mode=0700".encode()
    if LIBC.mount(b"tmpfs", path.encode(), b"tmpfs", _MS_NOSUID | _MS_NODEV, opts) != 0:
        raise fail(f"mount(tmpfs on {path})")


def drop_capabilities() -> None:
    """capset(all zero): even uid 0 loses CAP_SYS_RESOURCE (cannot raise rlimits), CAP_SYS_ADMIN, CAP_KILL…"""
    header = struct.pack("Ii", 0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
    data = bytes(24)  # two __user_cap_data_struct {effective, permitted, inheritable}, all empty
    if LIBC.syscall(_SYS_CAPSET, header, data) != 0:
        raise fail("capset(0)")


def landlock_abi() -> int:
    """The kernel's Landlock ABI version, or 0 when Landlock is unavailable."""
    version = LIBC.syscall(_SYS_LANDLOCK_CREATE_RULESET, None, ctypes.c_size_t(0), _LL_CREATE_RULESET_VERSION)
    return max(int(version), 0)


# Read-only roots every program may need besides the interpreter's own trees (see `readable_paths`).
SYSTEM_READ_ROOTS = ("/usr", "/lib", "/lib32", "/lib64", "/bin", "/sbin", "/dev/urandom", "/dev/random", "/dev/zero")
SYSTEM_READ_FILES = (
    "/etc/ld.so.cache", "/etc/localtime", "/etc/passwd", "/etc/group", "/etc/nsswitch.conf",
    "/proc/cpuinfo", "/proc/meminfo", "/proc/stat", "/sys/devices/system/cpu",
)  # fmt: skip


def readable_paths(interpreter_roots: Sequence[str]) -> tuple[tuple[str, bool], ...]:
    """(path, is_directory) for every existing read root: the interpreter's trees plus the system ones."""
    found: dict[str, bool] = {}
    for path in (*interpreter_roots, *SYSTEM_READ_ROOTS, *SYSTEM_READ_FILES):
        if path and os.path.exists(path):
            found.setdefault(os.path.realpath(path), os.path.isdir(path))
    dirs = [p for p, is_dir in found.items() if is_dir]
    nested = {p for p in found if any(p != d and p.startswith(d.rstrip("/") + "/") for d in dirs)}
    return tuple(sorted((p, is_dir) for p, is_dir in found.items() if p not in nested))


def apply_landlock(abi: int, writable_dir: str, readable: Sequence[tuple[str, bool]]) -> None:
    """Restrict this process (irrevocably) with Landlock at ABI `abi` (>= 1).

    File system: reading is allowed only beneath `readable` (path, is_directory) entries, this process's own
    /proc/<pid> and `writable_dir`; writing (write, truncate, create, remove, rename, device ioctl) only beneath
    `writable_dir` and on /dev/null; exec nowhere. ABI >= 4: TCP bind and connect denied. ABI >= 6: signals
    and abstract unix sockets scoped to this domain. Requires no_new_privs or CAP_SYS_ADMIN.
    """
    read = _LL_FS_READ_FILE | _LL_FS_READ_DIR
    fs = _LL_FS_EXECUTE | _LL_FS_WRITE_V1 | read
    fs |= (1 << 13) if abi >= 2 else 0  # REFER (cross-directory rename/link)
    fs |= _LL_FS_TRUNCATE if abi >= 3 else 0
    fs |= _LL_FS_IOCTL_DEV if abi >= 5 else 0
    net = (_LL_NET_BIND_TCP | _LL_NET_CONNECT_TCP) if abi >= 4 else 0
    scoped = (_LL_SCOPE_ABSTRACT_UNIX | _LL_SCOPE_SIGNAL) if abi >= 6 else 0
    attr = struct.pack("QQQ", fs, net, scoped)[: 8 if abi < 4 else (16 if abi < 6 else 24)]
    ruleset = LIBC.syscall(_SYS_LANDLOCK_CREATE_RULESET, attr, ctypes.c_size_t(len(attr)), 0)
    if ruleset < 0:
        raise fail("landlock_create_ruleset")
    file_rights = _LL_FS_READ_FILE | _LL_FS_WRITE_FILE | (fs & (_LL_FS_TRUNCATE | _LL_FS_IOCTL_DEV))
    rules = [(path, read if is_dir else _LL_FS_READ_FILE) for path, is_dir in readable]
    rules += [("/proc/self", read), (writable_dir, fs & ~_LL_FS_EXECUTE), ("/dev/null", file_rights)]
    try:
        for path, rights in rules:
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)  # /proc/self resolves to this process's directory
            try:
                rule = struct.pack("=Qi", rights, fd)  # struct landlock_path_beneath_attr (packed)
                if LIBC.syscall(_SYS_LANDLOCK_ADD_RULE, ruleset, _LL_RULE_PATH_BENEATH, rule, 0) != 0:
                    raise fail(f"landlock_add_rule({path})")
            finally:
                os.close(fd)
        if LIBC.syscall(_SYS_LANDLOCK_RESTRICT_SELF, ruleset, 0) != 0:
            raise fail("landlock_restrict_self")
    finally:
        os.close(ruleset)
