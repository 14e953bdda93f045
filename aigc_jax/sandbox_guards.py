"""The kernel and interpreter guards a sandboxed program runs under (aigc_jax/sandbox.py): a
seccomp filter, a Landlock ruleset and a Python audit hook. Each is installed in the forked child,
after its resource limits and before the program's first line, and none can be removed afterwards.

seccomp (Linux x86_64): refuses with EPERM the system calls that start processes (fork, vfork,
clone without CLONE_THREAD; clone3 answers ENOSYS so the C library falls back to clone for threads),
run other programs (execve), open sockets, signal any process but the program's own, trace,
raise resource limits, leave the session, mount, load kernel code or submit io_uring work (which
would bypass the filter). Landlock (Linux 5.13+, where the kernel enables it): every kind of write
(create, write, truncate, remove, rename into, link) only beneath the working directory, whatever
the user id. The audit hook: the same write rule and the same refusals at the interpreter level,
plus ctypes (a way around the interpreter); it is what remains on a kernel without the other two.
"""
from __future__ import annotations

import ctypes
import errno
import os
import platform
import struct
import sys

# ---------------------------------------------------------------- seccomp

AUDIT_ARCH_X86_64 = 0xC000003E
SECCOMP_RET_ALLOW, SECCOMP_RET_KILL_PROCESS = 0x7FFF0000, 0x80000000
SECCOMP_RET_ERRNO = 0x00050000
PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 38, 22, 2
CLONE_THREAD = 0x00010000
LD_W_ABS, JEQ_K, JSET_K, RET_K = 0x20, 0x15, 0x45, 0x06

# x86_64 system call numbers
REFUSED = {
    "fork": 57, "vfork": 58, "execve": 59, "execveat": 322, "socket": 41, "socketpair": 53, "ptrace": 101,
    "setrlimit": 160, "setsid": 112, "setpgid": 109, "mount": 165, "umount2": 166, "chroot": 161,
    "pivot_root": 155, "unshare": 272, "setns": 308, "reboot": 169, "kexec_load": 246, "init_module": 175,
    "finit_module": 313, "delete_module": 176, "bpf": 321, "perf_event_open": 298, "keyctl": 250,
    "add_key": 248, "request_key": 249, "process_vm_readv": 310, "process_vm_writev": 311,
    "userfaultfd": 323, "personality": 135, "io_uring_setup": 425, "io_uring_enter": 426,
    "io_uring_register": 427, "kcmp": 312, "setuid": 105, "setgid": 106, "setreuid": 113, "setregid": 114,
    "setresuid": 117, "setresgid": 119, "pidfd_open": 434, "pidfd_send_signal": 424, "tkill": 200,
    "rt_sigqueueinfo": 129, "rt_tgsigqueueinfo": 297,
}
CLONE, CLONE3, PRLIMIT64, KILL, TGKILL = 56, 435, 302, 62, 234


def _insn(code: int, jt: int, jf: int, k: int) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k & 0xFFFFFFFF)


def _seccomp_program(own_pid: int) -> list[bytes]:
    eperm = SECCOMP_RET_ERRNO | errno.EPERM
    out = [_insn(LD_W_ABS, 0, 0, 4), _insn(JEQ_K, 1, 0, AUDIT_ARCH_X86_64), _insn(RET_K, 0, 0, SECCOMP_RET_KILL_PROCESS),
           _insn(LD_W_ABS, 0, 0, 0), _insn(JSET_K, 0, 1, 0x40000000), _insn(RET_K, 0, 0, eperm)]  # no x32 ABI
    for number in sorted(REFUSED.values()):
        out += [_insn(JEQ_K, 0, 1, number), _insn(RET_K, 0, 0, eperm)]
    out += [_insn(JEQ_K, 0, 1, CLONE3), _insn(RET_K, 0, 0, SECCOMP_RET_ERRNO | errno.ENOSYS)]
    # clone: threads only
    out += [_insn(JEQ_K, 0, 4, CLONE), _insn(LD_W_ABS, 0, 0, 16), _insn(JSET_K, 0, 1, CLONE_THREAD),
            _insn(RET_K, 0, 0, SECCOMP_RET_ALLOW), _insn(RET_K, 0, 0, eperm)]
    # prlimit64: reading limits only (new_limit, args[2], NULL)
    out += [_insn(JEQ_K, 0, 6, PRLIMIT64), _insn(LD_W_ABS, 0, 0, 32), _insn(JEQ_K, 0, 3, 0),
            _insn(LD_W_ABS, 0, 0, 36), _insn(JEQ_K, 0, 1, 0), _insn(RET_K, 0, 0, SECCOMP_RET_ALLOW),
            _insn(RET_K, 0, 0, eperm)]
    # kill / tgkill: the program's own process (or its own group: 0, -pid) only
    for number in (KILL, TGKILL):
        out += [_insn(JEQ_K, 0, 6, number), _insn(LD_W_ABS, 0, 0, 16), _insn(JEQ_K, 3, 0, own_pid),
                _insn(JEQ_K, 2, 0, 0), _insn(JEQ_K, 1, 0, -own_pid), _insn(RET_K, 0, 0, eperm),
                _insn(RET_K, 0, 0, SECCOMP_RET_ALLOW)]
    out.append(_insn(RET_K, 0, 0, SECCOMP_RET_ALLOW))
    return out


def install_seccomp(libc) -> bool:
    """Installs the filter on this process (and any thread it starts); False where unsupported."""
    if sys.platform != "linux" or platform.machine() != "x86_64":
        return False
    program = b"".join(_seccomp_program(os.getpid()))
    filters = ctypes.create_string_buffer(program)

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    fprog = SockFprog(len(program) // 8, ctypes.addressof(filters))
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        return False
    return libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) == 0


# ---------------------------------------------------------------- Landlock

LANDLOCK_CREATE_RULESET, LANDLOCK_ADD_RULE, LANDLOCK_RESTRICT_SELF = 444, 445, 446
LANDLOCK_CREATE_RULESET_VERSION, LANDLOCK_RULE_PATH_BENEATH = 1, 1
WRITE_FILE, REMOVE_DIR, REMOVE_FILE = 1 << 1, 1 << 4, 1 << 5
MAKE_ANY = sum(1 << bit for bit in range(6, 13))  # char, dir, reg, sock, fifo, block, sym
REFER, TRUNCATE = 1 << 13, 1 << 14


def install_landlock(libc, writable_dir: str) -> bool:
    """Writes of every kind allowed only beneath writable_dir (and to /dev/null); False where the
    kernel has no Landlock."""
    syscall = libc.syscall
    syscall.restype = ctypes.c_long
    abi = syscall(LANDLOCK_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(LANDLOCK_CREATE_RULESET_VERSION))
    if abi < 1:
        return False
    handled = WRITE_FILE | REMOVE_DIR | REMOVE_FILE | MAKE_ANY | (REFER if abi >= 2 else 0) | (TRUNCATE if abi >= 3 else 0)
    attr = ctypes.c_uint64(handled)
    ruleset = syscall(LANDLOCK_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(8), ctypes.c_uint32(0))
    if ruleset < 0:
        return False
    try:
        for path, access in ((writable_dir, handled), ("/dev/null", WRITE_FILE | (TRUNCATE if abi >= 3 else 0))):
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            rule = struct.pack("=Qi", access, fd)  # struct landlock_path_beneath_attr (packed)
            buffer = ctypes.create_string_buffer(rule)
            added = syscall(LANDLOCK_ADD_RULE, ctypes.c_int(ruleset), ctypes.c_int(LANDLOCK_RULE_PATH_BENEATH),
                            buffer, ctypes.c_uint32(0))
            os.close(fd)
            if added != 0:
                return False
        if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            return False
        return syscall(LANDLOCK_RESTRICT_SELF, ctypes.c_int(ruleset), ctypes.c_uint32(0)) == 0
    finally:
        os.close(ruleset)


# ---------------------------------------------------------------- the audit hook

REFUSED_EVENTS = ("subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork",
                  "os.forkpty", "pty.spawn", "socket.__new__", "socket.connect", "socket.bind", "socket.sendto",
                  "ctypes.dlopen", "ctypes.dlsym", "ctypes.call_function", "ctypes.cdata", "ctypes.addressof",
                  "resource.setrlimit", "resource.prlimit", "os.killpg", "signal.pthread_kill", "os.setuid",
                  "sys.remote_exec", "os.startfile", "webbrowser.open")
PATH_EVENTS = ("os.remove", "os.rmdir", "os.rename", "os.mkdir", "os.chmod", "os.chown", "os.link", "os.symlink",
               "os.truncate", "os.utime", "os.setxattr", "os.removexattr", "shutil.rmtree", "shutil.move",
               "shutil.copyfile", "shutil.copytree", "os.chflags", "os.lchflags", "os.mknod", "os.mkfifo")
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


def install_audit_hook(writable_dir: str) -> None:
    root = os.path.realpath(writable_dir)
    own_pid = os.getpid()

    def inside(path) -> bool:
        if isinstance(path, int):
            return True  # an open descriptor: no path to check
        try:
            real = os.path.realpath(os.fsdecode(os.fspath(path)))
        except (TypeError, ValueError):
            return False
        return real == root or real.startswith(root + os.sep) or real == "/dev/null"

    def hook(event: str, args: tuple) -> None:
        if event == "open":
            path, mode, flags = (tuple(args) + (None, None))[:3]
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or bool((flags or 0) & WRITE_FLAGS)
            if writing and path is not None and not inside(path):
                raise PermissionError(f"sandbox: writing {path!r} outside the working directory is not allowed")
        elif event in PATH_EVENTS:
            for arg in args:
                if isinstance(arg, (str, bytes, os.PathLike)) and not inside(arg):
                    raise PermissionError(f"sandbox: {event} on {arg!r} outside the working directory is not allowed")
        elif event == "os.kill":
            if args and args[0] not in (own_pid, 0, -own_pid):
                raise PermissionError("sandbox: signalling another process is not allowed")
        elif event.startswith(REFUSED_EVENTS):
            raise PermissionError(f"sandbox: {event} is not allowed")

    sys.addaudithook(hook)
