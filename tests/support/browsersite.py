"""A small real web site on loopback for the browser tests: a form, its result table, cookies.

``/form`` posts a customer, a plan, a quantity and a token to ``/result``, which renders an
HTML table from them and records the rows it rendered, so a test can compare what the browser
extracted with what the server showed. ``/set-cookie`` and ``/state`` let a test see whether a
cookie or local storage survived from one job to the next; ``/files`` serves a download.
"""

from __future__ import annotations

import html
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

PLANS = {"basic": ("Basic", 10), "pro": ("Pro", 25)}
REPORT = b"sku,qty\nA-1,2\nB-7,1\n"

FORM = """<!doctype html><html><head><title>Order</title></head><body>
<h1>Order</h1>
<form method="post" action="/result">
  <label>Customer <input id="customer" name="customer" type="text"></label>
  <label>Plan <select id="plan" name="plan">
    <option value="basic">Basic</option><option value="pro">Pro</option>
  </select></label>
  <label>Seats <input id="seats" name="seats" type="text"></label>
  <label>Token <input id="token" name="token" type="password"></label>
  <button id="submit" type="submit">Send</button>
</form></body></html>"""

STATE = """<!doctype html><html><body>
<p id="cookies">{cookies}</p><p id="storage">…</p>
<script>
  document.getElementById("storage").textContent = localStorage.getItem("seen") || "none";
  localStorage.setItem("seen", "yes");
</script></body></html>"""

DOWNLOADS = """<!doctype html><html><body>
<a id="report" href="/files/report.csv">report</a></body></html>"""


@dataclass
class BrowserSite:
    """Threaded HTTP server; ``token`` is the value the form's token field must carry."""

    token: str
    rendered: list[list[dict[str, str]]] = field(default_factory=list)
    cookies_seen: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def result_rows(self, form: dict[str, str]) -> list[dict[str, str]]:
        """The rows /result renders for a submitted form."""
        label, price = PLANS.get(form.get("plan", ""), ("?", 0))
        seats = int(form["seats"]) if form.get("seats", "").isdigit() else 0
        return [
            {"Item": f"{label} plan for {form.get('customer', '')}", "Seats": str(seats),
             "Total": f"{seats * price:.2f}"},
            {"Item": "Token", "Seats": "",
             "Total": "accepted" if form.get("token") == self.token else "rejected"},
        ]  # fmt: skip

    def start(self) -> BrowserSite:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args: Any) -> None:
                return

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                cookie = self.headers.get("cookie") or ""
                with owner.lock:
                    owner.cookies_seen.append(cookie)
                state = STATE.format(cookies=html.escape(cookie))
                pages = {"/form": FORM, "/state": state, "/downloads": DOWNLOADS}
                if path in pages:
                    self._send(200, pages[path])
                elif path == "/to-metadata":
                    self.send_response(302)
                    self.send_header("location", "http://[::ffff:169.254.169.254]/latest/")
                    self.send_header("content-length", "0")
                    self.end_headers()
                elif path == "/set-cookie":
                    self._send(200, state, "job=one; Path=/")
                elif path == "/files/report.csv":
                    self.send_response(200)
                    self.send_header("content-type", "text/csv")
                    self.send_header("content-disposition", 'attachment; filename="report.csv"')
                    self.send_header("content-length", str(len(REPORT)))
                    self.end_headers()
                    self.wfile.write(REPORT)
                else:
                    self._send(404, "<p>not found</p>")

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                fields = parse_qs(self.rfile.read(length).decode(), keep_blank_values=True)
                form = {key: values[0] for key, values in fields.items()}
                rows = owner.result_rows(form)
                with owner.lock:
                    owner.rendered.append(rows)
                body = "".join(
                    "<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in row.values()) + "</tr>"
                    for row in rows
                )
                head = "".join(f"<th>{html.escape(k)}</th>" for k in rows[0])
                self._send(
                    200,
                    "<!doctype html><html><body><h1>Quote</h1>"
                    f'<table id="quote"><thead><tr>{head}</tr></thead>'
                    f"<tbody>{body}</tbody></table></body></html>",
                )

            def _send(self, status: int, page: str, cookie: str | None = None) -> None:
                data = page.encode()
                self.send_response(status)
                self.send_header("content-type", "text/html; charset=utf-8")
                self.send_header("content-length", str(len(data)))
                if cookie:
                    self.send_header("set-cookie", cookie)
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
