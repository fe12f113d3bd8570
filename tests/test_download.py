"""download.py against a real HTTP server on 127.0.0.1 (thread, random port) with Range."""

from __future__ import annotations

import hashlib
import http.server
import re
import socket
import threading
from pathlib import Path

import pytest

from recgoat_jax.data import download as dl
from recgoat_jax.errors import ConfigError, DataError

FIXTURES = Path(__file__).parent / "fixtures" / "raw"


class _Handler(http.server.BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}
    log: list[dict] = []
    honour_range = True

    def do_GET(self):  # noqa: N802 (http.server naming)
        body = self.files.get(self.path)
        if body is None:
            self.send_error(404, "not found")
            return
        rng = self.headers.get("Range")
        start = 0
        m = re.fullmatch(r"bytes=(\d+)-", rng or "")
        if m and self.honour_range:
            start = int(m.group(1))
            if start >= len(body):
                # log before answering: the client may return (and the test assert) as
                # soon as the response is out, before this thread runs on
                self.log.append({"range": rng, "sent": 0})
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        payload = body[start:]
        self.log.append({"range": rng, "sent": len(payload)})  # before the client can return
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):  # keep pytest output clean
        pass


@pytest.fixture()
def server():
    _Handler.files = {"/ratings.csv": (FIXTURES / "ratings_Toy.csv").read_bytes(),
                      "/meta.json.gz": (FIXTURES / "meta_Toy_2018.json.gz").read_bytes()}
    _Handler.log = []
    _Handler.honour_range = True
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    t = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", _Handler
    finally:
        httpd.shutdown()
        httpd.server_close()
        t.join(5)


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def test_full_download(server, tmp_path):
    base, h = server
    body = h.files["/ratings.csv"]
    out = dl.download(f"{base}/ratings.csv", tmp_path / "r.csv", _sha(body), progress=False)
    assert out.read_bytes() == body
    assert not (tmp_path / "r.csv.part").exists()
    assert h.log == [{"range": None, "sent": len(body)}]
    # a second call finds the verified file and requests nothing
    dl.download(f"{base}/ratings.csv", tmp_path / "r.csv", _sha(body), progress=False)
    assert len(h.log) == 1


def test_resume_requests_only_the_missing_bytes(server, tmp_path):
    base, h = server
    body = h.files["/meta.json.gz"]
    cut = len(body) // 3
    (tmp_path / "m.json.gz.part").write_bytes(body[:cut])
    out = dl.download(f"{base}/meta.json.gz", tmp_path / "m.json.gz", _sha(body), progress=False)
    assert out.read_bytes() == body
    assert h.log == [{"range": f"bytes={cut}-", "sent": len(body) - cut}]


def test_resume_when_server_ignores_range_starts_over(server, tmp_path):
    base, h = server
    h.honour_range = False
    body = h.files["/ratings.csv"]
    (tmp_path / "r.csv.part").write_bytes(b"garbage that must not survive")
    out = dl.download(f"{base}/ratings.csv", tmp_path / "r.csv", _sha(body), progress=False)
    assert out.read_bytes() == body


def test_complete_part_file_is_verified_and_renamed(server, tmp_path):
    base, h = server
    body = h.files["/ratings.csv"]
    (tmp_path / "r.csv.part").write_bytes(body)
    out = dl.download(f"{base}/ratings.csv", tmp_path / "r.csv", _sha(body), progress=False)
    assert out.read_bytes() == body
    assert h.log == [{"range": f"bytes={len(body)}-", "sent": 0}]


def test_checksum_mismatch_deletes_and_explains(server, tmp_path):
    base, _ = server
    with pytest.raises(DataError, match="sha256 mismatch") as e:
        dl.download(f"{base}/ratings.csv", tmp_path / "r.csv", "0" * 64, progress=False)
    assert "\n" not in str(e.value)
    assert not (tmp_path / "r.csv").exists() and not (tmp_path / "r.csv.part").exists()


def test_http_error_is_one_line(server, tmp_path):
    base, _ = server
    with pytest.raises(dl.DownloadError, match="HTTP 404"):
        dl.download(f"{base}/missing.csv", tmp_path / "x.csv", progress=False)


def test_unreachable_host_is_a_clear_error(tmp_path):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    with pytest.raises(dl.DownloadError, match="cannot connect") as e:
        dl.download(f"http://127.0.0.1:{port}/ratings.csv", tmp_path / "r.csv", timeout=5,
                    progress=False)
    msg = str(e.value)
    assert "\n" not in msg and "offline" in msg and str(tmp_path / "r.csv") in msg


def test_registry_from_file_and_fetch(server, tmp_path, monkeypatch):
    base, h = server
    body = h.files["/ratings.csv"]
    reg_file = tmp_path / "reg.yaml"
    reg_file.write_text(
        f"toy:\n  - {{url: '{base}/ratings.csv', sha256: {_sha(body)}, filename: ratings_Toy.csv}}\n"
        f"  - {{url: '{base}/meta.json.gz'}}\n")
    monkeypatch.setenv(dl.ENV_REGISTRY, str(reg_file))
    reg = dl.load_registry()
    assert "baby" in reg and reg["toy"][1]["filename"] == "meta.json.gz"
    paths = dl.fetch_dataset("toy", tmp_path / "raw", reg, progress=False)
    assert [p.name for p in paths] == ["ratings_Toy.csv", "meta.json.gz"]
    assert paths[0].read_bytes() == body
    with pytest.raises(ConfigError, match="unknown dataset"):
        dl.fetch_dataset("nope", tmp_path, reg)
    bad = tmp_path / "bad.json"
    bad.write_text('{"x": [{"url": "http://a/b", "sha256": "12"}]}')
    with pytest.raises(ConfigError, match="sha256 must be 64 hex"):
        dl.load_registry(bad)
