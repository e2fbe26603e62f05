#!/usr/bin/env python3
"""Measures how long a webchat visitor waits for an auto-reply from a running `helpdesk serve`.

Usage: scripts/measure-reply-latency.py [BASE_URL] [ROUNDS] [--after-long]

Each round opens a session, asks a sample FAQ (Chinese and English in turn) and polls the
conversation every 5 ms until the auto-reply is there. Prints p50, p95 and max in ms.
With --after-long, another visitor sends a message of 4,096 random Chinese characters (the
longest a message may be) just before each question: what one long message costs everyone
else, since auto-reply answers one message at a time.
Each round opens a session (two with --after-long), so start the server with
WEBCHAT_SESSIONS_PER_MINUTE raised over that. Uses only the standard library; talks only to
BASE_URL (default http://127.0.0.1:3000).
"""
import json
import random
import sys
import time
import urllib.request

ARGS = [a for a in sys.argv[1:] if not a.startswith("--")]
BASE = ARGS[0] if ARGS else "http://127.0.0.1:3000"
ROUNDS = int(ARGS[1]) if len(ARGS) > 1 else 50
AFTER_LONG = "--after-long" in sys.argv[1:]
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
rng = random.Random(1)
for i in range(ROUNDS):
    if AFTER_LONG:
        other = call("POST", "/webchat/sessions", {})["token"]
        long = "".join(chr(rng.randint(0x4E00, 0x9FA5)) for _ in range(4096))
        call("POST", "/webchat/messages", {"text": long}, other)
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
