"""A small standard-library HTTP server for Pis without a screen.

    /                  a page with the live stream and the live top-k
    /stream.mjpg       MJPEG stream of the annotated frames (multipart/x-mixed-replace)
    /frame.jpg         the latest annotated frame
    /predictions.json  the latest frame index, top-k and timings
    /capture           POST {"label": NAME}: save the current camera frame into ROOT/NAME/ (only with collect_to)

Off loopback every path needs the start-up URL's token (query or cookie), else 403: see docs/edge.md.
"""

from __future__ import annotations

import contextlib
import functools
import html
import ipaddress
import json
import secrets
import socket
import sys
import threading
from http import HTTPStatus
from http.cookies import CookieError, SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

import numpy as np

from edge_app.collect import CaptureFolders, check_label, encode_jpeg
from toolkit.errors import ToolkitError

BOUNDARY = "frame"
STREAM_JPEG_QUALITY = 80  # of the streamed frames
MAX_CAPTURE_REQUEST_BYTES = 4096
CAPTURE_REQUEST_HINT = 'send JSON: {"label": NAME}'

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>toolkit classify</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{{font-family:sans-serif;margin:1em;background:#111;color:#eee}}img{{max-width:100%;image-rendering:pixelated}}
ol{{font-size:1.4em}}#status{{color:#aaa}}</style></head>
<body><h1>toolkit classify</h1>
<p id="status">model {model} &middot; source {source}</p>
<img src="stream.mjpg{query}" alt="annotated camera stream" width="480">
<ol id="top-k">{initial}</ol>
<p>frame <span id="frame">-</span> &middot; <span id="fps">-</span> FPS &middot; <span id="ms">-</span> ms</p>
{capture}<script>
async function refresh() {{
  try {{
    const response = await fetch("predictions.json{query}", {{cache: "no-store"}});
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

CAPTURE_CONTROL = """<form id="capture"><label>label <input id="label" required maxlength="100" autocomplete="off"></label>
<button type="submit">capture</button> <span id="captured"></span></form>
<script>
document.getElementById("capture").addEventListener("submit", async event => {{
  event.preventDefault();
  const shown = document.getElementById("captured");
  try {{
    const response = await fetch("capture{query}", {{
      method: "POST", headers: {{"Content-Type": "application/json"}},
      body: JSON.stringify({{label: document.getElementById("label").value}}),
    }});
    const answer = await response.json();
    shown.textContent = response.ok ? "saved " + answer.saved : answer.error;
  }} catch (error) {{ shown.textContent = "capture failed"; }}
}});
</script>
"""


def parse_address(text: str) -> tuple[str, int]:
    """``"8080"``, ``":8080"`` or ``"host:port"`` -> (host, port); loopback unless a host is given."""
    host, _, port_text = text.rpartition(":")  # no colon: ("", "", text)
    host = host.strip("[]") or "127.0.0.1"
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ToolkitError(f"--serve needs HOST:PORT such as 127.0.0.1:8080, got {text!r}")
    return host, int(port_text)


def is_loopback(host: str) -> bool:
    """True when ``host`` (an address or "localhost") can be reached from this machine only."""
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to any address


def token_matches(expected: str | None, presented: str | None) -> bool:
    """Whether ``presented`` is the server's token (always, when the server has none); constant-time."""
    return expected is None or (presented is not None and secrets.compare_digest(presented.encode(), expected.encode()))


class _IPv6Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6  # ThreadingHTTPServer listens on IPv4 only


class PreviewServer:
    """Serves the latest annotated frame and predictions; :meth:`publish` is called once per frame."""

    def __init__(self, host: str, port: int, model: str = "", source: str = "",
                 collect_to: str | Path | None = None, aspect: tuple[int, int] = (1, 1)) -> None:
        self.model = model
        self.source = source
        self.capture_folders = CaptureFolders(collect_to, aspect) if collect_to is not None else None
        self.token = None if is_loopback(host) else secrets.token_urlsafe(24)
        self._condition = threading.Condition()
        self._encode_lock = threading.Lock()  # one JPEG encode at a time, so each frame is encoded once
        self._frame: np.ndarray | None = None
        self._original: tuple[np.ndarray, str] | None = None
        self._sequence = 0
        self._jpeg: tuple[int, bytes] | None = None
        self._predictions: dict[str, Any] = {"frame": None, "top_k": [], "fps": 0.0, "inference_ms": 0.0}
        self.stopping = False  # set by stop(): open streams end
        server_class = _IPv6Server if ":" in host else ThreadingHTTPServer
        try:
            self._httpd = server_class((host, port), functools.partial(_PreviewRequestHandler, preview=self))
        except OSError as error:
            raise ToolkitError(f"--serve cannot listen on {host}:{port}: {error.strerror or error}") from None
        # shutdown() waits for the loop's next poll: 0.5 s by default, felt at every Ctrl-C.
        serve = functools.partial(self._httpd.serve_forever, poll_interval=0.05)
        self._thread = threading.Thread(target=serve, name="preview-server", daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._httpd.server_address[:2]
        return str(host), int(port)

    @property
    def url(self) -> str:
        """The server's base URL, without the token."""
        host, port = self.address
        return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"

    @property
    def page_url(self) -> str:
        """The URL to open: :attr:`url`, with ``?token=...`` when the server needs one."""
        return self.url + self._query

    @property
    def cookie_name(self) -> str:
        # One name per port, so two servers on one host do not overwrite each other's cookie.
        return f"toolkit-token-{self.address[1]}"

    @property
    def _query(self) -> str:
        return f"?token={self.token}" if self.token else ""

    def start(self) -> "PreviewServer":
        self._thread.start()
        if self.token is not None:
            print(
                f"warning: --serve listens on {self.address[0]}: only visitors with the token of the URL below get in; "
                "plain HTTP, so anyone who can read the network traffic can read the token too",
                file=sys.stderr,
            )
        return self

    def publish(self, frame: np.ndarray, predictions: dict[str, Any], original: np.ndarray, colour_order: str) -> None:
        """Make ``frame`` (annotated BGR), ``predictions`` and ``original`` (the camera frame in ``colour_order``, which
        the capture control saves) the latest ones."""
        with self._condition:
            self._frame = frame
            self._original = (original, colour_order)
            self._predictions = predictions
            self._sequence += 1
            self._condition.notify_all()

    def stop(self) -> None:
        """Stop accepting requests, end open streams and close the socket."""
        with self._condition:
            self.stopping = True
            self._condition.notify_all()
        if self._thread.is_alive():
            self._httpd.shutdown()
        self._httpd.server_close()

    def latest_jpeg(self, after: int, timeout: float = 1.0) -> tuple[int, bytes] | None:
        """The JPEG of the first frame newer than ``after`` (waits up to ``timeout``)."""
        with self._condition:
            if not self._condition.wait_for(lambda: self.stopping or self._sequence > after, timeout=timeout) or self.stopping:
                return None
        # Viewers take turns to encode, so each frame is encoded once; publish() never waits for an encode.
        with self._encode_lock:
            with self._condition:
                if self._jpeg is not None and self._jpeg[0] == self._sequence:
                    return self._jpeg
                sequence, frame = self._sequence, self._frame
            try:
                jpeg = (sequence, encode_jpeg(frame, STREAM_JPEG_QUALITY))
            except ToolkitError:
                return None
            self._jpeg = jpeg  # read and written under the encode lock only
            return jpeg

    def predictions_json(self) -> bytes:
        """The latest predictions as JSON."""
        with self._condition:
            return json.dumps(self._predictions).encode("utf-8")

    def page(self) -> bytes:
        """The HTML page: live stream, top-k (the latest, until its script takes over) and the capture control."""
        with self._condition:
            top_k = list(self._predictions.get("top_k", []))
        initial = "".join(
            f'<li class="prediction">{html.escape(p["label"])} {100 * p["score"]:.1f}%</li>' for p in top_k
        )
        capture = CAPTURE_CONTROL.format(query=self._query) if self.capture_folders is not None else ""
        text = PAGE.format(model=html.escape(self.model), source=html.escape(self.source), initial=initial,
                           query=self._query, capture=capture)
        return text.encode("utf-8")

    def capture(self, label: str | None) -> tuple[HTTPStatus, dict[str, str]]:
        """With capture on, save the latest camera frame into ``collect_to/label/``; the status and JSON answer."""
        if label is None:
            return HTTPStatus.BAD_REQUEST, {"error": CAPTURE_REQUEST_HINT}
        try:
            check_label(label)
        except ToolkitError as error:
            return HTTPStatus.BAD_REQUEST, {"error": str(error)}
        with self._condition:
            latest = self._original
        if latest is None:
            return HTTPStatus.SERVICE_UNAVAILABLE, {"error": "no camera frame yet"}
        try:
            saved = self.capture_folders.save(label, *latest)
        except ToolkitError as error:
            return HTTPStatus.SERVICE_UNAVAILABLE, {"error": str(error)}
        return HTTPStatus.OK, {"saved": f"{saved.parent.name}/{saved.name}", "path": str(saved)}


class _PreviewRequestHandler(BaseHTTPRequestHandler):
    """One request to a :class:`PreviewServer`: every path passes the token check first."""

    set_cookie = False  # the request brought a valid ?token=: hand it back as a cookie

    def __init__(self, *args: Any, preview: PreviewServer, **kwargs: Any) -> None:
        self.preview = preview  # before the base class's __init__, which handles the whole request
        super().__init__(*args, **kwargs)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - keep stderr for the app
        return

    def end_headers(self) -> None:
        if self.set_cookie:
            self.send_header(
                "Set-Cookie", f"{self.preview.cookie_name}={self.preview.token}; Path=/; HttpOnly; SameSite=Strict"
            )
        super().end_headers()

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._answer(self._get)

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        self._answer(self._post)

    def _answer(self, route: Callable[[str], None]) -> None:
        """Refuse a request without the token, else hand its path to ``route``; a visitor who left is let go."""
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            if not self._authorised():
                self.send_error(HTTPStatus.FORBIDDEN, "open the URL toolkit classify printed at start-up, with its token")
            else:
                route(self.path.split("?", 1)[0])

    def _authorised(self) -> bool:
        """The token of the query (then handed back as a cookie) or of the cookie, where the server has one."""
        token = self.preview.token
        query = parse_qs(urlsplit(self.path).query).get("token", [None])[0]
        self.set_cookie = token is not None and token_matches(token, query)
        return self.set_cookie or token_matches(token, _cookie(self.headers.get("Cookie"), self.preview.cookie_name))

    def _get(self, path: str) -> None:
        if path in ("/", "/index.html"):
            self._send(self.preview.page(), "text/html; charset=utf-8")
        elif path == "/predictions.json":
            self._send(self.preview.predictions_json(), "application/json")
        elif path == "/frame.jpg":
            latest = self.preview.latest_jpeg(after=0, timeout=5.0)
            if latest is None:
                self.send_error(HTTPStatus.SERVICE_UNAVAILABLE, "no frame yet")
            else:
                self._send(latest[1], "image/jpeg")
        elif path == "/stream.mjpg":
            self._stream()
        else:
            self.send_error(HTTPStatus.NOT_FOUND)

    def _post(self, path: str) -> None:
        if path != "/capture" or self.preview.capture_folders is None:
            self.send_error(HTTPStatus.NOT_FOUND)
        elif self.headers.get_content_type() != "application/json":
            # JSON only: a cross-site page cannot send it without a CORS preflight this server never allows.
            self._send_json({"error": CAPTURE_REQUEST_HINT}, HTTPStatus.UNSUPPORTED_MEDIA_TYPE)
        else:
            status, answer = self.preview.capture(self._read_label())
            self._send_json(answer, status)

    def _read_label(self) -> str | None:
        """The label of a JSON body ``{"label": NAME}``, or None for any other body."""
        try:
            length = int(self.headers.get("Content-Length") or 0)
            if not 0 < length <= MAX_CAPTURE_REQUEST_BYTES:
                return None
            label = json.loads(self.rfile.read(length)).get("label")
        except (ValueError, AttributeError):
            return None
        return label if isinstance(label, str) else None

    def _send(self, body: bytes, content_type: str, status: HTTPStatus = HTTPStatus.OK) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _send_json(self, payload: dict[str, Any], status: HTTPStatus = HTTPStatus.OK) -> None:
        self._send(json.dumps(payload).encode("utf-8"), "application/json", status)

    def _stream(self) -> None:
        """MJPEG: each new annotated frame as one part, until the server stops or the visitor leaves."""
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        sent = 0
        while not self.preview.stopping:
            latest = self.preview.latest_jpeg(after=sent)
            if latest is None:
                continue
            sent, jpeg = latest
            headers = f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n"
            self.wfile.write(headers.encode() + jpeg + b"\r\n")
            self.wfile.flush()


def _cookie(header: str | None, name: str) -> str | None:
    """The value of cookie ``name`` in a Cookie header, or None."""
    cookies: SimpleCookie = SimpleCookie()
    try:
        cookies.load(header or "")
    except CookieError:
        return None
    morsel = cookies.get(name)
    return morsel.value if morsel is not None else None
