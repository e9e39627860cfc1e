"""Serve a built site on 127.0.0.1 the way GitHub Pages serves it: text gzipped.

Python's ``http.server`` sends every file as it is on disk, so a page measured
through it looks heavier than readers get it. This server compresses HTML, CSS,
JavaScript, JSON, SVG and XML when the client accepts gzip (fonts and images are
already compressed and go as they are), and sends the same short cache header as
GitHub Pages.

Run it by hand to look at a build: ``python -m tests.siteserver /tmp/site [PORT]``.
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import http.server
import io
import os
import sys
import threading
from pathlib import Path
from urllib.parse import urlsplit

COMPRESSED_TYPES = (
    "text/", "application/javascript", "application/json", "image/svg+xml",
    "application/xml",
)


class GzipHandler(http.server.SimpleHTTPRequestHandler):
    """Static files, gzipped (level 6) when the client says it accepts gzip."""

    protocol_version = "HTTP/1.1"  # keep-alive, as a browser gets from a real host

    extensions_map = {
        **http.server.SimpleHTTPRequestHandler.extensions_map,
        ".js": "application/javascript", ".json": "application/json",
        ".svg": "image/svg+xml", ".woff2": "font/woff2", ".xml": "application/xml",
    }

    def log_message(self, *args):
        pass

    def send_head(self):
        path = self.translate_path(self.path)
        if os.path.isdir(path):
            if not urlsplit(self.path).path.endswith("/"):
                return super().send_head()  # which redirects to the folder's URL
            path = os.path.join(path, "index.html")
        ctype = self.guess_type(path)
        if not (os.path.isfile(path) and ctype.startswith(COMPRESSED_TYPES)
                and "gzip" in self.headers.get("Accept-Encoding", "")):
            return super().send_head()
        body = _compressed(path, os.stat(path).st_mtime_ns)
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Encoding", "gzip")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Vary", "Accept-Encoding")
        self.end_headers()
        return io.BytesIO(body)

    def end_headers(self):
        self.send_header("Cache-Control", "max-age=600")  # as GitHub Pages sends
        super().end_headers()


@functools.lru_cache(maxsize=512)
def _compressed(path: str, mtime_ns: int) -> bytes:
    """The gzipped file, kept while the file is unchanged (``mtime_ns`` is the key)."""
    return gzip.compress(Path(path).read_bytes(), compresslevel=6, mtime=0)


@contextlib.contextmanager
def serve_directory(directory: Path, port: int = 0):
    """Serve ``directory`` on 127.0.0.1 (a free port unless given) while the block
    runs; yields the base URL, with no slash at the end."""
    handler = functools.partial(GzipHandler, directory=str(directory))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


if __name__ == "__main__":
    site = Path(sys.argv[1])
    with serve_directory(site, int(sys.argv[2]) if len(sys.argv) > 2 else 0) as url:
        print(url, flush=True)
        threading.Event().wait()
