"""Helpers (no tests here): writers of small dataset files, byte for byte in each published
format, and a local HTTP server for download tests (no network). Shared by
tests/test_data_datasets_*.py."""

from __future__ import annotations

import struct
import threading
import zipfile
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np


def write_aedat2_dvs128(path: Path, header: bytes, t, raw_x, raw_y, p) -> None:
    """jAER AEDAT 2.0, DVS128 addresses: big-endian uint32 ``(y << 8) | (x << 1) | p`` and
    uint32 timestamp per event, after ``header`` (``#`` lines)."""
    addr = (np.asarray(raw_y, np.uint32) << 8) | (np.asarray(raw_x, np.uint32) << 1)
    addr |= np.asarray(p, np.uint32)
    rec = np.empty(len(addr), dtype=[("a", ">u4"), ("t", ">u4")])
    rec["a"], rec["t"] = addr, t
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(header + rec.tobytes())


def write_aedat31(path: Path, t, x, y, p, per_packet: int = 500) -> None:
    """AEDAT 3.1 as cAER writes DVS128 Gesture: text header, then polarity packets (28-byte
    header: type 1, source 1, size 8, ts offset 4, overflow 0, capacity, number, valid) of
    8-byte events ``uint32 (x << 17) | (y << 2) | (p << 1) | valid``, ``int32 t``."""
    head = (
        b"#!AER-DAT3.1\r\n#Format: RAW\r\n#Source 1: DVS128\r\n"
        b"#Start-Time: 2017-01-01 00:00:00 (TZ+0000)\r\n#!END-HEADER\r\n"
    )
    out = [head]
    t, x, y, p = (np.asarray(a) for a in (t, x, y, p))
    for lo in range(0, len(t), per_packet):
        sl = slice(lo, lo + per_packet)
        n = len(t[sl])
        ev = np.empty(n, dtype=[("d", "<u4"), ("t", "<i4")])
        ev["d"] = (x[sl].astype(np.uint32) << 17) | (y[sl].astype(np.uint32) << 2)
        ev["d"] |= (p[sl].astype(np.uint32) << 1) | 1
        ev["t"] = t[sl]
        out.append(struct.pack("<hhiiiiii", 1, 1, 8, 4, 0, n, n, n) + ev.tobytes())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(out))


def write_kaer_td_dat(path: Path, t, x, y, p) -> None:
    """kAER ATIS ``_td.dat``: ``%`` header lines, event type 0 and size 8 bytes, then
    little-endian uint64 ``t | x << 32 | y << 41 | p << 49``."""
    words = np.asarray(t, np.uint64) | (np.asarray(x, np.uint64) << np.uint64(32))
    words |= np.asarray(y, np.uint64) << np.uint64(41)
    words |= np.asarray(p, np.uint64) << np.uint64(49)
    head = b"% Data file containing Event2D events.\n% Version 2\n" + bytes([0, 8])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(head + words.astype("<u8").tobytes())


def zip_tree(archive: Path, root: Path, members: list[Path]) -> Path:
    """A zip of ``members`` named relative to ``root``."""
    with zipfile.ZipFile(archive, "w") as zf:
        for m in members:
            zf.write(m, m.relative_to(root).as_posix())
    return archive


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        files, log = self.server.files, self.server.log
        log.append(self.path)
        body = files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        start = 0
        rng = self.headers.get("Range")
        if rng:
            start = int(rng.split("=")[1].split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        self.wfile.write(body[start:])


@contextmanager
def http_server(files: dict[str, bytes]):
    """Serve ``{"/path": bytes}`` on 127.0.0.1 with Range support; yields
    ``(base_url, request_log)``."""
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.files, srv.log = files, []
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    guard = threading.Timer(30.0, srv.shutdown)
    guard.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}", srv.log
    finally:
        guard.cancel()
        srv.shutdown()
        srv.server_close()
        thread.join(5)


def spikingjelly_functions(module: str, names: tuple[str, ...], **env) -> dict:
    """The named top-level functions (plus the module's plain constants) of an installed
    ``spikingjelly/datasets/<module>.py``, compiled from its source without importing the
    package (whose ``__init__`` needs torchvision). Skips when SpikingJelly is absent."""
    import ast
    import importlib.util
    import struct as struct_module
    import types

    import pytest

    spec = importlib.util.find_spec("spikingjelly")
    if spec is None or spec.origin is None:
        pytest.skip("SpikingJelly (a test extra) is not installed")
    source_path = Path(spec.origin).parent / "datasets" / f"{module}.py"
    tree = ast.parse(source_path.read_text())

    def ignore(*args, **kwargs):
        return None

    quiet = types.SimpleNamespace(debug=ignore, info=ignore, warning=ignore, error=ignore)
    keep = [
        node for node in tree.body
        if (isinstance(node, ast.FunctionDef) and node.name in names)
        or (isinstance(node, ast.Assign) and isinstance(node.value, (ast.Constant, ast.Tuple)))
    ]  # fmt: skip
    namespace = {
        "np": np, "struct": struct_module, "unpack": struct_module.unpack, "Path": Path,
        "Union": object, "logger": quiet,
        "math": __import__("math"), "types": types, **env,
    }  # fmt: skip
    code = compile(ast.Module(body=keep, type_ignores=[]), str(source_path), "exec")
    exec(code, namespace)  # the peer's own code, as installed
    missing = [n for n in names if n not in namespace]
    if missing:
        pytest.skip(f"SpikingJelly {source_path} has no {missing}")
    return {n: namespace[n] for n in names}


def test_the_manual_download_hint_claims_an_md5_check_only_where_there_is_one():
    # ASL-DVS's archive has no checksum (its host repacks it), yet the text said
    # "spikeflow checks (MD5)".
    from spikeflow.data.datasets._common import Archive, how_to_get

    unchecked = how_to_get("X", Path("/r"), [Archive("a.zip", None)], "http://h", "L")
    checked = how_to_get("X", Path("/r"), [Archive("a.zip", "0" * 32)], "http://h", "L")
    assert "MD5" not in unchecked and "spikeflow extracts them there" in unchecked
    assert "spikeflow checks (MD5) and extracts them there" in checked
    # No archive at all (N-CARS): nothing is checked or extracted (all([]) said it was).
    none = how_to_get("X", Path("/r"), [], "http://h", "L")
    assert "MD5" not in none and "extracts" not in none and "put them, extracted, in /r" in none


def test_messages_list_five_names_then_an_ellipsis():
    from spikeflow.data.datasets._common import first_names, names_difference

    assert first_names(["a", "b"]) == "['a', 'b']"
    assert first_names(tuple("abcde")) == "('a', 'b', 'c', 'd', 'e')"  # printed as given
    assert first_names(list("abcdef")) == "['a', 'b', 'c', 'd', 'e']..."
    assert names_difference("zcba", "yxbcdefgh") == (
        "missing ['a', 'z'], unexpected ['d', 'e', 'f', 'g', 'h']..."
    )
    assert names_difference("ab", "ba") == "missing [], unexpected []"
