"""Download a corpus file once: cached, resumable, checksum-verified, with urllib only.

``fetch(url, dest_dir, sha256=...)`` downloads to ``NAME.part`` and renames to ``NAME`` when done.
An interrupted download is resumed with an HTTP ``Range`` request (a server that ignores it and
answers 200 is handled by starting over). A file already in the cache whose checksum matches is
returned without any request.

Checksums. Where we could measure a file's sha256 (it is byte-for-byte the copy we hold), the
caller pins it and any difference is an error. Where we could not (``sha256=None``), the sha256
measured at the first download is written next to the file as ``NAME.sha256`` and later uses are
verified against it: *trust on first use*. That protects against a file changing or being
corrupted later, not against a first download that was already wrong.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import posixpath
import shutil
import sys
import urllib.error
import urllib.parse
import urllib.request
import warnings
from pathlib import Path

from textvae.data.records import DataError, DataWarning

_CHUNK = 1 << 20
_HINT = "download the file by hand and pass --source PATH with the files"


def default_cache_dir() -> Path:
    """``$TEXTVAE_CACHE`` if set, else ``~/.cache/textvae``."""
    return Path(os.environ.get("TEXTVAE_CACHE") or "~/.cache/textvae").expanduser()


def sha256_of(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def url_filename(url: str) -> str:
    """The last path component of a URL, e.g. ``ptb.train.txt``."""
    return urllib.parse.unquote(posixpath.basename(urllib.parse.urlsplit(url).path))


def fetch(url: str, dest_dir: str | os.PathLike, *, sha256: str | None, filename: str | None = None,
          timeout: float = 60.0) -> Path:
    """Download ``url`` into ``dest_dir`` (once) and return the file's path.

    ``sha256`` pins the expected checksum; ``None`` means trust on first use (see the module docstring).
    Network failures and checksum mismatches raise :class:`DataError` with a one-line message.
    """
    filename = filename or url_filename(url)
    if not filename:
        raise ValueError(f"cannot tell a file name from {url!r}; pass filename=")
    dest_dir = Path(dest_dir).expanduser()
    dest_dir.mkdir(parents=True, exist_ok=True)
    path = dest_dir / filename
    part = dest_dir / (filename + ".part")
    record = dest_dir / (filename + ".sha256")
    pinned = sha256.strip().lower() if sha256 else None
    expected = pinned or _read_record(record)

    if path.is_file():
        if expected is None:  # placed in the cache by hand, or its record was deleted: trust it now
            _write_record(record, sha256_of(path))
            return path
        if sha256_of(path) == expected:
            return path
        warnings.warn(f"{path}: cached file does not match sha256 {expected}; downloading it again",
                      DataWarning, stacklevel=2)
        path.unlink()

    _download(url, part, timeout=timeout)
    got = sha256_of(part)
    if expected is not None and got != expected:
        part.unlink()
        if pinned:
            raise DataError(f"{url}: checksum mismatch: expected sha256 {expected}, got {got}; removed the "
                            f"downloaded file {part}. Retry, or {_HINT}")
        raise DataError(f"{url}: checksum mismatch: expected sha256 {expected} (recorded at the first download "
                        f"in {record}), got {got}; removed the downloaded file {part}. If the file changed "
                        f"upstream on purpose, delete {record} and retry")
    part.replace(path)
    if expected is None:
        _write_record(record, got)
    return path


def _download(url: str, part: Path, *, timeout: float) -> None:
    """Download ``url`` into ``part``, resuming from the bytes already there."""
    offset = part.stat().st_size if part.is_file() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "textvae-corpus"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    print(f"downloading {url}" + (f" (resuming at byte {offset:,})" if offset else ""), file=sys.stderr)
    opener = urllib.request.build_opener()  # built per call so proxy settings are read now
    try:
        with opener.open(request, timeout=timeout) as response:
            content_type = response.headers.get("Content-Type", "")
            if content_type.startswith("text/html") and not part.name.removesuffix(".part").endswith((".html", ".htm")):
                raise DataError(f"{url} returned a web page instead of the file (a login, quota or "
                                f"confirmation page?); {_HINT}")
            if offset and response.status == 206:
                if _range_start(response.headers.get("Content-Range", "")) != offset:
                    response.close()
                    part.unlink()
                    return _download(url, part, timeout=timeout)
                mode = "ab"
            else:
                mode = "wb"  # a fresh download, or a server that ignored Range and sent the whole file
            length = response.headers.get("Content-Length")
            expected_size = (offset if mode == "ab" else 0) + int(length) if length and length.isdigit() else None
            with part.open(mode) as f:
                shutil.copyfileobj(response, f, _CHUNK)
            if expected_size is not None and part.stat().st_size < expected_size:
                # http.client ends a body cut short by the server quietly; never take it for the whole file
                missing = expected_size - part.stat().st_size
                raise DataError(f"could not download {url} (the connection closed {missing:,} bytes before the "
                                f"end); the partial file {part} is kept and the next run resumes it")
    except urllib.error.HTTPError as err:
        if err.code == 416 and offset:  # the partial file is not a prefix of this file: start over
            part.unlink()
            return _download(url, part, timeout=timeout)
        raise DataError(f"could not download {url} (HTTP {err.code} {err.reason}); {_HINT}") from None
    except (urllib.error.URLError, http.client.HTTPException, OSError) as err:
        reason = getattr(err, "reason", None) or err
        kept = f"; the partial file {part} is kept and the next run resumes it" if part.is_file() else ""
        raise DataError(f"could not download {url} ({reason}){kept}; check the network, or {_HINT}") from None


def _range_start(content_range: str) -> int | None:
    # "bytes 100-199/200" -> 100
    try:
        unit, spec = content_range.split(" ", 1)
        return int(spec.split("-", 1)[0]) if unit == "bytes" else None
    except ValueError:
        return None


def _read_record(record: Path) -> str | None:
    if not record.is_file():
        return None
    value = record.read_text(encoding="utf-8").split()
    return value[0].lower() if value else None


def _write_record(record: Path, digest: str) -> None:
    # same layout as `sha256sum`, so `sha256sum -c NAME.sha256` works in the cache folder
    record.write_text(f"{digest}  {record.name.removesuffix('.sha256')}\n", encoding="utf-8")
