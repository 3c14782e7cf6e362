"""A static HTTP server for the remote-input tests: serves a folder with byte ranges.

Python's ``http.server`` answers every GET with the whole file; GDAL's ``/vsicurl/`` reads
rasters by ``Range: bytes=a-b`` requests and expects ``206 Partial Content`` with a
``Content-Range`` (and, for ``bytes=a-b,c-d``, a ``multipart/byteranges`` answer). This server
does that, and HEAD. Files under ``private/`` need HTTP basic
authentication (user ``reader``, password ``s3cret``). ``GET /__log__`` returns the requests
served so far as JSON (method, path, range, status, user agent) and forgets them.

Run it in its own process (GDAL may hold the GIL while it waits for an answer, so a server
thread in the same process could never answer): ``python range_server.py FOLDER`` prints the
port it listens on (127.0.0.1, chosen by the system), then serves until stdin closes.
"""

from __future__ import annotations

import base64
import json
import os
import re
import sys
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

USER, PASSWORD = "reader", "s3cret"
_RANGES = re.compile(r"bytes=(\d*-\d*(?:,\s*\d*-\d*)*)")
_BOUNDARY = "eoscale-test-boundary"


def byte_ranges(spec: str, size: int) -> list[tuple[int, int]] | None:
    """The (first, last) byte pairs of a Range header's value; None if one cannot be served."""
    ranges = []
    for part in spec.split(","):
        first, _, last = part.strip().partition("-")
        if first == "":
            start, end = max(size - int(last or 0), 0), size - 1
        else:
            start, end = int(first), min(int(last) if last else size - 1, size - 1)
        if start >= size or start > end:
            return None
        ranges.append((start, end))
    return ranges


class RangeHandler(SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        if self.path == "/__log__":
            with self.server.lock:
                body = json.dumps(self.server.requests).encode()
                self.server.requests = []
            self._answer(200, {"Content-Type": "application/json"}, body, True)
            return
        self._serve(body=True)

    def do_HEAD(self) -> None:
        self._serve(body=False)

    def _serve(self, body: bool) -> None:
        file = Path(self.translate_path(self.path))
        wanted = self.headers.get("Range")
        if self.path.lstrip("/").startswith("private/") and not self._authorised():
            self._record(wanted, 401)
            self._answer(401, {"WWW-Authenticate": 'Basic realm="eoscale"'}, b"", body)
            return
        if not file.is_file():
            self._record(wanted, 404)
            self._answer(404, {}, b"not found\n", body)
            return
        data = file.read_bytes()
        size = len(data)
        headers = {"Content-Type": "application/octet-stream", "Accept-Ranges": "bytes"}
        match = _RANGES.fullmatch(wanted or "")
        if match is None:
            self._record(wanted, 200)
            self._answer(200, headers, data, body)
            return
        ranges = byte_ranges(match[1], size)
        if ranges is None:
            self._record(wanted, 416)
            self._answer(416, {"Content-Range": f"bytes */{size}"}, b"", body)
            return
        self._record(wanted, 206)
        if len(ranges) == 1:
            (start, end), = ranges
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
            self._answer(206, headers, data[start:end + 1], body)
            return
        parts = [f"--{_BOUNDARY}\r\nContent-Type: application/octet-stream\r\n"
                 f"Content-Range: bytes {start}-{end}/{size}\r\n\r\n".encode()
                 + data[start:end + 1] + b"\r\n" for start, end in ranges]
        headers["Content-Type"] = f"multipart/byteranges; boundary={_BOUNDARY}"
        self._answer(206, headers, b"".join(parts) + f"--{_BOUNDARY}--\r\n".encode(), body)

    def _authorised(self) -> bool:
        expected = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        return self.headers.get("Authorization") == f"Basic {expected}"

    def _answer(self, status: int, headers: dict[str, str], data: bytes, body: bool) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if body:
            self.wfile.write(data)

    def _record(self, wanted: str | None, status: int) -> None:
        with self.server.lock:
            self.server.requests.append({"method": self.command, "path": self.path,
                                         "range": wanted, "status": status,
                                         "agent": self.headers.get("User-Agent")})

    def handle(self) -> None:
        try:
            super().handle()
        except ConnectionError:   # a client (GDAL) that closes a kept-alive connection
            pass

    def log_message(self, format: str, *args: object) -> None:
        pass


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64


def serve(folder: Path) -> None:
    os.chdir(folder)
    server = Server(("127.0.0.1", 0), RangeHandler)
    server.requests = []
    server.lock = threading.Lock()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(server.server_address[1], flush=True)
    sys.stdin.read()   # until the test closes our stdin (or dies)
    server.shutdown()


if __name__ == "__main__":
    serve(Path(sys.argv[1]))
