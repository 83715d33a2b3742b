"""corpora.download.fetch against a real HTTP server on 127.0.0.1 (loopback only) serving temp files."""

from __future__ import annotations

import hashlib
import random
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from corpora import download
from corpora.download import default_cache_dir, fetch
from textvae.data.records import DataError, DataWarning

PAYLOAD = random.Random(0).randbytes(50_000)
DIGEST = hashlib.sha256(PAYLOAD).hexdigest()


class FileServer:
    """Serves the files under ``root``; records every request as (path, Range header)."""

    def __init__(self, root: Path):
        self.root = root
        self.requests: list[tuple[str, str | None]] = []
        self.range_support = True
        self.content_type = "application/octet-stream"
        self.cut_next_at: int | None = None  # send only this many bytes of the next body, then hang up
        self.url = ""

    def put(self, name: str, data: bytes) -> str:
        (self.root / name).write_bytes(data)
        return f"{self.url}/{name}"


def _handler(state: FileServer):
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's naming)
            state.requests.append((self.path, self.headers.get("Range")))
            path = state.root / self.path.lstrip("/")
            if not path.is_file():
                self.send_error(404)
                return
            body = path.read_bytes()
            start, header = 0, self.headers.get("Range")
            if header and state.range_support:
                start = int(header.removeprefix("bytes=").split("-")[0])
                if start >= len(body):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(body)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            else:
                self.send_response(200)
            self.send_header("Content-Type", state.content_type)
            self.send_header("Content-Length", str(len(body) - start))
            self.end_headers()
            chunk = body[start:]
            if state.cut_next_at is not None:
                chunk, state.cut_next_at = chunk[:state.cut_next_at], None
                self.close_connection = True
            self.wfile.write(chunk)

        def log_message(self, *args):
            pass

    return Handler


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    # loopback requests must never go through a proxy set in the environment
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "served"
    root.mkdir()
    state = FileServer(root)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield state
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def cache(tmp_path) -> Path:
    return tmp_path / "cache"


def test_download_verifies_and_leaves_no_partial_file(server, cache):
    url = server.put("data.bin", PAYLOAD)
    path = fetch(url, cache, sha256=DIGEST)
    assert path == cache / "data.bin"
    assert path.read_bytes() == PAYLOAD
    assert server.requests == [("/data.bin", None)]
    assert not (cache / "data.bin.part").exists()


def test_cache_hit_makes_no_request(server, cache):
    url = server.put("data.bin", PAYLOAD)
    fetch(url, cache, sha256=DIGEST)
    again = fetch(url, cache, sha256=DIGEST)
    assert again.read_bytes() == PAYLOAD
    assert len(server.requests) == 1


def test_filename_overrides_the_url_name(server, cache):
    url = server.put("download", PAYLOAD)
    assert fetch(url, cache, sha256=DIGEST, filename="corpus.tar.gz") == cache / "corpus.tar.gz"


def test_resume_from_partial_file_with_range(server, cache):
    url = server.put("data.bin", PAYLOAD)
    cache.mkdir()
    (cache / "data.bin.part").write_bytes(PAYLOAD[:12_345])
    path = fetch(url, cache, sha256=DIGEST)
    assert server.requests == [("/data.bin", "bytes=12345-")]
    assert path.read_bytes() == PAYLOAD


def test_server_ignoring_range_restarts_the_file(server, cache):
    server.range_support = False  # answers 200 with the whole file
    url = server.put("data.bin", PAYLOAD)
    cache.mkdir()
    (cache / "data.bin.part").write_bytes(PAYLOAD[:20_000])
    path = fetch(url, cache, sha256=DIGEST)
    assert server.requests == [("/data.bin", "bytes=20000-")]
    assert path.read_bytes() == PAYLOAD  # not the first 20,000 bytes twice


def test_partial_longer_than_the_file_starts_over(server, cache):
    url = server.put("data.bin", PAYLOAD)
    cache.mkdir()
    (cache / "data.bin.part").write_bytes(PAYLOAD + b"stale tail")
    path = fetch(url, cache, sha256=DIGEST)
    assert [r for _, r in server.requests] == [f"bytes={len(PAYLOAD) + 10}-", None]
    assert path.read_bytes() == PAYLOAD


def test_interrupted_download_is_kept_and_resumed(server, cache):
    url = server.put("data.bin", PAYLOAD)
    server.cut_next_at = 30_000
    with pytest.raises(DataError, match=r"partial file .*data\.bin\.part is kept") as err:
        fetch(url, cache, sha256=DIGEST)
    assert "\n" not in str(err.value)
    assert (cache / "data.bin.part").stat().st_size == 30_000
    path = fetch(url, cache, sha256=DIGEST)
    assert server.requests[-1] == ("/data.bin", "bytes=30000-")
    assert path.read_bytes() == PAYLOAD


def test_checksum_mismatch_names_url_both_sums_and_removes_the_file(server, cache):
    url = server.put("data.bin", PAYLOAD)
    wrong = "0" * 64
    with pytest.raises(DataError) as err:
        fetch(url, cache, sha256=wrong)
    message = str(err.value)
    assert url in message and wrong in message and DIGEST in message
    assert "removed" in message and "\n" not in message
    assert not (cache / "data.bin").exists() and not (cache / "data.bin.part").exists()


def test_trust_on_first_use_records_and_then_verifies(server, cache):
    url = server.put("data.bin", PAYLOAD)
    path = fetch(url, cache, sha256=None)
    record = cache / "data.bin.sha256"
    assert record.read_text().split() == [DIGEST, "data.bin"]
    assert fetch(url, cache, sha256=None) == path and len(server.requests) == 1  # cache hit

    path.unlink()  # the upstream file changes; the next download must not pass silently
    server.put("data.bin", PAYLOAD[::-1])
    with pytest.raises(DataError, match="recorded at the first download") as err:
        fetch(url, cache, sha256=None)
    assert DIGEST in str(err.value) and str(record) in str(err.value)
    assert not path.exists()


def test_corrupted_cache_file_is_downloaded_again(server, cache):
    url = server.put("data.bin", PAYLOAD)
    path = fetch(url, cache, sha256=DIGEST)
    path.write_bytes(b"corrupted")
    with pytest.warns(DataWarning, match="does not match"):
        again = fetch(url, cache, sha256=DIGEST)
    assert again.read_bytes() == PAYLOAD and len(server.requests) == 2


def test_web_page_instead_of_file_is_refused(server, cache):
    server.content_type = "text/html; charset=utf-8"
    url = server.put("archive.tar.gz", b"<html>quota exceeded</html>")
    with pytest.raises(DataError, match="web page"):
        fetch(url, cache, sha256=None)
    assert list(cache.iterdir()) == []  # nothing cached, no checksum recorded


def test_http_error_is_one_line_with_the_fix(server, cache):
    with pytest.raises(DataError, match=r"HTTP 404.*--source PATH") as err:
        fetch(f"{server.url}/missing.txt", cache, sha256=None)
    assert "\n" not in str(err.value)


def test_network_failure_suggests_source(cache):
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DataError, match=r"could not download .*--source PATH") as err:
        fetch(f"http://127.0.0.1:{port}/ptb.train.txt", cache, sha256=None, timeout=5)
    assert "\n" not in str(err.value)


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("TEXTVAE_CACHE", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("TEXTVAE_CACHE")
    assert default_cache_dir() == Path("~/.cache/textvae").expanduser()


def test_url_filename():
    assert download.url_filename("https://example.org/a/b/ptb.train.txt?x=1") == "ptb.train.txt"


def test_prepare_downloads_and_pins_the_canonical_files(server, cache, monkeypatch):
    """yelp10k without --source: fetches its files, checks the pinned sums, converts them."""
    import corpora
    from corpora import lite

    shared = Path(__file__).resolve().parents[1] / ".." / "shared" / "corpora" / "short_yelp"
    if not shared.is_dir():
        pytest.skip(f"shared corpora not found at {shared}")
    local = []
    for source in lite.YELP10K_SOURCES:  # same names and pinned sums, served from the shared copies
        data = (shared / source.filename.removeprefix("short_yelp.")).read_bytes()
        local.append(source._replace(url=server.put(source.filename, data)))
    monkeypatch.setattr(lite, "YELP10K_SOURCES", tuple(local))

    out = cache.parent / "yelp10k"
    summary = corpora.prepare("yelp10k", out, cache_dir=cache)
    assert summary["splits"] == {"train": 10_000, "valid": 10_000, "test": 10_000, "train.100": 100,
                                 "train.500": 500, "train.1000": 1_000, "train.2000": 2_000}
    assert len(server.requests) == 7
    corpora.prepare("yelp10k", out, cache_dir=cache)
    assert len(server.requests) == 7  # the second preparation is served from the cache
