"""A server asked to listen where another already does: one `error:` line, exit 2, and
the other server is left alone."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from streammuse.cli.main import app

REPO = Path(__file__).resolve().parents[1]


def test_serve_on_a_port_in_use_is_one_line_exit_2():
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        result = CliRunner().invoke(app, ["serve", "--port", str(port)])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --port") and "in use" in lines[0]


def test_a_second_local_server_on_a_live_socket_is_refused(tmp_path):
    path = str(tmp_path / "server.sock")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "streammuse.serving.local", path, "--random-weights"]
    with socket.socket(socket.AF_UNIX) as live:
        live.bind(path)
        live.listen()
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)
        assert done.returncode == 2, done.stderr
        assert done.stderr.strip().count("\n") == 0 and done.stderr.startswith("error: ") and "listening" in done.stderr
        assert os.path.exists(path)  # the live server keeps its socket
    (tmp_path / "plain").write_text("not a socket")
    done = subprocess.run([*cmd[:3], str(tmp_path / "plain")], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 2 and "not a socket" in done.stderr
