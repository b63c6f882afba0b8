"""HTTP(S) downloads with checksums and resume (:func:`download_url`), and file checksums.

:func:`download_url` fetches with ``urllib`` into ``<file>.part``, resumes an
interrupted transfer with an HTTP ``Range`` request (restarting cleanly when the server
ignores it), verifies the MD5/SHA-256 when given, and only then renames the file into
place, so a file at the final path is always complete and verified. Users import these
names from :mod:`spikeflow.data.download` (or :mod:`spikeflow.data`), which also holds
the archive extraction.
"""

from __future__ import annotations

import hashlib
import os
from http.client import HTTPException
from pathlib import Path
from typing import Any
from urllib.error import HTTPError, URLError
from urllib.parse import urlparse
from urllib.request import Request, urlopen

from spikeflow.errors import ConfigurationError, SpikeflowError

__all__ = ["DownloadError", "check_integrity", "download_url", "file_hash"]

#: Bytes read or written at a time (downloads, hashes, archive members).
_CHUNK = 1 << 20


class DownloadError(SpikeflowError, OSError):
    """A download failed, or the file's checksum is not the expected one."""

    __module__ = "spikeflow.data.download"  # where users import it from


def file_hash(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    """The hex digest of a file (``algorithm``: any ``hashlib`` name, e.g. md5, sha256)."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def check_integrity(
    path: str | os.PathLike, md5: str | None = None, sha256: str | None = None
) -> bool:
    """True when ``path`` exists and matches every checksum given."""
    if not os.path.isfile(path):
        return False
    if md5 is not None and file_hash(path, "md5") != md5.lower():
        return False
    return sha256 is None or file_hash(path, "sha256") == sha256.lower()


def _progress(total: int | None, initial: int, name: str, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, unit="B", unit_scale=True, desc=name)


def _transfer(url: str, part: Path, timeout: float, progress: bool) -> bool:
    """One attempt; returns True when the whole body arrived (False: try again)."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": "spikeflow"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        resp = urlopen(Request(url, headers=headers), timeout=timeout)
    except HTTPError as exc:
        if exc.code == 416 and offset:  # nothing left to send: the .part is complete
            return True
        raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    with resp:
        mode = "wb"
        if offset and resp.status == 206:
            content_range = resp.headers.get("Content-Range", "")
            start = content_range.split()[1].split("-")[0] if " " in content_range else ""
            if start == str(offset):
                mode = "ab"
            else:
                offset = 0  # a range we did not ask for: start again
                resp.close()
                part.unlink()
                return False
        elif resp.status != 200 and resp.status != 206:
            raise DownloadError(f"{url}: unexpected HTTP status {resp.status}")
        else:
            offset = 0 if resp.status == 200 else offset
        length = resp.headers.get("Content-Length")
        expected = int(length) if length is not None else None
        bar = _progress(None if expected is None else expected + offset, offset, part.stem,
                        progress)  # fmt: skip
        got = 0
        try:
            with open(part, mode) as fh:
                while True:
                    try:
                        block = resp.read(_CHUNK)
                    except (HTTPException, OSError):
                        return False
                    if not block:
                        break
                    fh.write(block)
                    got += len(block)
                    if bar is not None:
                        bar.update(len(block))
        finally:
            if bar is not None:
                bar.close()
        return expected is None or got >= expected


def download_url(
    url: str,
    path: str | os.PathLike,
    *,
    md5: str | None = None,
    sha256: str | None = None,
    retries: int = 3,
    timeout: float = 60.0,
    progress: bool = True,
) -> Path:
    """Download ``url`` to ``path``, resuming and verifying; returns ``path``.

    An existing ``path`` that matches the checksums (or any existing file, when none is
    given) is kept. Partial data goes to ``<path>.part``; each of the ``retries`` extra
    attempts resumes it with ``Range: bytes=<size>-``.

    Raises:
        DownloadError: every attempt failed, the server answered with an error, or the
            finished file's checksum differs (the bad file is deleted).
    """
    scheme = urlparse(url).scheme
    if scheme not in ("http", "https"):
        raise ConfigurationError(f"only http(s) URLs can be downloaded; got {url!r}")
    path = Path(path)
    if path.exists() and ((md5 is None and sha256 is None) or check_integrity(path, md5, sha256)):
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    for _ in range(retries + 1):
        try:
            done = _transfer(url, part, timeout, progress)
        except (URLError, HTTPException, TimeoutError, ConnectionError) as exc:
            last, done = exc, False
        else:
            last = None
        if done:
            break
    else:
        raise DownloadError(
            f"{url}: download incomplete after {retries + 1} attempts"
            + (f" ({last})" if last else "") + f"; partial data kept in {part} for resuming"
        )  # fmt: skip
    for name, want in (("md5", md5), ("sha256", sha256)):
        if want is not None:
            found = file_hash(part, name)
            if found != want.lower():
                part.unlink()
                raise DownloadError(
                    f"{url}: {name} of the downloaded file is {found}, expected {want} "
                    "(the file was deleted; try again, or check the URL)"
                )
    os.replace(part, path)
    return path
