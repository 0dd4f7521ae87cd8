#!/usr/bin/python3
"""Notification receivers for tests/notify.rs, run in the lab's manager
namespace: a real SMTP server (Debian's python3-aiosmtpd) and a small HTTP
server. Every mail and every POST is written to DIR as one JSON file:
mail-N.json {"from", "to", "data"} and http-N.json {"path", "headers" (names in
lower case), "body"}.

HTTP paths: /ok answers 200; /hang answers only after 120 s; /fail answers 500.

    receivers.py DIR ADDRESS SMTP_PORT HTTP_PORT [TLS_PORT CERT KEY USER PASSWORD_FILE]
                                                    prints "ready" when all listen

With TLS_PORT, a second SMTP server there requires STARTTLS (CERT, KEY) and
AUTH as USER with the password in PASSWORD_FILE; its mails record "auth".
"""
import ssl
import itertools
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from aiosmtpd.controller import Controller

out_dir, address, smtp_port, http_port = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
counter = itertools.count(1)
lock = threading.Lock()


def save(kind, record):
    with lock:
        n = next(counter)
    tmp = os.path.join(out_dir, f".{kind}-{n}.json")
    with open(tmp, "w") as f:
        json.dump(record, f)
    os.rename(tmp, os.path.join(out_dir, f"{kind}-{n}.json"))


class Mail:
    async def handle_DATA(self, server, session, envelope):
        auth = getattr(session, "auth_data", None)
        login = auth.login if session.authenticated and hasattr(auth, "login") else None
        save("mail", {
            "from": envelope.mail_from,
            "to": envelope.rcpt_tos,
            "data": envelope.content.decode("utf-8", "replace"),
            "auth": login.decode() if isinstance(login, bytes) else login,
            "tls": session.ssl is not None,
        })
        return "250 OK"


def authenticator(user, password):
    from aiosmtpd.smtp import AuthResult, LoginPassword

    def check(server, session, envelope, mechanism, auth_data):
        ok = isinstance(auth_data, LoginPassword) and auth_data.login.decode() == user \
            and auth_data.password.decode() == password
        return AuthResult(success=ok, handled=False, auth_data=auth_data)
    return check


class Web(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0"))).decode("utf-8", "replace")
        if self.path == "/hang":
            time.sleep(120)
        save("http", {"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body})
        self.send_response(500 if self.path == "/fail" else 200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


smtp = Controller(Mail(), hostname=address, port=smtp_port)
smtp.start()
if len(sys.argv) > 5:
    tls_port, cert, key, user, password_file = int(sys.argv[5]), *sys.argv[6:10]
    with open(password_file) as f:
        password = f.readline().rstrip("\n")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    secure = Controller(Mail(), hostname=address, port=tls_port, tls_context=ctx,
                        require_starttls=True, authenticator=authenticator(user, password),
                        auth_require_tls=True)
    secure.start()
web = ThreadingHTTPServer((address, http_port), Web)
web.daemon_threads = True
print("ready", flush=True)
try:
    web.serve_forever()
finally:
    smtp.stop()
