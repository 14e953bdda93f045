"""experiments/bench_matmul.py: the step's products timed per library, on one core and on all."""
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(*flags):
    return subprocess.run([sys.executable, "experiments/bench_matmul.py", *flags], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def test_table_has_each_product_with_consistent_speed_ups():
    out = run("--libraries=xla,numpy", "--calls=3", "--repeats=1")
    assert out.returncode == 0, out.stderr[-2000:]
    rows = re.findall(r"^\| (\d+) x (\d+) x (\d+) \| [^|]+ \| (.+) \|$", out.stdout, re.M)
    assert [tuple(map(int, r[:3])) for r in rows] == [(768, 128, 384), (768, 128, 512), (768, 512, 128),
                                                     (128, 768, 512)], out.stdout
    for *_, cells in rows:
        values = [c.strip() for c in cells.split("|")]
        assert len(values) == 6  # two libraries x (1 core, all cores, speed-up)
        for one, every, speed_up in (values[:3], values[3:]):
            one, every, speed_up = float(one), float(every), float(speed_up.rstrip("x"))
            assert one > 0 and every > 0
            # The speed-up is the ratio of the unrounded times; GFLOP/s are rounded to integers
            # (each off by at most 0.5) and the speed-up to two decimals.
            assert abs(speed_up - every / one) <= 0.5 * (1 + speed_up) / one + 0.006


def test_unknown_library_is_named():
    out = run("--libraries=xla,blas")
    assert out.returncode != 0 and "unknown --libraries ['blas']" in out.stderr
