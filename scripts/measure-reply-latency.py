#!/usr/bin/env python3
"""Measures how long a webchat visitor waits for an auto-reply from a running `helpdesk serve`.

Usage: scripts/measure-reply-latency.py [BASE_URL] [ROUNDS]

Each round opens a session, asks a sample FAQ (Chinese and English in turn) and polls the
conversation every 5 ms until the auto-reply is there. Prints p50, p95 and max in ms.
Uses only the standard library; talks only to BASE_URL (default http://127.0.0.1:3000).
"""
import json
import sys
import time
import urllib.request

BASE = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:3000"
ROUNDS = int(sys.argv[2]) if len(sys.argv) > 2 else 50
QUESTIONS = ["我忘记密码了，怎么重置？", "How do I reset my password?", "你们几点上班？", "What are your working hours?"]


def call(method, path, body=None, token=None):
    req = urllib.request.Request(BASE + path, method=method,
                                 data=None if body is None else json.dumps(body).encode())
    req.add_header("content-type", "application/json")
    if token:
        req.add_header("authorization", "Bearer " + token)
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.load(r)


waits = []
for i in range(ROUNDS):
    token = call("POST", "/webchat/sessions", {})["token"]
    start = time.perf_counter()
    call("POST", "/webchat/messages", {"text": QUESTIONS[i % len(QUESTIONS)]}, token)
    while True:
        messages = call("GET", "/webchat/messages", token=token)["messages"]
        if any(m["kind"] in ("auto_reply", "handoff") for m in messages):
            break
        if time.perf_counter() - start > 10:
            sys.exit("no answer within 10 s")
        time.sleep(0.005)
    waits.append((time.perf_counter() - start) * 1000)

waits.sort()
pick = lambda q: waits[min(len(waits) - 1, int(q * len(waits)))]
print(f"rounds={len(waits)} p50={pick(0.5):.1f}ms p95={pick(0.95):.1f}ms max={waits[-1]:.1f}ms")
