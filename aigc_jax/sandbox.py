"""Runs untrusted Python programs (model-written code with its tests) in contained processes.

    with Sandbox() as box:                      # one worker process per usable core
        verdicts = box.run_many(programs)       # in order; each passed/failed/timeout/crashed/limit

Each program runs in a child forked by a worker (workers are started once, with the spawn method,
importing nothing but this module, so a fork costs about a millisecond and copies no JAX state).
The child, before the program's first line: becomes its own session and process group; moves into
a fresh empty directory (removed afterwards with whatever was written there); clears its
environment (PATH, LANG, HOME and TMPDIR = that directory); sets resource limits (CPU seconds,
address space, open files, file size, processes, no core dumps); closes every inherited descriptor;
and installs the guards of aigc_jax/sandbox_guards.py (seccomp: no processes, exec, sockets,
signals to others, limit changes; Landlock: no writes outside its directory; an audit hook).
The worker reads its output up to a byte limit and kills the whole group at the wall-clock limit.

Passing means the program ran to its end: only then does the harness, after the last line
returned, write a nonce the program was never given to a private pipe. exit(), SystemExit,
os._exit, an atexit hook, a signal, killing the worker: none of them writes it.

Threat model, plainly: this contains the mistakes and excesses a model's program makes (infinite
loops, fork bombs, memory hogs, floods of output, deep recursion, writes, deletions, sockets,
shells, early exits) and a casual attacker's attempts at them, on Linux x86_64 with seccomp and
Landlock (elsewhere only the resource limits, the timeout and the audit hook, which C code and
deliberate interpreter tricks get around). It shares the kernel, the user id and the read view of
the file system with its caller: a program can read what the user can read, and a deliberate
attacker who introspects the harness in its own process can forge a pass. It is not a substitute
for a container or a virtual machine for hostile users.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import os
import queue
import resource
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from typing import Optional, Sequence

from aigc_jax import sandbox_guards
from aigc_jax.host import usable_cores

STATUSES = ("passed", "failed", "timeout", "crashed", "limit")


@dataclasses.dataclass(frozen=True)
class Limits:
    cpu_seconds: float = 5.0
    wall_seconds: float = 10.0
    memory_bytes: int = 1 << 30  # address space
    open_files: int = 64
    file_bytes: int = 1 << 20  # the largest file it may write
    output_bytes: int = 1 << 16  # stdout + stderr
    processes: int = 1  # RLIMIT_NPROC beyond the processes the user has (the kernel ignores it for root)


@dataclasses.dataclass(frozen=True)
class Verdict:
    status: str  # passed | failed | timeout | crashed | limit
    detail: str  # the exception's last line, the signal, or the limit hit
    seconds: float
    output: str  # stdout and stderr, truncated at the output limit

    @property
    def passed(self) -> bool:
        return self.status == "passed"


# ---------------------------------------------------------------- the child


def _child(program: str, workdir: str, limits: Limits, nonce: str, out_fd: int, result_fd: int,
           audit_hook: bool) -> None:
    """Runs in the forked child; never returns."""
    try:
        os.setsid()
        os.chdir(workdir)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(out_fd, 1)
        os.dup2(out_fd, 2)
        keep = sorted({0, 1, 2, result_fd})
        for low, high in zip(keep, keep[1:] + [resource.getrlimit(resource.RLIMIT_NOFILE)[1]]):
            os.closerange(low + 1, high)
        os.environ.clear()
        os.environ.update(PATH="/usr/bin:/bin", LANG="C.UTF-8", HOME=workdir, TMPDIR=workdir)
        tempfile.tempdir = None
        cpu = max(1, int(limits.cpu_seconds + 0.999))
        for name, value in ((resource.RLIMIT_CPU, (cpu, cpu + 1)), (resource.RLIMIT_AS, limits.memory_bytes),
                            (resource.RLIMIT_NOFILE, limits.open_files), (resource.RLIMIT_FSIZE, limits.file_bytes),
                            (resource.RLIMIT_CORE, 0), (resource.RLIMIT_NPROC, _user_processes() + limits.processes)):
            resource.setrlimit(name, value if isinstance(value, tuple) else (value, value))
        signal.signal(signal.SIGXFSZ, signal.SIG_DFL)
        libc = _libc()
        sandbox_guards.install_landlock(libc, workdir)
        sandbox_guards.install_seccomp(libc)
        if audit_hook:
            sandbox_guards.install_audit_hook(workdir)
        code = compile(program, "<program>", "exec")
    except SyntaxError as e:  # the program's fault: it fails
        _write(result_fd, json.dumps({"error": "SyntaxError", "message": _last_line(e)}).encode())
        os._exit(1)
    except BaseException as e:  # the harness failed before the program: not the program's fault
        _write(result_fd, json.dumps({"harness": f"{type(e).__name__}: {e}"}).encode())
        os._exit(70)
    try:
        exec(code, {"__name__": "__main__", "__builtins__": __builtins__})
    except BaseException as e:  # SystemExit included: a program that exits early has not passed
        _flush()
        record = {"error": type(e).__name__, "message": _last_line(e)}
        if isinstance(e, OSError):
            record["errno"] = e.errno
        _write(result_fd, json.dumps(record).encode())
        os._exit(1)
    _flush()
    _write(result_fd, json.dumps({"end": nonce}).encode())
    os._exit(0)


_LIBC = None


def _libc():
    """The C library, loaded once per worker (before any child's limits and guards)."""
    global _LIBC
    if _LIBC is None:
        _LIBC = sandbox_guards.ctypes.CDLL(None, use_errno=True)
    return _LIBC


def _user_processes() -> int:
    """Processes of this user now (RLIMIT_NPROC counts them all)."""
    uid, count = os.getuid(), 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}").st_uid == uid:
                    count += 1
            except OSError:
                pass
    return count


def _last_line(error: BaseException) -> str:
    lines = traceback.format_exception_only(type(error), error)
    return (lines[-1].strip() if lines else type(error).__name__)[:500]


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:
            pass


def _write(fd: int, data: bytes) -> None:
    try:
        os.write(fd, data)
    except OSError:
        pass


# ---------------------------------------------------------------- the worker side of one run


def execute(program: str, limits: Limits, audit_hook: bool = True, root: Optional[str] = None) -> Verdict:
    """Forks a child for `program`, watches it, cleans up, and judges (called in a worker).
    audit_hook=False leaves out the interpreter-level guard: for testing the kernel's alone."""
    start = time.perf_counter()
    workdir = tempfile.mkdtemp(prefix="aigc-sandbox-", dir=root)  # root None: the system's temporary directory
    out_read, out_write = os.pipe()
    result_read, result_write = os.pipe()
    nonce = secrets.token_hex(16)
    _libc()
    pid = os.fork()
    if pid == 0:
        os.close(out_read)
        os.close(result_read)
        _child(program, workdir, limits, nonce, out_write, result_write, audit_hook)
    os.close(out_write)
    os.close(result_write)
    output, result, why = bytearray(), bytearray(), None
    deadline = start + limits.wall_seconds
    open_fds = {out_read, result_read}
    while open_fds:
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            why = "timeout"
            break
        ready, _, _ = select.select(list(open_fds), [], [], remaining)
        for fd in ready:
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                open_fds.discard(fd)
            elif fd == out_read:
                output += chunk
                if len(output) > limits.output_bytes:
                    why = "output"
            elif len(result) < 4096:
                result += chunk
        if why:
            break
    _kill_group(pid)
    _, status = os.waitpid(pid, 0)
    for fd in (out_read, result_read):
        os.close(fd)
    shutil.rmtree(workdir, onerror=_force_remove)
    seconds = time.perf_counter() - start
    text = bytes(output[:limits.output_bytes]).decode("utf-8", errors="replace")
    return _judge(why, status, bytes(result), nonce, limits, seconds, text)


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _force_remove(function, path, _info) -> None:
    """rmtree's error handler: a program may leave read-only files or directories."""
    try:
        os.chmod(os.path.dirname(path), 0o700)
        os.chmod(path, 0o700)
        function(path)
    except OSError:
        pass


def _judge(why, status, result: bytes, nonce: str, limits: Limits, seconds: float, output: str) -> Verdict:
    def verdict(kind, detail):
        return Verdict(kind, detail, seconds, output)

    if why == "timeout":
        return verdict("timeout", f"still running after {limits.wall_seconds:g} s (wall clock)")
    if why == "output":
        return verdict("limit", f"output over {limits.output_bytes:,} bytes")
    try:
        record = json.loads(result.decode()) if result else {}
    except (UnicodeDecodeError, json.JSONDecodeError):
        record = {}
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        if number == signal.SIGXCPU or (number == signal.SIGKILL and seconds >= limits.cpu_seconds):
            return verdict("limit", f"CPU time over {limits.cpu_seconds:g} s")
        if number == signal.SIGXFSZ:
            return verdict("limit", f"a file over {limits.file_bytes:,} bytes")
        return verdict("crashed", f"killed by {signal.Signals(number).name}")
    code = os.WEXITSTATUS(status)
    if record.get("end") == nonce and code == 0:
        return verdict("passed", "")
    if "harness" in record:
        return verdict("crashed", f"the sandbox could not start the program: {record['harness']}")
    if "error" in record:
        if record["error"] == "MemoryError":
            return verdict("limit", f"memory (address space over {limits.memory_bytes:,} bytes)")
        if record.get("errno") == 27:  # EFBIG
            return verdict("limit", f"a file over {limits.file_bytes:,} bytes")
        if record["error"] == "SystemExit":
            return verdict("failed", f"exited before its end ({record['message']})")
        return verdict("failed", record["message"])
    return verdict("failed", f"exited before its end (status {code}, without finishing)")


# ---------------------------------------------------------------- workers and the pool


def serve(requests, replies) -> None:
    """A worker's loop (`python -m aigc_jax.sandbox`): one JSON job per line in, one verdict per line out."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    for line in requests:
        job = json.loads(line)
        verdict = execute(job["program"], Limits(**job["limits"]), job.get("audit_hook", True), job.get("root"))
        replies.write(json.dumps(dataclasses.asdict(verdict)) + "\n")
        replies.flush()


class _Worker:
    """One worker process: a fresh interpreter that imports only this module, so forking it per
    program is cheap and copies nothing of the caller (JAX, its threads, its open files)."""

    def __init__(self):
        package_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")])))
        self.process = subprocess.Popen([sys.executable, "-m", "aigc_jax.sandbox"], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, env=env, text=True, bufsize=1,
                                        start_new_session=True)

    def run(self, program: str, limits: Limits, audit_hook: bool = True,
            root: Optional[str] = None) -> Optional[Verdict]:
        """The verdict, or None when the worker died or stopped answering."""
        job = {"program": program, "limits": dataclasses.asdict(limits), "audit_hook": audit_hook, "root": root}
        try:
            self.process.stdin.write(json.dumps(job) + "\n")
            self.process.stdin.flush()
            ready, _, _ = select.select([self.process.stdout], [], [], limits.wall_seconds + 30.0)
            line = self.process.stdout.readline() if ready else ""
            return Verdict(**json.loads(line)) if line else None
        except (OSError, ValueError):
            return None

    def stop(self, kill: bool = False) -> None:
        if not kill:
            try:
                self.process.stdin.close()
                self.process.wait(timeout=5)
                return
            except (OSError, subprocess.TimeoutExpired):
                pass
        self.process.kill()
        self.process.wait()


class Sandbox:
    """A pool of `workers` worker processes (0: one per usable core); safe to use from threads."""

    def __init__(self, workers: int = 0, limits: Limits = Limits(), root: Optional[str] = None):
        """root: where the programs' working directories are made (default: the system's temporary directory)."""
        self.limits = limits
        self.root = root
        count = workers or usable_cores()
        self._idle: queue.Queue = queue.Queue()
        self._workers: list = []
        self._lock = threading.Lock()
        for _ in range(count):
            self._idle.put(self._start())
        self._pool = concurrent.futures.ThreadPoolExecutor(count, thread_name_prefix="sandbox")

    def _start(self) -> _Worker:
        worker = _Worker()
        with self._lock:
            self._workers.append(worker)
        return worker

    def run(self, program: str, limits: Optional[Limits] = None, *, audit_hook: bool = True) -> Verdict:
        """The verdict of one program. audit_hook=False drops the interpreter-level guard, leaving
        the kernel's (seccomp, Landlock) and the limits: for checking those layers on their own."""
        limits = limits or self.limits
        worker = self._idle.get()
        verdict = worker.run(program, limits, audit_hook, self.root)
        if verdict is not None:
            self._idle.put(worker)
            return verdict
        worker.stop(kill=True)  # lost: replaced, and the program judged crashed
        with self._lock:
            self._workers.remove(worker)
        self._idle.put(self._start())
        return Verdict("crashed", "the sandbox worker running it was lost", limits.wall_seconds, "")

    def run_many(self, programs: Sequence[str], limits: Optional[Limits] = None) -> list[Verdict]:
        """Every program's verdict, in order; the workers run them in parallel."""
        return list(self._pool.map(lambda program: self.run(program, limits), programs))

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        with self._lock:
            workers, self._workers = list(self._workers), []
        for worker in workers:
            worker.stop()

    def __enter__(self) -> "Sandbox":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


if __name__ == "__main__":
    serve(sys.stdin, sys.stdout)
