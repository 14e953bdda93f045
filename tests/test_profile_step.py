"""experiments/profile_step.py: a real trace of the loop's step, kernels attributed to HLO."""
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_profile_lists_kernels_with_time_and_their_jax_operations():
    out = subprocess.run([sys.executable, "-m", "experiments.profile_step", "--config=configs/gpt_char.py:tiny",
                          "--calls=2", "--top=500"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    total = re.search(r"kernel time per optimizer step \(([\d.]+) ms in all, 2 calls x 1 steps\)", out.stdout)
    assert total and float(total.group(1)) > 0, out.stdout
    rows = re.findall(r"^\| ([\d.]+) \| (\S+) \| ([^|]*) \| ([^|]*) \|$", out.stdout, re.M)
    assert len(rows) >= 10
    # Every kernel row parses: one name per kernel (an async kernel's "end: NAME" event folded in).
    assert len(rows) == len(re.findall(r"^\| [\d.]+ \| .* \| .* \| .* \|$", out.stdout, re.M)), out.stdout
    times = [float(r[0]) for r in rows[:10]]
    assert times == sorted(times, reverse=True) and times[0] > 0
    # Most of the top kernels map back to a JAX operation of the model or the optimizer.
    assert sum(bool(r[3]) for r in rows[:10]) >= 5, out.stdout
    # Every worker thread's busy time (the union of its kernels' spans) lies within the wall time.
    wall = float(re.search(r"wall time per optimizer step ([\d.]+) ms", out.stdout).group(1))
    threads = re.findall(r"^\| (\S+) \| (\d+) \| ([\d.]+) \| (\d+)% \| [\d.]+ \|$", out.stdout, re.M)
    assert threads and all(float(busy) <= wall * 1.01 and int(share) <= 100 for _, _, busy, share in threads), out.stdout
    assert max(float(busy) for _, _, busy, _ in threads) > 0


def test_busy_time_is_the_union_of_a_threads_kernel_spans():
    from experiments.profile_step import busy_ns
    # (name, start, duration): [0, 10) and [5, 12) overlap, [11, 11) is empty, [20, 25) and [21, 22) nest.
    events = [("b", 5, 7), ("a", 0, 10), ("d", 21, 1), ("c", 20, 5), ("e", 11, 0)]
    assert busy_ns(events) == 12 + 5
    assert busy_ns([]) == 0
