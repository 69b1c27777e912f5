"""Ctrl-C on `streammuse replay`: exit 130, what was kept, and the command that finishes it."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ENTRY = "import sys; sys.argv[0] = 'streammuse'; from streammuse.cli.main import run; run()"
ROOT = Path(__file__).resolve().parent.parent


def _streammuse(args, **kw):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "100", "STREAMMUSE_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-c", ENTRY, *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def test_ctrl_c_keeps_finished_songs_and_prints_the_resume_command(tmp_path):
    args = ["replay", "testset", "--setting", "offline", "--random-weights", "--songs", "6", "--max-bars", "2",
            "--out", str(tmp_path)]
    proc = _streammuse(args)
    deadline = time.monotonic() + 240
    while not list(tmp_path.glob("*/done/*")):  # interrupt once the first song is kept
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    (run,) = tmp_path.iterdir()
    kept = len(list((run / "done").iterdir()))
    assert 1 <= kept < 6
    assert f"kept {kept} of 6 songs in {run}" in err, err
    command = "streammuse " + " ".join(args) + " --resume"
    assert err.rstrip().endswith(command), err
    assert "Traceback" not in err
    # the printed command finishes the same run folder
    done = _streammuse([*args, "--resume"])
    out, err = done.communicate(timeout=600)
    assert done.returncode == 0, err
    assert [p.name for p in tmp_path.iterdir()] == [run.name]
    assert len(list((run / "done").iterdir())) == 6
