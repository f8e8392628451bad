"""A small standard-library HTTP server for Pis without a screen.

    /                  a page with the live stream and the live top-k
    /stream.mjpg       MJPEG stream of the annotated frames (multipart/x-mixed-replace)
    /frame.jpg         the latest annotated frame
    /predictions.json  the latest frame index, top-k and timings

Frames are JPEG-encoded lazily, once per frame and only while someone is watching.
"""

from __future__ import annotations

import html
import json
import socket
import sys
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np

from toolkit.errors import ToolkitError

BOUNDARY = "frame"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>toolkit classify</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{{font-family:sans-serif;margin:1em;background:#111;color:#eee}}img{{max-width:100%;image-rendering:pixelated}}
ol{{font-size:1.4em}}#status{{color:#aaa}}</style></head>
<body><h1>toolkit classify</h1>
<p id="status">model {model} &middot; source {source}</p>
<img src="stream.mjpg" alt="annotated camera stream" width="480">
<ol id="top-k">{initial}</ol>
<p>frame <span id="frame">-</span> &middot; <span id="fps">-</span> FPS &middot; <span id="ms">-</span> ms</p>
<script>
async function refresh() {{
  try {{
    const response = await fetch("predictions.json", {{cache: "no-store"}});
    const latest = await response.json();
    const list = document.getElementById("top-k");
    list.replaceChildren(...latest.top_k.map(p => {{
      const item = document.createElement("li");
      item.className = "prediction";
      item.textContent = p.label + " " + (100 * p.score).toFixed(1) + "%";
      return item;
    }}));
    document.getElementById("frame").textContent = latest.frame;
    document.getElementById("fps").textContent = latest.fps.toFixed(1);
    document.getElementById("ms").textContent = latest.inference_ms.toFixed(2);
  }} catch (error) {{ document.getElementById("status").textContent = "disconnected"; }}
  setTimeout(refresh, 500);
}}
refresh();
</script></body></html>
"""


def parse_address(text: str) -> tuple[str, int]:
    """``"8080"``, ``":8080"`` or ``"host:port"`` -> (host, port); loopback unless a host is given."""
    host, separator, port_text = text.rpartition(":")
    if not separator:
        host, port_text = "", text
    host = host.strip("[]") or "127.0.0.1"
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ToolkitError(f"--serve needs HOST:PORT such as 127.0.0.1:8080, got {text!r}")
    return host, int(port_text)


class _IPv6Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6  # ThreadingHTTPServer listens on IPv4 only


class PreviewServer:
    """Serves the latest annotated frame and predictions; :meth:`publish` is called once per frame."""

    def __init__(self, host: str, port: int, model: str = "", source: str = "", jpeg_quality: int = 80) -> None:
        self.model = model
        self.source = source
        self.jpeg_quality = jpeg_quality
        self._condition = threading.Condition()
        self._frame: np.ndarray | None = None
        self._sequence = 0
        self._jpeg: tuple[int, bytes] | None = None
        self._predictions: dict[str, Any] = {"frame": None, "top_k": [], "fps": 0.0, "inference_ms": 0.0}
        self._stopping = False
        server_class = _IPv6Server if ":" in host else ThreadingHTTPServer
        try:
            self._httpd = server_class((host, port), self._handler_class())
        except OSError as error:
            raise ToolkitError(f"--serve cannot listen on {host}:{port}: {error.strerror or error}") from None
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="preview-server", daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._httpd.server_address[:2]
        return str(host), int(port)

    @property
    def url(self) -> str:
        host, port = self.address
        return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"

    def start(self) -> "PreviewServer":
        self._thread.start()
        if self.address[0] not in LOOPBACK_HOSTS:
            print(f"warning: --serve listens on {self.address[0]}: anyone on the network can watch", file=sys.stderr)
        return self

    def publish(self, frame: np.ndarray, predictions: dict[str, Any]) -> None:
        """Make ``frame`` (annotated BGR) and ``predictions`` the latest ones."""
        with self._condition:
            self._frame = frame
            self._predictions = predictions
            self._sequence += 1
            self._condition.notify_all()

    def stop(self) -> None:
        """Stop accepting requests, end open streams and close the socket."""
        with self._condition:
            self._stopping = True
            self._condition.notify_all()
        if self._thread.is_alive():
            self._httpd.shutdown()
        self._httpd.server_close()

    def _latest_jpeg(self, after: int, timeout: float = 1.0) -> tuple[int, bytes] | None:
        """The JPEG of the first frame newer than ``after`` (waits up to ``timeout``)."""
        with self._condition:
            if not self._condition.wait_for(
                lambda: self._stopping or (self._frame is not None and self._sequence > after), timeout=timeout
            ):
                return None
            if self._stopping:
                return None
            if self._jpeg is None or self._jpeg[0] != self._sequence:
                import cv2

                ok, encoded = cv2.imencode(".jpg", self._frame, [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
                if not ok:
                    return None
                self._jpeg = (self._sequence, encoded.tobytes())
            return self._jpeg

    def _page(self) -> bytes:
        with self._condition:
            top_k = list(self._predictions.get("top_k", []))
        initial = "".join(
            f'<li class="prediction">{html.escape(p["label"])} {100 * p["score"]:.1f}%</li>' for p in top_k
        )
        text = PAGE.format(model=html.escape(self.model), source=html.escape(self.source), initial=initial)
        return text.encode("utf-8")

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - keep stderr for the app
                return

            def _send(self, body: bytes, content_type: str) -> None:
                self.send_response(HTTPStatus.OK)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                path = self.path.split("?", 1)[0]
                try:
                    if path in ("/", "/index.html"):
                        self._send(server._page(), "text/html; charset=utf-8")
                    elif path == "/predictions.json":
                        with server._condition:
                            payload = json.dumps(server._predictions)
                        self._send(payload.encode("utf-8"), "application/json")
                    elif path == "/frame.jpg":
                        latest = server._latest_jpeg(after=0, timeout=5.0)
                        if latest is None:
                            self.send_error(HTTPStatus.SERVICE_UNAVAILABLE, "no frame yet")
                        else:
                            self._send(latest[1], "image/jpeg")
                    elif path == "/stream.mjpg":
                        self._stream()
                    else:
                        self.send_error(HTTPStatus.NOT_FOUND)
                except (BrokenPipeError, ConnectionResetError):
                    return

            def _stream(self) -> None:
                self.send_response(HTTPStatus.OK)
                self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                sent = 0
                while not server._stopping:
                    latest = server._latest_jpeg(after=sent)
                    if latest is None:
                        continue
                    sent, jpeg = latest
                    self.wfile.write(
                        f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n".encode()
                    )
                    self.wfile.write(jpeg)
                    self.wfile.write(b"\r\n")
                    self.wfile.flush()

        return Handler
