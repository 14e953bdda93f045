"""One training run per workdir: a lock file held from start to exit.

`WORKDIR/.lock` holds the holder's host, process id and start time. A second run on the same
workdir is refused with one line naming the holder. A lock left by a process that is gone (same
host, no such process) is stale and taken over. Readers (`experiments.sample`, restore_params)
never take it. Created with O_EXCL, so two runs starting at once cannot both win.
"""
from __future__ import annotations

import json
import os
import socket
import time

from aigc_jax.files import DiskFull, is_disk_full

LOCK_FILE = ".lock"


class WorkdirLocked(RuntimeError):
    """Another live run holds the workdir."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


class WorkdirLock:
    def __init__(self, workdir: str):
        self.path = os.path.join(workdir, LOCK_FILE)
        self.held = False

    def acquire(self) -> "WorkdirLock":
        me = {"host": socket.gethostname(), "pid": os.getpid(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._holder()
                if holder and holder.get("host") == me["host"] and holder.get("pid") == me["pid"]:
                    return self  # this process holds it already (an outer caller releases it)
                if holder and holder.get("host") == me["host"] and not _alive(int(holder.get("pid", -1))):
                    os.remove(self.path)  # stale: its process is gone
                    continue
                who = (f"process {holder.get('pid')} on {holder.get('host')}, since {holder.get('started')}"
                       if holder else "an unknown process")
                raise WorkdirLocked(f"workdir {os.path.dirname(self.path)!r} is in use by another run ({who}); "
                                    f"wait for it to finish, or use another --workdir (if that process is gone, "
                                    f"remove {self.path})") from None
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    json.dump(me, f)
            except OSError as e:  # e.g. a full disk: no half-written lock left behind
                os.remove(self.path)
                if is_disk_full(e):
                    raise DiskFull("the workdir lock", self.path, len(json.dumps(me))) from None
                raise
            self.held = True
            return self
        raise WorkdirLocked(f"could not take the lock {self.path}")

    def _holder(self):
        try:
            with open(self.path, encoding="utf-8") as f:
                return json.load(f)
        except (OSError, ValueError):
            return None

    def release(self) -> None:
        if self.held:
            self.held = False
            try:
                os.remove(self.path)
            except FileNotFoundError:
                pass

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
