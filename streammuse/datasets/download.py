"""Checksum-verified download of POP909 from its official archive.

The official GitHub archive holds ``POP909-Dataset-master/POP909/NNN/NNN.mid`` (plus
per-song beat/chord/key annotations we do not use). Each MIDI is checked against
``pop909_sha256.json``, the sha256 of the 909 files as published (computed from an
unchanged copy of the source), before anything is written; then the files are written
flat as ``dest/NNN.mid``, the layout :func:`streammuse.datasets.pop909.load_corpus` reads.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import zipfile
from importlib import resources
from pathlib import Path

import httpx

from streammuse.errors import StreamMuseError

OFFICIAL_ZIP_URL = "https://github.com/music-x-lab/POP909-Dataset/archive/refs/heads/master.zip"
_MEMBER = re.compile(r"(?:^|/)POP909/(\d{3})/(\d{3})\.mid$")
_LICENSE = re.compile(r"^[^/]+/LICENSE$")


def expected_sha256() -> dict[str, str]:
    """The shipped manifest: ``{"NNN.mid": sha256 hex}`` for the 909 POP909 files."""
    text = resources.files("streammuse.datasets").joinpath("pop909_sha256.json").read_text()
    return json.loads(text)["files"]


def fetch(url: str, timeout_s: float = 60.0) -> bytes:
    """GET ``url`` (following redirects, as GitHub archive links need)."""
    try:
        with httpx.Client(follow_redirects=True, timeout=timeout_s) as client:
            response = client.get(url)
    except httpx.HTTPError as exc:
        raise StreamMuseError(f"cannot download {url}: {exc}") from None
    if response.status_code != 200:
        raise StreamMuseError(f"cannot download {url}: HTTP {response.status_code}")
    return response.content


def verified_members(archive: bytes, url: str, require_complete: bool = True) -> dict[str, bytes]:
    """The POP909 MIDI files in a zip archive, each checked against the manifest.

    Raises:
        StreamMuseError: not a zip, no POP909 files, a file whose checksum or name is
            not in the manifest, or (``require_complete``) files missing.
    """
    try:
        zf = zipfile.ZipFile(io.BytesIO(archive))
    except zipfile.BadZipFile:
        raise StreamMuseError(f"{url}: not a zip archive") from None
    expected = expected_sha256()
    found: dict[str, bytes] = {}
    with zf:
        for info in zf.infolist():
            match = _MEMBER.search(info.filename)
            if _LICENSE.match(info.filename):
                found["LICENSE"] = zf.read(info)
            if not match or match.group(1) != match.group(2):
                continue
            name = f"{match.group(2)}.mid"
            data = zf.read(info)
            if name not in expected:
                raise StreamMuseError(f"{url}: {info.filename} is not one of the 909 POP909 songs")
            digest = hashlib.sha256(data).hexdigest()
            if digest != expected[name]:
                raise StreamMuseError(
                    f"{url}: checksum mismatch for {info.filename} "
                    f"(sha256 {digest[:12]}..., expected {expected[name][:12]}...); nothing written"
                )
            found[name] = data
    n_songs = sum(1 for k in found if k.endswith(".mid"))
    if n_songs == 0:
        raise StreamMuseError(f"{url}: no POP909/NNN/NNN.mid files in the archive")
    missing = sorted(set(expected) - set(found))
    if require_complete and missing:
        raise StreamMuseError(
            f"{url}: archive lacks {len(missing)} of the 909 songs (first: {missing[0]}); nothing written"
        )
    return found


def download_pop909(
    dest: str | Path, url: str = OFFICIAL_ZIP_URL, require_complete: bool = True
) -> list[Path]:
    """Download POP909, verify every MIDI's sha256, write ``dest/NNN.mid``.

    Nothing is written unless every file in the archive verifies.

    Args:
        dest: output folder (created).
        url: the archive; the official GitHub zip by default.
        require_complete: fail unless all 909 songs are in the archive.

    Returns:
        The MIDI files written, sorted.
    """
    files = verified_members(fetch(url), url, require_complete)
    dest = Path(dest)
    try:
        dest.mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            (dest / name).write_bytes(data)
    except OSError as exc:
        raise StreamMuseError(f"{dest}: cannot write ({exc.strerror})") from None
    return sorted(dest / name for name in files if name.endswith(".mid"))
