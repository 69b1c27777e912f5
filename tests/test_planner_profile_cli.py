"""`streammuse profile`: bad input is one line and exit code 2, before any measuring."""

import pytest
from typer.testing import CliRunner

from streammuse.cli.main import app


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--gen-lens", "5-3"], "error: --gen-lens: '5-3' names no GL (the range is empty)"),
        (["--gen-lens", "0-4"], "error: --gen-lens: GL must be >= 1, got 0"),
        (["--samples", "5"], "error: --samples must be >= 20 for a p95 fit, got 5"),
        (["--setting", "mars"], "error: cannot read profile mars"),
    ],
)
def test_profile_bad_flags(args, message):
    result = CliRunner().invoke(app, ["profile", "--server", "inprocess", *args])
    assert result.exit_code == 2
    assert result.stderr.strip().startswith(message)
