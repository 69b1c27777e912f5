"""`streammuse doctor` measures this machine with the code the commands run and prints
each figure beside the README's."""

import re

from typer.testing import CliRunner

from streammuse.cli.main import app


def test_doctor_measures_the_engine_the_capacity_and_the_main_job_step():
    result = CliRunner().invoke(app, ["doctor"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    out = result.output
    assert re.search(r"machine: \d+ cores", out)
    gl3 = float(re.search(r"GL = 3 request, B = 1 \(ms\)\s*│\s*([\d.]+)", out).group(1))
    assert 0 < gl3 < 10_000
    capacity = int(re.search(r"capacity, app path, I = 1, GL = 3 \(sessions, of at most 8\)\s*│\s*(\d+)", out).group(1))
    assert 1 <= capacity <= 8
    assert "T(B) ms: 1: " in out and "budget I x tau = 250 ms" in out
