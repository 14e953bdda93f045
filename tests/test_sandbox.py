"""The sandbox for model-written programs (aigc_jax/sandbox.py): every hostile program is contained,
its verdict is right, and nothing is left behind (no processes, no files); the caller is unharmed."""
import os
import signal
import threading

import pytest

from aigc_jax.sandbox import Limits, Sandbox

LIMITS = Limits(cpu_seconds=1, wall_seconds=3, memory_bytes=512 << 20, file_bytes=1 << 20, output_bytes=1 << 14)

# name -> (program, expected status, a fragment of the expected detail)
HOSTILE = {
    "infinite loop": ("while True:\n    pass", "limit", "CPU time"),
    "sleeps ignoring signals": ("import signal, time\nfor s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):\n"
                                "    signal.signal(s, signal.SIG_IGN)\ntime.sleep(60)", "timeout", "wall clock"),
    "fork bomb": ("import os\nwhile True:\n    os.fork()", "failed", "os.fork is not allowed"),
    "memory hog": ("hog = bytearray(1 << 31)", "limit", "memory"),
    # growing by 64 MB at a time: the address-space limit or, on a busy machine, the CPU limit first
    "growing memory hog": ("hog = [bytearray(1 << 26) for _ in range(100)]", "limit", ""),
    "huge output": ("while True:\n    print('spam' * 1000)", "limit", "output over"),
    "deep recursion": ("def down(n):\n    return down(n + 1)\ndown(0)", "failed", "RecursionError"),
    # with the interpreter's guard lifted, the C stack or the CPU limit ends it, whichever comes first
    "deep recursion, guard lifted": ("import sys\nsys.setrecursionlimit(10 ** 7)\ndef down(n):\n    return down(n + 1)\n"
                                     "down(0)", ("failed", "crashed", "limit"), ""),
    "writes outside": ("open('/tmp/aigc_sandbox_escape.txt', 'w').write('x')", "failed", "outside the working"),
    "deletes outside": ("import os\nos.remove(VICTIM)", "failed", "outside the working"),
    "removes a tree outside": ("import shutil\nshutil.rmtree(os.path.dirname(VICTIM))", "failed", "outside"),
    "opens a socket": ("import socket\nsocket.create_connection(('127.0.0.1', 22), timeout=1)", "failed",
                       "socket.__new__ is not allowed"),
    "spawns a shell": ("import subprocess\nsubprocess.run(['sh', '-c', 'touch /tmp/aigc_sandbox_shell'])", "failed",
                       "subprocess.Popen is not allowed"),
    "os.system": ("import os\nos.system('touch /tmp/aigc_sandbox_shell')", "failed", "os.system is not allowed"),
    "raises its limits": ("import resource\nresource.setrlimit(resource.RLIMIT_CPU, (10 ** 6, 10 ** 6))", "failed",
                          "not allowed"),
    "kills its parent": ("import os, signal\nos.kill(os.getppid(), signal.SIGKILL)", "failed",
                         "signalling another process"),
    "kills everyone": ("import os, signal\nos.kill(-1, signal.SIGKILL)", "failed", "signalling another process"),
    "kills itself": ("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)", "crashed", "SIGKILL"),
    "exit(0)": ("exit(0)", "failed", "exited before its end"),
    "sys.exit in the tests": ("import sys\nassert 1 + 1 == 2\nsys.exit(0)\nassert False", "failed", "exited before"),
    "raise SystemExit": ("raise SystemExit", "failed", "exited before its end"),
    "os._exit(0)": ("import os\nos._exit(0)", "failed", "exited before its end"),
    "atexit hook": ("import atexit, os\natexit.register(lambda: os._exit(0))\nraise ValueError('bad')", "failed",
                    "ValueError: bad"),
    "too many open files": ("handles = [open(f'f{i}.txt', 'w') for i in range(1000)]", "failed",
                            "Too many open files"),
    "a file too large": ("open('big.bin', 'wb').write(b'x' * (4 << 20))", "limit", "a file over"),
    "ctypes": ("import ctypes\nctypes.CDLL(None).system(b'touch /tmp/aigc_sandbox_shell')", "failed",
               "ctypes.dlopen is not allowed"),
    "syntax error": ("def f(:\n    pass", "failed", "SyntaxError"),
}


def worker_children(box):
    """Processes whose parent is one of the box's workers (children that outlived their run)."""
    workers = {worker.process.pid for worker in box._workers}
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) in workers:
                found.append(int(entry))
    return found


def sandbox_dirs(box):
    return {name for name in os.listdir(box.root) if name.startswith("aigc-sandbox-")}


@pytest.fixture(scope="module")
def box(tmp_path_factory):
    # its own root for the working directories: other tests' sandboxes run at the same time
    with Sandbox(workers=2, limits=LIMITS, root=str(tmp_path_factory.mktemp("sandbox_root"))) as sandbox:
        yield sandbox


@pytest.fixture
def victim(tmp_path):
    path = tmp_path / "victim" / "keep.txt"
    path.parent.mkdir()
    path.write_text("precious")
    return str(path)


def test_every_hostile_program_is_contained_with_the_right_verdict(box, victim):
    names = list(HOSTILE)
    programs = [f"import os\nVICTIM = {victim!r}\n" + HOSTILE[name][0] for name in names]
    verdicts = box.run_many(programs)
    for name, verdict in zip(names, verdicts):
        _, status, detail = HOSTILE[name]
        assert verdict.status in (status if isinstance(status, tuple) else (status,)), (name, verdict)
        assert detail in verdict.detail, (name, verdict)
    assert open(victim).read() == "precious"
    for escaped in ("/tmp/aigc_sandbox_escape.txt", "/tmp/aigc_sandbox_shell"):
        assert not os.path.exists(escaped)
    assert worker_children(box) == [] and sandbox_dirs(box) == set()
    assert box.run("assert sum(range(10)) == 45").passed  # the workers still serve


def test_a_program_passes_only_by_running_to_its_end(box):
    good = box.run("def add(a, b):\n    return a + b\nassert add(2, 3) == 5\nprint('done')")
    assert good.passed and good.output == "done\n" and good.detail == ""
    failed = box.run("def add(a, b):\n    return a - b\nassert add(2, 3) == 5, 'add is wrong'")
    assert failed.status == "failed" and failed.detail == "AssertionError: add is wrong"
    # files written inside its own directory are fine, and gone afterwards
    assert box.run("import os, tempfile\nopen('notes.txt', 'w').write('hi')\n"
                   "tempfile.NamedTemporaryFile().write(b'x')\nassert os.listdir('.')").passed
    threads = box.run("import threading\nout = []\nt = threading.Thread(target=out.append, args=(1,))\n"
                      "t.start(); t.join()\nassert out == [1]")
    assert threads.passed, threads
    environment = box.run("import os\nassert set(os.environ) <= {'PATH', 'LANG', 'HOME', 'TMPDIR', 'LC_CTYPE'}, "
                          "sorted(os.environ)")
    assert environment.passed, environment


def kernel_guards(box):
    probe = box.run("print(open('/proc/self/status').read().split('Seccomp:')[1].split()[0])", audit_hook=False)
    return probe.output.strip() == "2"


def test_the_kernel_layers_hold_without_the_audit_hook(box, victim):
    """seccomp and Landlock on their own: what C code (which the audit hook never sees) meets."""
    if not kernel_guards(box):
        pytest.skip("no seccomp filter on this platform (Linux x86_64 only)")
    cases = {
        "import os\nos.fork()": "Operation not permitted",
        "import os\nos.execv('/bin/sh', ['sh', '-c', 'true'])": "Operation not permitted",
        "import socket\nsocket.socket()": "Operation not permitted",
        "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)": "Operation not permitted",
        "import ctypes\nassert ctypes.CDLL(None).system(b'touch /tmp/aigc_sandbox_shell') == 0": "AssertionError",
    }
    landlock = box.run("open('/tmp/aigc_sandbox_escape.txt', 'w')", audit_hook=False)
    if "Permission denied" in landlock.detail:  # Landlock enabled in this kernel
        cases[f"import os\nos.remove({victim!r})"] = "Permission denied"
    for program, detail in cases.items():
        verdict = box.run(program, audit_hook=False)
        assert verdict.status == "failed" and detail in verdict.detail, (program, verdict)
    assert open(victim).read() == "precious" and not os.path.exists("/tmp/aigc_sandbox_shell")
    assert not os.path.exists("/tmp/aigc_sandbox_escape.txt") or "Permission denied" not in landlock.detail


def test_a_lost_worker_is_replaced_and_its_program_judged_crashed(box):
    worker_pids = [worker.process.pid for worker in box._workers]
    killer = threading.Timer(0.5, lambda: [os.kill(pid, signal.SIGKILL) for pid in worker_pids])
    killer.start()
    verdicts = box.run_many(["import time\ntime.sleep(2)"] * 2)
    killer.join()
    assert [v.status for v in verdicts] == ["crashed", "crashed"]
    assert all("worker" in v.detail for v in verdicts)
    assert box.run("assert True").passed
    assert not {w.process.pid for w in box._workers} & set(worker_pids)


def test_programs_run_in_parallel_over_the_workers(box):
    """While one worker's program sleeps the other worker takes the next: both serve."""
    verdicts = box.run_many(["import os, time\ntime.sleep(0.3)\nprint(os.getppid())"] * 4)
    assert all(v.passed for v in verdicts)
    assert {v.output for v in verdicts} == {f"{w.process.pid}\n" for w in box._workers}
