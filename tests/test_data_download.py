"""Downloads against a local HTTP server on 127.0.0.1 (no network), and archive extraction
safety against archives crafted here."""

from __future__ import annotations

import hashlib
import io
import os
import re
import stat
import struct
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from spikeflow.data.download import (
    DownloadError,
    UnsafeArchiveError,
    download_url,
    extract_archive,
)
from spikeflow.errors import ConfigurationError

PAYLOAD = bytes(range(256)) * 4096 + b"tail"  # ~1 MiB
SHA = hashlib.sha256(PAYLOAD).hexdigest()
MD5 = hashlib.md5(PAYLOAD).hexdigest()


class _Handler(BaseHTTPRequestHandler):
    server_version = "test"

    def log_message(self, *args):  # keep test output clean
        pass

    def do_GET(self):
        srv = self.server
        srv.requests.append(dict(self.headers))
        if self.path != "/file.bin":
            self.send_error(404)
            return
        start = 0
        rng = self.headers.get("Range")
        if rng and not srv.ignore_range:
            start = int(rng.split("=")[1].split("-")[0])
            if start >= len(PAYLOAD):
                self.send_response(416)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
        else:
            self.send_response(200)
        body = PAYLOAD[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if srv.drops:
            srv.drops -= 1
            self.wfile.write(body[: len(body) // 2])  # the connection then closes early
            return
        self.wfile.write(body)


@pytest.fixture
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.requests, srv.drops, srv.ignore_range = [], 0, False
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)  # fmt: skip
    thread.start()
    guard = threading.Timer(30.0, srv.shutdown)  # bounded: stops itself whatever happens
    guard.start()
    yield srv, f"http://127.0.0.1:{srv.server_address[1]}"
    guard.cancel()
    srv.shutdown()
    srv.server_close()
    thread.join(5)


def test_download_verifies_checksums(server, tmp_path):
    srv, base = server
    out = download_url(f"{base}/file.bin", tmp_path / "f.bin", sha256=SHA, md5=MD5,
                       progress=False)  # fmt: skip
    assert out.read_bytes() == PAYLOAD and not (tmp_path / "f.bin.part").exists()
    download_url(f"{base}/file.bin", out, sha256=SHA, progress=False)
    assert len(srv.requests) == 1  # verified file kept, no second request


def test_resume_after_dropped_connection(server, tmp_path):
    srv, base = server
    srv.drops = 1
    out = download_url(f"{base}/file.bin", tmp_path / "f.bin", sha256=SHA, progress=False)
    assert out.read_bytes() == PAYLOAD
    assert len(srv.requests) == 2 and "Range" not in srv.requests[0]
    assert srv.requests[1]["Range"] == f"bytes={len(PAYLOAD) // 2}-"


def test_resume_across_calls_and_server_ignoring_range(server, tmp_path):
    srv, base = server
    srv.drops = 1
    with pytest.raises(DownloadError, match=r"kept in .*part"):
        download_url(f"{base}/file.bin", tmp_path / "f.bin", retries=0, progress=False)
    part = tmp_path / "f.bin.part"
    assert part.stat().st_size == len(PAYLOAD) // 2
    srv.ignore_range = True  # answers 200 with the whole body: start over, not append
    out = download_url(f"{base}/file.bin", tmp_path / "f.bin", sha256=SHA, progress=False)
    assert out.read_bytes() == PAYLOAD
    assert srv.requests[-1]["Range"] == f"bytes={len(PAYLOAD) // 2}-"


def test_complete_part_file_gets_416_and_is_verified(server, tmp_path):
    srv, base = server
    (tmp_path / "f.bin.part").write_bytes(PAYLOAD)
    out = download_url(f"{base}/file.bin", tmp_path / "f.bin", md5=MD5, progress=False)
    assert out.read_bytes() == PAYLOAD and len(srv.requests) == 1


def test_bad_checksum_and_http_errors(server, tmp_path):
    _, base = server
    with pytest.raises(DownloadError, match=r"sha256 .* expected 00"):
        download_url(f"{base}/file.bin", tmp_path / "f.bin", sha256="00" * 32, progress=False)
    assert not (tmp_path / "f.bin").exists() and not (tmp_path / "f.bin.part").exists()
    with pytest.raises(DownloadError, match="404"):
        download_url(f"{base}/missing", tmp_path / "g.bin", progress=False)
    with pytest.raises(ConfigurationError, match="http"):
        download_url("file:///etc/passwd", tmp_path / "h", progress=False)


# -- archives ---------------------------------------------------------------------------
def make_tar(path, members, mode="w"):
    with tarfile.open(path, mode) as tf:
        for m in members:
            info = tarfile.TarInfo(m["name"])
            info.type = m.get("type", tarfile.REGTYPE)
            info.linkname = m.get("link", "")
            data = m.get("data", b"")
            info.size = len(data) if info.type == tarfile.REGTYPE else 0
            tf.addfile(info, io.BytesIO(data) if info.type == tarfile.REGTYPE else None)
    return path


def test_safe_archives_extract(tmp_path):
    tgz = make_tar(tmp_path / "ok.tar.gz", [
        {"name": "Train", "type": tarfile.DIRTYPE},
        {"name": "Train/0/a.bin", "data": b"abc"},
        {"name": "./Train/1/b.bin", "data": b"xyz"},
        {"name": "Train/link", "type": tarfile.SYMTYPE, "link": "0/a.bin"},
        {"name": "Train/hard", "type": tarfile.LNKTYPE, "link": "Train/1/b.bin"},
    ], "w:gz")  # fmt: skip
    dest = extract_archive(tgz, tmp_path / "out")
    assert (dest / "Train/0/a.bin").read_bytes() == b"abc"
    assert os.readlink(dest / "Train/link") == "0/a.bin"
    assert (dest / "Train/link").read_bytes() == b"abc"
    assert (dest / "Train/hard").read_bytes() == b"xyz"
    zpath = tmp_path / "ok.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.writestr("Test/0/c.bin", b"123")
        zf.writestr("Test/1/", b"")
    extract_archive(zpath, tmp_path / "zout")
    assert (tmp_path / "zout/Test/0/c.bin").read_bytes() == b"123"
    assert (tmp_path / "zout/Test/1").is_dir()


@pytest.mark.parametrize("member,match", [
    ({"name": "/tmp/evil.txt", "data": b"x"}, "absolute"),
    ({"name": "../evil.txt", "data": b"x"}, r"'\.\.'"),
    ({"name": "a/../../evil.txt", "data": b"x"}, r"'\.\.'"),
    ({"name": "ln", "type": tarfile.SYMTYPE, "link": "/etc/passwd"}, "outside"),
    ({"name": "a/ln", "type": tarfile.SYMTYPE, "link": "../../etc"}, "outside"),
    ({"name": "hl", "type": tarfile.LNKTYPE, "link": "../evil.txt"}, "outside"),
    ({"name": "dev", "type": tarfile.CHRTYPE}, "device"),
    ({"name": "fifo", "type": tarfile.FIFOTYPE}, "device"),
])  # fmt: skip
def test_unsafe_tar_members_rejected_before_writing(tmp_path, member, match):
    tar = make_tar(tmp_path / "bad.tar", [{"name": "fine.txt", "data": b"ok"}, member])
    with pytest.raises(UnsafeArchiveError, match=match):
        extract_archive(tar, tmp_path / "out")
    assert not (tmp_path / "out" / "fine.txt").exists()  # nothing written at all
    assert not (tmp_path / "evil.txt").exists()


def test_chained_symlink_escape_rejected(tmp_path):
    # "d" -> "." is harmless alone, and "d/e" -> "../x" looks like "x" lexically, but on
    # disk "d/e" is "e" in the root, so its target is outside: caught when writing.
    tar = make_tar(tmp_path / "chain.tar", [
        {"name": "d", "type": tarfile.SYMTYPE, "link": "."},
        {"name": "d/e", "type": tarfile.SYMTYPE, "link": "../x"},
        {"name": "d/e/pwned", "data": b"x"},
    ])  # fmt: skip
    with pytest.raises(UnsafeArchiveError, match="outside"):
        extract_archive(tar, tmp_path / "root")
    assert not (tmp_path / "x").exists()
    assert not (tmp_path / "root").exists()  # "d", written first, is gone too


def test_symlink_made_to_escape_by_a_later_member_is_removed_and_refused(tmp_path):
    # "x" -> "d/../secret.txt" is inside the root when written (no "d" yet); the later
    # "d" -> "." makes it resolve to the root's parent: caught once all are written.
    (tmp_path / "secret.txt").write_text("outside")
    tar = make_tar(tmp_path / "late.tar", [
        {"name": "x", "type": tarfile.SYMTYPE, "link": "d/../secret.txt"},
        {"name": "d", "type": tarfile.SYMTYPE, "link": "."},
    ])  # fmt: skip
    with pytest.raises(UnsafeArchiveError, match="'x' resolve outside the root"):
        extract_archive(tar, tmp_path / "root")
    assert not os.path.lexists(tmp_path / "root" / "x")


def test_unsafe_zip_members_rejected(tmp_path):
    for name, data, attr, match in (
        ("../evil.txt", b"x", None, r"'\.\.'"),
        ("/abs.txt", b"x", None, "absolute"),
        ("ln", b"../../etc", stat.S_IFLNK | 0o777, "outside"),
        ("dev", b"", stat.S_IFCHR | 0o644, "device"),
    ):
        zpath = tmp_path / "bad.zip"
        with zipfile.ZipFile(zpath, "w") as zf:
            info = zipfile.ZipInfo(name)
            if attr is not None:
                info.external_attr = attr << 16
            zf.writestr(info, data)
        with pytest.raises(UnsafeArchiveError, match=match):
            extract_archive(zpath, tmp_path / "zout")
    assert not (tmp_path / "evil.txt").exists()


# -- bounds and atomicity ----------------------------------------------------------------
def _central_size(raw: bytes, member: str, declared: int) -> bytes:
    """The zip ``raw`` with ``member``'s uncompressed size in its central header forged."""
    pos = raw.find(b"PK\x01\x02")
    while raw[pos + 46 : pos + 46 + len(member)] != member.encode():
        pos = raw.find(b"PK\x01\x02", pos + 4)
    return raw[: pos + 24] + declared.to_bytes(4, "little") + raw[pos + 28 :]


@pytest.mark.parametrize("method", [zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA])
def test_zip_members_without_an_expansion_bound_are_refused(tmp_path, method):
    # bzip2 expands a million-fold: no bound holds, so such members are not read at all
    zpath = tmp_path / "other.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.writestr("a/ok.bin", b"fine")
        zf.writestr("a/zeros.bin", bytes(1 << 20), compress_type=method)
    with pytest.raises(UnsafeArchiveError) as info:
        extract_archive(zpath, tmp_path / "out")
    message = str(info.value)
    assert "member 'a/zeros.bin' (at byte offset " in message
    assert f"uses ZIP compression method {method} " in message
    assert "only stored and deflate members are extracted" in message
    assert not (tmp_path / "out").exists()  # not even the deflate member


def test_a_zip_member_declaring_more_than_deflate_can_hold_is_refused(tmp_path):
    zpath = tmp_path / "bomb.zip"
    with zipfile.ZipFile(zpath, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("first.bin", b"x" * 100)
        zf.writestr("zeros.bin", bytes(2_000_000))  # deflate's best: ~1000 per byte
    info = zipfile.ZipFile(zpath).getinfo("zeros.bin")
    assert info.file_size <= 1032 * info.compress_size
    extract_archive(zpath, tmp_path / "honest")  # at deflate's best ratio: extracts
    assert (tmp_path / "honest" / "zeros.bin").stat().st_size == 2_000_000
    forged = 1032 * info.compress_size + 1
    zpath.write_bytes(_central_size(zpath.read_bytes(), "zeros.bin", forged))
    where = r"member 'zeros\.bin' \(at byte offset \d+\)"
    with pytest.raises(UnsafeArchiveError, match=rf"{where} declares {forged} bytes, more than "
                       rf"its {info.compress_size} "):  # fmt: skip
        extract_archive(zpath, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_declared_sizes_beyond_max_bytes_or_the_free_space_are_refused(tmp_path, monkeypatch):
    import shutil

    from spikeflow.data import download

    tgz = make_tar(tmp_path / "big.tar.gz", [
        {"name": "small.bin", "data": b"abc"},
        {"name": "d/zeros.bin", "data": bytes(3_000_000)},
    ], "w:gz")  # fmt: skip
    assert tgz.stat().st_size < 20_000
    # the total is over the limit, not the largest file: the message says which is which
    largest = r"\(the largest file: 'd/zeros\.bin', 3000000 bytes\)"
    with pytest.raises(UnsafeArchiveError, match=rf"its files declare 3000003 bytes in all, "
                       rf"more than max_bytes=3000002 {largest}$"):  # fmt: skip
        extract_archive(tgz, tmp_path / "out", max_bytes=3_000_002)
    assert not (tmp_path / "out").exists()
    extract_archive(tgz, tmp_path / "out", max_bytes=3_000_003)
    assert (tmp_path / "out" / "d" / "zeros.bin").stat().st_size == 3_000_000
    real = shutil.disk_usage
    monkeypatch.setattr(download.shutil, "disk_usage",
                        lambda p: real(p)._replace(free=2_999_999))  # fmt: skip
    with pytest.raises(UnsafeArchiveError, match=rf"in all \(\d+ on disk in \d+-byte blocks\), "
                       rf"more than the 2999999 bytes free in {tmp_path / 'full'} {largest}; "
                       "free space"):  # fmt: skip
        extract_archive(tgz, tmp_path / "full")
    assert not (tmp_path / "full").exists()
    for bad in (-1, 1.5, True):
        with pytest.raises(ConfigurationError, match="max_bytes"):
            extract_archive(tgz, tmp_path / "out", max_bytes=bad)


def test_a_member_longer_than_it_declares_is_refused(tmp_path):
    from spikeflow.data.download import _copy_declared, _Entry

    out = io.BytesIO()
    _copy_declared(io.BytesIO(b"12345"), out, _Entry(("f",), "file", size=5), tmp_path)
    assert out.getvalue() == b"12345"
    with pytest.raises(UnsafeArchiveError, match="'a/f' holds more than the 4 bytes it declares"):
        _copy_declared(io.BytesIO(b"12345"), io.BytesIO(), _Entry(("a", "f"), "file", size=4),
                       tmp_path)  # fmt: skip


def test_an_interrupted_extraction_leaves_the_destination_as_it_was(tmp_path, monkeypatch):
    from spikeflow.data import download

    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "kept.txt").write_text("before")
    tgz = make_tar(tmp_path / "a.tar.gz", [
        {"name": "Train/0/a.bin", "data": b"abc"},
        {"name": "Train/1/b.bin", "data": b"xyz"},
    ], "w:gz")  # fmt: skip
    copy, calls = download._copy_declared, []

    def killed_on_the_second(*args):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        copy(*args)

    monkeypatch.setattr(download, "_copy_declared", killed_on_the_second)
    with pytest.raises(KeyboardInterrupt):
        extract_archive(tgz, dest)
    assert sorted(p.name for p in dest.iterdir()) == ["kept.txt"]  # no half of Train/
    monkeypatch.undo()
    extract_archive(tgz, dest)
    assert sorted(p.name for p in dest.iterdir()) == ["Train", "kept.txt"]
    assert (dest / "Train/1/b.bin").read_bytes() == b"xyz"


def test_an_existing_link_in_the_destination_is_not_written_through(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "Train").symlink_to(outside)
    (dest / "inner").mkdir()
    (dest / "Test").symlink_to("inner")  # a link inside the destination: merged through
    ok = make_tar(tmp_path / "ok.tar", [{"name": "Test/a.bin", "data": b"a"}])
    extract_archive(ok, dest)
    assert (dest / "inner" / "a.bin").read_bytes() == b"a"
    bad = make_tar(tmp_path / "bad.tar", [{"name": "Train/a.bin", "data": b"a"}])
    with pytest.raises(UnsafeArchiveError, match=r"existing link .*Train to outside"):
        extract_archive(bad, dest)
    assert list(outside.iterdir()) == []


def test_hard_links_count_at_the_size_of_the_file_they_copy(tmp_path):
    # each link is written as a copy: one 1000-byte file and 10 links are 11000 bytes
    members = [{"name": "d/a.bin", "data": bytes(range(250)) * 4}]
    members += [{"name": f"h{i}", "type": tarfile.LNKTYPE, "link": "d/a.bin"} for i in range(10)]
    tar = make_tar(tmp_path / "links.tar", members)
    largest = r"\(the largest file: 'd/a\.bin', 1000 bytes\)"
    with pytest.raises(UnsafeArchiveError, match=r"declare 11000 bytes in all, more than "
                       rf"max_bytes=10999 {largest}"):  # fmt: skip
        extract_archive(tar, tmp_path / "out", max_bytes=10_999)
    assert not (tmp_path / "out").exists()
    extract_archive(tar, tmp_path / "out", max_bytes=11_000)
    assert (tmp_path / "out" / "h9").read_bytes() == bytes(range(250)) * 4
    for link in ("later.bin", "d"):  # a member after the link, a folder
        bad = make_tar(tmp_path / "bad.tar", [
            {"name": "d", "type": tarfile.DIRTYPE},
            {"name": "h", "type": tarfile.LNKTYPE, "link": link},
            {"name": "later.bin", "data": b"x"},
        ])  # fmt: skip
        with pytest.raises(UnsafeArchiveError, match=rf"hard link 'h' -> '{link}' does not name "
                           "an earlier file member"):  # fmt: skip
            extract_archive(bad, tmp_path / "bad")


def test_a_tar_whose_last_member_is_a_zip_is_extracted_as_the_tar(tmp_path):
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as zf:
        zf.writestr("inner.txt", b"inner")
    tar = make_tar(tmp_path / "outer.tar", [
        {"name": "data.txt", "data": b"outer"},
        {"name": "sub.zip", "data": inner.getvalue()},
    ])  # fmt: skip
    assert zipfile.is_zipfile(tar)  # zipfile finds the ZIP's directory at the end
    dest = extract_archive(tar, tmp_path / "out")
    assert sorted(p.name for p in dest.iterdir()) == ["data.txt", "sub.zip"]
    assert (dest / "sub.zip").read_bytes() == inner.getvalue()
    stub = tmp_path / "selfextracting.zip"  # a ZIP behind a program stub is still one
    stub.write_bytes(b"MZ" + bytes(510) + inner.getvalue())
    assert (extract_archive(stub, tmp_path / "zout") / "inner.txt").read_bytes() == b"inner"


@pytest.mark.parametrize("members,match", [
    ([{"name": "x", "type": tarfile.DIRTYPE}, {"name": "x", "data": b"abc"}],
     "member 'x' is a file, but an earlier member made it a folder"),
    ([{"name": "x", "data": b"abc"}, {"name": "x", "type": tarfile.DIRTYPE}],
     "member 'x' is a folder, but an earlier member is a file of that name"),
    ([{"name": "x", "data": b"abc"}, {"name": "x/y", "data": b"abc"}],
     "member 'x/y' lies in a folder that an earlier member made a file"),
])  # fmt: skip
def test_a_name_that_is_both_a_file_and_a_folder_is_named(tmp_path, members, match):
    from spikeflow.errors import DataFormatError

    tar = make_tar(tmp_path / "both.tar", [{"name": "ok.txt", "data": b"ok"}, *members])
    with pytest.raises(DataFormatError, match=rf"both\.tar: {match}"):
        extract_archive(tar, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_folder_of_the_archive_replaces_a_file_of_the_destination(tmp_path):
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "x").write_text("an older file")
    (dest / "w").write_text("kept")
    (dest / "y").symlink_to("w")
    (dest / "z").write_text("old")
    tar = make_tar(tmp_path / "a.tar", [
        {"name": "a", "data": b"1"},
        {"name": "x/in.txt", "data": b"2"},
        {"name": "y/in.txt", "data": b"3"},
        {"name": "z", "data": b"new"},
    ])  # fmt: skip
    extract_archive(tar, dest)  # was: NotADirectoryError with "a" moved in, "z" not
    assert (dest / "x" / "in.txt").read_bytes() == b"2"
    assert not (dest / "y").is_symlink() and (dest / "y" / "in.txt").read_bytes() == b"3"
    assert (dest / "z").read_bytes() == b"new" and (dest / "a").read_bytes() == b"1"
    assert (dest / "w").read_text() == "kept"


@pytest.mark.skipif(os.name != "posix", reason="flock")
def test_a_killed_extractions_staging_folder_is_removed_and_a_live_ones_kept(tmp_path):
    import fcntl
    import time

    dest = tmp_path / "out"
    killed, live, young = (dest / f".spikeflow-unpacking-{n}" for n in ("k", "l", "y"))
    for folder in (killed, live, young):
        (folder / "Train").mkdir(parents=True)
        (folder / "Train" / "part.bin").write_bytes(bytes(1000))
    for folder in (killed, live):
        os.utime(folder, (time.time() - 600,) * 2)
    fd = os.open(live, os.O_RDONLY)  # as a live extract_archive holds its own
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        extract_archive(make_tar(tmp_path / "a.tar", [{"name": "a", "data": b"1"}]), dest)
    finally:
        os.close(fd)
    assert sorted(p.name for p in dest.iterdir()) == [live.name, young.name, "a"]


@pytest.mark.skipif(os.name != "posix", reason="flock")
def test_a_running_extraction_locks_its_staging_folder(tmp_path, monkeypatch):
    import time

    from spikeflow.data import _staging, download

    dest = tmp_path / "out"
    copy = download._copy_declared

    def another_call_starts(*args):  # mid-way, however long it has been running
        (staging,) = dest.glob(".spikeflow-unpacking-*")
        os.utime(staging, (time.time() - 600,) * 2)
        _staging.remove_stale_staging(dest, download._UNPACKING)
        copy(*args)

    monkeypatch.setattr(download, "_copy_declared", another_call_starts)
    tar = make_tar(tmp_path / "a.tar", [{"name": "d/a", "data": b"1"}, {"name": "b", "data": b"2"}])
    extract_archive(tar, dest)
    assert (dest / "d" / "a").read_bytes() == b"1" and (dest / "b").read_bytes() == b"2"


def test_a_refused_extraction_leaves_no_destination_it_created(tmp_path):
    bad = make_tar(tmp_path / "bad.tar", [{"name": "/abs", "data": b"1"}])
    with pytest.raises(UnsafeArchiveError, match="absolute"):
        extract_archive(bad, tmp_path / "new" / "dest")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.tar"]
    (tmp_path / "kept").mkdir()
    with pytest.raises(UnsafeArchiveError, match="absolute"):
        extract_archive(bad, tmp_path / "kept")
    assert (tmp_path / "kept").is_dir()  # there before: stays


def test_a_truncated_or_damaged_archive_is_named(tmp_path, monkeypatch):
    from spikeflow.data import download
    from spikeflow.errors import DataFormatError

    data = bytes(range(256)) * 2000  # (compresses: the gzip stream is cut mid-member)
    tgz = make_tar(tmp_path / "cut.tar.gz", [{"name": "big.bin", "data": data}], "w:gz")
    tgz.write_bytes(tgz.read_bytes()[: tgz.stat().st_size // 2])  # an interrupted download
    with pytest.raises(DataFormatError, match=r"cut\.tar\.gz is damaged or truncated: EOFError"):
        extract_archive(tgz, tmp_path / "out")
    zpath = tmp_path / "bad.zip"
    with zipfile.ZipFile(zpath, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("a.bin", data)
    raw = bytearray(zpath.read_bytes())
    raw[100] ^= 0xFF  # inside a.bin's deflate data
    zpath.write_bytes(bytes(raw))
    with pytest.raises(DataFormatError, match=r"bad\.zip is damaged or truncated \(reading "
                       r"member 'a\.bin'\): (BadZipFile|error)"):  # fmt: skip
        extract_archive(zpath, tmp_path / "out")
    assert not (tmp_path / "out").exists()

    def disk_full(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(download, "_copy_declared", disk_full)
    with pytest.raises(OSError, match="No space left") as info:  # the disk's: as it is
        extract_archive(make_tar(tmp_path / "ok.tar", [{"name": "a", "data": b"1"}]),
                        tmp_path / "out")  # fmt: skip
    assert not isinstance(info.value, DataFormatError)


def test_an_encrypted_zip_member_is_named_before_anything_is_written(tmp_path):
    from spikeflow.errors import DataFormatError

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("plain.txt", b"ok")
        zf.writestr("secret.txt", b"hello")
    raw = bytearray(buffer.getvalue())
    for header in (raw.rfind(b"PK\x03\x04"), raw.rfind(b"PK\x01\x02")):  # secret.txt's
        raw[header + (6 if raw[header + 2] == 3 else 8)] |= 1  # the "encrypted" flag
    (tmp_path / "enc.zip").write_bytes(bytes(raw))
    with pytest.raises(DataFormatError, match=r"member 'secret\.txt' .* is encrypted"):
        extract_archive(tmp_path / "enc.zip", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_zip_symlink_declaring_a_target_longer_than_a_path_is_refused_unread(tmp_path):
    # the target is read whole into memory and counts in no total: 1032x its bytes
    zpath = tmp_path / "link.zip"
    with zipfile.ZipFile(zpath, "w", zipfile.ZIP_DEFLATED) as zf:
        info = zipfile.ZipInfo("ln")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        info.compress_type = zipfile.ZIP_DEFLATED
        zf.writestr(info, b"a/" * 50_000)
    assert zpath.stat().st_size < 1000
    with pytest.raises(UnsafeArchiveError, match="symlink 'ln' declares a 100000-byte target"):
        extract_archive(zpath, tmp_path / "out")


def test_the_free_space_check_counts_each_file_in_whole_blocks(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from spikeflow.data import download

    tar = make_tar(tmp_path / "small.tar", [{"name": f"f{i}", "data": b"x"} for i in range(200)])
    monkeypatch.setattr(download.os, "statvfs", lambda p: SimpleNamespace(f_frsize=4096))
    for free in (200 * 4096 - 1, 200 * 4096):  # 200 bytes declared, 200 blocks needed
        monkeypatch.setattr(download.shutil, "disk_usage",
                            lambda p, free=free: SimpleNamespace(free=free))  # fmt: skip
        if free < 200 * 4096:
            with pytest.raises(UnsafeArchiveError, match=r"declare 200 bytes in all "
                               rf"\(819200 on disk in 4096-byte blocks\), more than the {free} "
                               "bytes free"):  # fmt: skip
                extract_archive(tar, tmp_path / "out")
        else:
            assert len(list(extract_archive(tar, tmp_path / "out").iterdir())) == 200


# -- member counts ------------------------------------------------------------------------
def _zip_of_empty_files(path, count: int, folder: str = "") -> bytes:
    with zipfile.ZipFile(path, "w") as zf:
        for k in range(count):
            zf.writestr(f"{folder}f{k}", b"")
    return path.read_bytes()


def _declared_count(raw: bytes, count: int) -> bytes:
    """The zip ``raw`` (no comment) with its end record declaring ``count`` members."""
    assert raw[-22:-18] == b"PK\x05\x06"
    field = count.to_bytes(2, "little")
    return raw[:-14] + field + field + raw[-10:]


def test_more_members_than_max_members_are_refused_before_anything_is_written(
    tmp_path, monkeypatch
):
    """A million empty files (a ZIP of tens of MB) would cost a million inodes and
    minutes: an archive of more members than ``max_members`` is refused naming it and
    the count, before any member is written (a ZIP before zipfile parses it)."""
    from spikeflow.data import download

    zpath = tmp_path / "many.zip"
    raw = _zip_of_empty_files(zpath, 11)
    tpath = make_tar(tmp_path / "many.tar.gz", [{"name": f"f{k}"} for k in range(11)], "w:gz")
    with pytest.raises(UnsafeArchiveError, match=rf"^{re.escape(str(zpath))}: holds more "
                       r"than 10 members \(its central directory\), more than max_members=10; "
                       "pass a larger"):  # fmt: skip
        extract_archive(zpath, tmp_path / "out", max_members=10)
    stopped = r"\(counting stopped at member 11, 'f10', at byte offset 5120 "
    with pytest.raises(UnsafeArchiveError, match=rf"^{re.escape(str(tpath))}: holds more than "
                       rf"max_members=10 members {stopped}"):  # fmt: skip
        extract_archive(tpath, tmp_path / "out", max_members=10)
    assert not (tmp_path / "out").exists()
    for archive in (zpath, tpath):
        out = tmp_path / archive.name.split(".")[0] / archive.suffix
        assert extract_archive(archive, out, max_members=11) == out
        assert sorted(p.name for p in out.iterdir()) == sorted(f"f{k}" for k in range(11))
    # an end record declaring fewer members than its central directory holds: counted
    # there (what zipfile parses), behind 1000 bytes of a self-extractor's stub too
    lying = tmp_path / "lying.zip"
    lying.write_bytes(b"\x7fELF" + bytes(996) + _declared_count(raw, 1))
    assert len(zipfile.ZipFile(lying).infolist()) == 11

    def never(*args, **kwargs):
        raise AssertionError("the archive was parsed before it was counted")

    monkeypatch.setattr(download.zipfile, "ZipFile", never)
    with pytest.raises(UnsafeArchiveError, match=r"holds more than 10 members \(its central"):
        extract_archive(lying, tmp_path / "out", max_members=10)
    assert not (tmp_path / "out").exists()
    for bad in (0, -1, 1.5, True, "10"):
        with pytest.raises(ConfigurationError, match="max_members must be None or an integer"):
            extract_archive(zpath, tmp_path / "out", max_members=bad)


def test_a_zip64_archive_is_counted_from_its_64_bit_records(tmp_path):
    """Past 65,535 members a ZIP's end record defers to its ZIP64 one (64-bit counts);
    its records are walked, whatever the end records declare: 65,536 records declared
    as a million are 65,536 members (zipfile parses the records; refusing it named a
    million members the archive does not hold)."""
    from spikeflow.data._archive_limits import check_zip_count, zip_member_count

    path = tmp_path / "zip64.zip"
    raw = _zip_of_empty_files(path, 65_536)
    assert raw[-22:-18] == b"PK\x05\x06" and raw[-42:-38] == b"PK\x06\x07"
    assert zip_member_count(path, 100) == (101, False)  # the walk stops past the bound
    assert zip_member_count(path, 70_000) == (65_536, True)  # the records walked
    path.write_bytes(b"stub" * 250 + raw)  # behind a self-extractor's stub
    assert zip_member_count(path, 70_000) == (65_536, True)
    end64 = len(raw) - 42 - 56  # the ZIP64 end record; its total count at byte 32
    assert raw[end64 : end64 + 4] == b"PK\x06\x06"
    million = raw[: end64 + 32] + (10**6).to_bytes(8, "little") + raw[end64 + 40 :]
    path.write_bytes(million)
    assert len(zipfile.ZipFile(path).infolist()) == 65_536  # what zipfile parses
    assert zip_member_count(path, 250_000) == (65_536, True)
    check_zip_count(path, 250_000)  # (extract_archive's check: passes)
    with pytest.raises(UnsafeArchiveError, match=r"holds more than 65535 members \(its cen"):
        check_zip_count(path, 65_535)


def test_the_folders_member_paths_imply_count_too(tmp_path):
    """Three files five folders deep create eight entries: with max_members=7 the
    archive is refused, though it holds only three members."""
    zpath = tmp_path / "deep.zip"
    _zip_of_empty_files(zpath, 3, folder="a/b/c/d/e/")
    tpath = make_tar(tmp_path / "deep.tar", [{"name": f"a/b/c/d/e/f{k}"} for k in range(3)])
    for archive in (zpath, tpath):
        with pytest.raises(UnsafeArchiveError, match=rf"^{re.escape(str(archive))}: its 3 "
                           r"members create more than max_members=7 files, folders and "
                           "links, counting the folders their paths imply"):  # fmt: skip
            extract_archive(archive, tmp_path / "out", max_members=7)
        assert not (tmp_path / "out").exists()
        out = extract_archive(archive, tmp_path / archive.suffix[1:], max_members=8)
        assert len(list(out.rglob("*"))) == 8


def _with_comment(raw: bytes, comment_size: int, trailing: bytes = b"") -> bytes:
    """The zip ``raw`` (no comment) with a ``comment_size``-byte comment, then
    ``trailing`` bytes the comment length does not cover."""
    assert raw[-22:-18] == b"PK\x05\x06"
    return raw[:-2] + comment_size.to_bytes(2, "little") + b"c" * comment_size + trailing


def _as_zip64(raw: bytes) -> bytes:
    """The zip ``raw`` (no comment) with its counts and directory in ZIP64 end records,
    and an end record whose own fields (which zipfile then ignores) declare nothing."""
    count, cd_size, cd_offset = struct.unpack("<HLL", raw[-12:-2])
    at = len(raw) - 22
    record = struct.pack("<4sQHHLLQQQQ", b"PK\x06\x06", 44, 45, 45, 0, 0, count, count,
                         cd_size, cd_offset)  # fmt: skip
    locator = struct.pack("<4sLQL", b"PK\x06\x07", 0, at, 1)
    end = struct.pack("<4sHHHHLLH", b"PK\x05\x06", 0, 0, 0, 0, 0, 0xFFFFFFFF, 0)
    return raw[:at] + record + locator + end


@pytest.mark.parametrize(
    "layout", ["end record 65,558 bytes from the end", "zip64 behind a comment"]
)
def test_a_zip_is_counted_from_the_end_record_zipfile_finds(tmp_path, layout):
    """The count must be of the directory zipfile parses: an end record that zipfile
    finds (the last 64 KiB + 22 bytes) but a narrower search misses, or ZIP64 records
    before the bytes searched (behind a 64 KiB comment) while the end record's own
    fields declare nothing, counted none and let zipfile parse every record."""
    from spikeflow.data._archive_limits import zip_member_count

    raw = _zip_of_empty_files(tmp_path / "plain.zip", 11)
    if layout.startswith("end record"):
        crafted = _with_comment(raw, 0xFFFF, trailing=b"x")  # 22 + 65535 + 1 bytes
    else:
        crafted = _with_comment(_as_zip64(raw), 0xFFFF)
    path = tmp_path / "crafted.zip"
    path.write_bytes(crafted)
    assert len(zipfile.ZipFile(path).infolist()) == 11  # what zipfile parses
    assert zip_member_count(path, 100) == (11, True)
    assert zip_member_count(path, 10) == (11, False)
    with pytest.raises(UnsafeArchiveError, match=r"holds more than 10 members \(its central"):
        extract_archive(path, tmp_path / "out", max_members=10)
    assert not (tmp_path / "out").exists()
    out = extract_archive(path, tmp_path / "ok", max_members=11)
    assert sorted(p.name for p in out.iterdir()) == sorted(f"f{k}" for k in range(11))


def test_a_zip_spanning_several_disks_is_a_data_format_error_naming_it(tmp_path):
    """zipfile refuses a ZIP64 locator naming several disks with a BadZipFile raised
    from is_zipfile (which catches OSErrors only): it escaped extract_archive bare,
    without the archive's name; nothing is written."""
    from spikeflow.errors import DataFormatError

    raw = _as_zip64(_zip_of_empty_files(tmp_path / "plain.zip", 3))
    at = raw.rfind(b"PK\x06\x07")
    split = raw[: at + 16] + (2).to_bytes(4, "little") + raw[at + 20 :]  # total disks: 2
    path = tmp_path / "split.zip"
    path.write_bytes(split)
    with pytest.raises(DataFormatError, match=rf"^{re.escape(str(path))} is a ZIP that cannot "
                       "be read: zipfiles that span multiple disks"):  # fmt: skip
        extract_archive(path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_zip64_record_where_its_locator_points_is_counted_too(tmp_path):
    """A ZIP64 end record followed by extensible data is not at the fixed place before
    its locator: CPython up to 3.13.0 then takes the end record's own fields (here:
    nothing), later versions (gh-126834) the record the locator points at. Counted
    only at the fixed place, such a directory was 0 members for a Python that parses
    all of it: every place is counted, the most kept."""
    from spikeflow.data._archive_limits import check_zip_count, zip_member_count

    raw = _as_zip64(_zip_of_empty_files(tmp_path / "plain.zip", 11))
    record_at = raw.rfind(b"PK\x06\x06")
    record, tail = raw[record_at : record_at + 56], raw[record_at + 56 :]
    extensible = b"\x00" * 40
    record = record[:4] + (44 + len(extensible)).to_bytes(8, "little") + record[12:]
    crafted = raw[:record_at] + record + extensible + tail
    assert crafted[-42 : -42 + 4] == b"PK\x06\x07"  # the locator, pointing at record_at
    assert int.from_bytes(crafted[-34:-26], "little") == record_at
    path = tmp_path / "extensible.zip"
    path.write_bytes(crafted)
    assert zip_member_count(path, 100) == (11, True)
    assert zip_member_count(path, 10) == (11, False)
    with pytest.raises(UnsafeArchiveError, match=r"holds more than 10 members \(its central"):
        check_zip_count(path, 10)
