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
