"""POP909 download: served by a local HTTP server from a zip the test builds."""

import functools
import hashlib
import http.server
import threading
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from streammuse.cli.main import app
from streammuse.datasets.download import download_pop909, expected_sha256
from streammuse.errors import StreamMuseError

POP909 = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "pop909"
IDS = ["001", "002", "777"]


def _build_zip(path: Path, tamper: str | None = None) -> None:
    # The official archive's layout: POP909-Dataset-master/POP909/NNN/NNN.mid
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("POP909-Dataset-master/LICENSE", (POP909 / "LICENSE").read_text())
        zf.writestr("POP909-Dataset-master/README.md", "readme")
        for sid in IDS:
            data = (POP909 / f"{sid}.mid").read_bytes()
            if sid == tamper:
                data = data[:-1] + bytes([data[-1] ^ 1])
            zf.writestr(f"POP909-Dataset-master/POP909/{sid}/{sid}.mid", data)
            zf.writestr(f"POP909-Dataset-master/POP909/{sid}/beat_midi.txt", "0 1")


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "www"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def test_manifest_matches_shared_copy():
    manifest = expected_sha256()
    assert len(manifest) == 909 and sorted(manifest)[0] == "001.mid" and sorted(manifest)[-1] == "909.mid"
    assert manifest["042.mid"] == hashlib.sha256((POP909 / "042.mid").read_bytes()).hexdigest()


def test_download_verifies_and_extracts(server, tmp_path):
    root, base = server
    _build_zip(root / "master.zip")
    files = download_pop909(tmp_path / "out", f"{base}/master.zip", require_complete=False)
    assert [f.name for f in files] == ["001.mid", "002.mid", "777.mid"]
    for f in files:
        assert f.read_bytes() == (POP909 / f.name).read_bytes()
    assert (tmp_path / "out" / "LICENSE").read_text().startswith("MIT License")


def test_tampered_file_is_rejected(server, tmp_path):
    root, base = server
    _build_zip(root / "master.zip", tamper="002")
    with pytest.raises(StreamMuseError, match=r"checksum mismatch for POP909-Dataset-master/POP909/002/002\.mid"):
        download_pop909(tmp_path / "out", f"{base}/master.zip", require_complete=False)
    assert not (tmp_path / "out").exists()  # nothing written


def test_incomplete_archive_and_http_errors(server, tmp_path):
    root, base = server
    _build_zip(root / "master.zip")
    with pytest.raises(StreamMuseError, match="lacks 906 of the 909 songs"):
        download_pop909(tmp_path / "out", f"{base}/master.zip")
    with pytest.raises(StreamMuseError, match="HTTP 404"):
        download_pop909(tmp_path / "out", f"{base}/missing.zip")
    (root / "junk.zip").write_bytes(b"<html>not a zip</html>")
    with pytest.raises(StreamMuseError, match="not a zip archive"):
        download_pop909(tmp_path / "out", f"{base}/junk.zip")


def test_download_command(server, tmp_path):
    root, base = server
    _build_zip(root / "master.zip", tamper="777")
    result = CliRunner().invoke(app, ["datasets", "download", "--dest", str(tmp_path / "o"),
                                      "--url", f"{base}/master.zip", "--partial"])
    assert result.exit_code == 2
    assert "checksum mismatch" in result.output and "777.mid" in result.output
    _build_zip(root / "master.zip")
    result = CliRunner().invoke(app, ["datasets", "download", "--dest", str(tmp_path / "o"),
                                      "--url", f"{base}/master.zip", "--partial"])
    assert result.exit_code == 0, result.output
    assert "3 POP909 files" in result.output
