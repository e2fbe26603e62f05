#!/usr/bin/env python3
"""Measures how a burst of agent replies to one Telegram chat leaves the desk.

Usage: scripts/measure-telegram-burst.py HELPDESK_BINARY [REPLIES]

Starts a fake Bot API on 127.0.0.1 that answers 429 (retry_after 1) to any message that
follows the previous one to the same chat by less than 1 s, as Telegram does; starts
`HELPDESK_BINARY serve` against it with the default pacing (1 msg/s per chat) in a fresh
data directory; sends one Telegram update (a ticket opens), then REPLIES (default 100)
agent replies at once. Prints how long the burst took, the shortest gap between two
messages, and how many 429s the fake had to give. Standard library only.
"""
import http.server
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

BINARY = sys.argv[1]
REPLIES = int(sys.argv[2]) if len(sys.argv) > 2 else 100
times, throttled = [], [0]
lock = threading.Lock()


class Bot(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        now = time.monotonic()
        with lock:
            if self.path.endswith("/sendMessage") and times and now - times[-1] < 1.0:
                throttled[0] += 1
                status, body = 429, {"ok": False, "error_code": 429, "parameters": {"retry_after": 1}}
            else:
                if self.path.endswith("/sendMessage"):
                    times.append(now)
                status, body = 200, {"ok": True, "result": {"message_id": len(times)}}
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


bot = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Bot)
threading.Thread(target=bot.serve_forever, daemon=True).start()
env = dict(os.environ, HELPDESK_ADMIN_TOKEN="measure", HELPDESK_LOG="error",
           TELEGRAM_SECRET_TOKEN="s", TELEGRAM_BOT_TOKEN="1:t",
           TELEGRAM_API_BASE=f"http://127.0.0.1:{bot.server_port}")
data_dir = tempfile.mkdtemp()
server = subprocess.Popen([BINARY, "serve", "--addr", "127.0.0.1:0", "--data-dir", data_dir],
                          env=env, stdout=subprocess.PIPE, text=True)
try:
    base = None
    for line in server.stdout:
        if line.startswith("helpdesk listening on "):
            base = line.split()[-1]
            break

    def call(method, path, body, headers):
        req = urllib.request.Request(base + path, method=method, data=json.dumps(body).encode())
        req.add_header("content-type", "application/json")
        for k, v in headers.items():
            req.add_header(k, v)
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.load(r) if r.headers.get("content-type", "").startswith("application/json") else None

    call("POST", "/webhooks/telegram", {"update_id": 1, "message": {"message_id": 1, "date": 0,
         "chat": {"id": 42, "type": "private"}, "from": {"id": 42, "is_bot": False, "first_name": "M"},
         "text": "我要投诉，订单一直没到"}}, {"X-Telegram-Bot-Api-Secret-Token": "s"})
    admin = {"authorization": "Bearer measure"}
    ticket = None
    while not ticket:
        time.sleep(0.05)
        req = urllib.request.Request(base + "/tickets?channel=telegram", headers=admin)
        with urllib.request.urlopen(req) as r:
            found = json.load(r)["tickets"]
        ticket = found[0]["id"] if found else None
    while len(times) < 1:
        time.sleep(0.05)
    start = time.monotonic()
    for i in range(REPLIES):
        call("POST", f"/tickets/{ticket}/replies", {"text": f"第 {i} 条"}, admin)
    while len(times) < REPLIES + 1:
        time.sleep(0.1)
    burst = times[1:]
    gaps = [b - a for a, b in zip(times, times[1:])]
    print(f"{REPLIES} replies delivered in {burst[-1] - start:.1f} s "
          f"({REPLIES / (burst[-1] - start):.2f} msg/s); shortest gap {min(gaps):.3f} s; "
          f"429s answered by the fake: {throttled[0]}")
finally:
    server.terminate()
    server.wait()
