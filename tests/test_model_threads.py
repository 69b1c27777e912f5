"""torch's thread count for offline work: the cores free right now, at least one."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from streammuse.errors import StreamMuseError
from streammuse.model import threads

ROOT = Path(__file__).resolve().parent.parent


def test_choose_threads_leaves_busy_cores_alone():
    assert threads.choose_threads(2, 0.0) == 2
    assert threads.choose_threads(2, 0.3) == 2  # a third of a core busy is still free
    assert threads.choose_threads(2, 0.4) == 1
    assert threads.choose_threads(2, 1.0) == 1
    assert threads.choose_threads(2, 9.0) == 1  # never fewer than one
    assert threads.choose_threads(16, 3.1) == 13


def test_cores_and_load_are_measured():
    cores = threads.usable_cores()
    assert 1 <= cores <= (os.cpu_count() or 1)
    assert 0.0 <= threads.busy_cores(0.05) <= (os.cpu_count() or 1) + 0.5


def test_configure_threads_applies_the_choice_before_torch_loads():
    code = ("import os; from streammuse.model.threads import configure_threads\n"
            "c = configure_threads(0.05); import torch\n"
            "print(c.threads, torch.get_num_threads(), torch.get_num_interop_threads(), os.environ['OMP_WAIT_POLICY'])")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "STREAMMUSE_THREADS": "1"}
    env.pop("OMP_WAIT_POLICY", None)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["1", "1", "1", "PASSIVE"]


def test_a_bad_override_is_one_line(monkeypatch):
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)  # restored after: configure_threads sets it
    monkeypatch.setenv("STREAMMUSE_THREADS", "many")
    with pytest.raises(StreamMuseError, match="STREAMMUSE_THREADS must be a whole number"):
        threads.configure_threads(0.0)
