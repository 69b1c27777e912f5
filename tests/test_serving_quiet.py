"""`streammuse serve` starts and stops the embedded Ray quietly: no token warning, no INFO
lines, no failed-task report at the end, no C-level dump on SIGTERM; Ray's logs stay in
the folder it names."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from streammuse.serving.raylocal import free_port

ENTRY = "import sys; sys.argv[0] = 'streammuse'; from streammuse.cli.main import run; run()"
ROOT = Path(__file__).resolve().parent.parent


def test_serve_starts_and_stops_quietly():
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
    proc = subprocess.Popen([sys.executable, "-c", ENTRY, "serve", "--port", str(port), "--num-cpus", "0.5"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = []
        while not any(line.startswith("Ray's logs:") for line in lines):
            line = proc.stdout.readline()
            assert line, (lines, proc.stderr.read())
            lines.append(line)
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10).status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    printed = "".join(lines) + out + err
    # It first measures what a replica carries through its app, then offers the running
    # deployment sessions through the whole HTTP path, restarts it with that figure, and
    # serves (docs/deploy.md, "Capacity").
    assert lines[0].startswith("capacity: ") and " sessions per replica at I=1, GL=3, 120 BPM" in lines[0], printed
    app_path = int(lines[0].split()[1])
    tried = [int(line.split()[0]) for line in lines[1:-3]]
    assert tried[0] == app_path and all(line.startswith("  ") and " sessions: the worst plays " in line
                                        for line in lines[1:-3]), printed
    through_path = int(lines[-3].removeprefix("capacity through the HTTP path: ").split()[0])
    # the figure fits, and one session more did not (unless it is the app figure, or 1, the floor)
    assert 1 <= through_path <= app_path, printed
    assert through_path in (app_path, 1) or through_path + 1 in tried, printed
    assert lines[-2].startswith(f"StreamMUSE serving at http://127.0.0.1:{port}"), printed
    assert out.strip().endswith("stopped"), printed
    for noise in ("INFO", "WARNING", "Token authentication", "graceful_shutdown", "raylet", "***", "SIGTERM"):
        assert noise not in printed, (noise, printed)
    logs = Path(lines[-1].split(":", 1)[1].strip())
    assert logs.is_dir() and any(logs.glob("raylet*")), logs
