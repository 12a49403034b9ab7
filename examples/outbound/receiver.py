#!/usr/bin/env python3
"""A webhook receiver that verifies hookbus's Standard Webhooks signatures.

    python3 examples/outbound/receiver.py --port 9000 --secret whsec_...   [--fail]

It prints each event it accepts. With --fail it answers 500 to everything (to watch retries,
expiry and suspension); send it SIGUSR1 to toggle failing at run time.
Standard library only: Python 3.8 or later.
"""

import argparse
import base64
import hashlib
import hmac
import json
import signal
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOLERANCE_SECONDS = 5 * 60


def verify(secret: str, headers, body: bytes) -> bool:
    """True when one of the `v1,` signatures matches and the timestamp is recent."""
    msg_id = headers.get("webhook-id")
    timestamp = headers.get("webhook-timestamp")
    signatures = headers.get("webhook-signature", "")
    if not msg_id or not timestamp:
        return False
    if abs(time.time() - int(timestamp)) > TOLERANCE_SECONDS:
        return False  # a replay of an old request
    key = base64.b64decode(secret[len("whsec_"):]) if secret.startswith("whsec_") else secret.encode()
    signed = f"{msg_id}.{timestamp}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    # During a secret rotation several signatures are sent, space-separated: any one may match.
    return any(
        hmac.compare_digest(part.split(",", 1)[1], expected)
        for part in signatures.split(" ")
        if part.startswith("v1,")
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--secret", required=True, help="the subscription's whsec_ secret")
    parser.add_argument("--fail", action="store_true", help="answer 500 to everything")
    args = parser.parse_args()
    state = {"fail": args.fail}

    def toggle(*_):
        state["fail"] = not state["fail"]
        print(f"-- now {'failing' if state['fail'] else 'accepting'}", flush=True)

    signal.signal(signal.SIGUSR1, toggle)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            if state["fail"]:
                print(f"500 (failing on purpose) {self.headers.get('webhook-id')}", flush=True)
                return self.answer(500)
            if not verify(args.secret, self.headers, body):
                print("401 bad signature", flush=True)
                return self.answer(401)
            event = json.loads(body)
            print(f"200 {event['eventName']} {event['eventId']} {json.dumps(event['data'])}", flush=True)
            self.answer(200)

        def answer(self, status):
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *_):
            pass

    print(f"listening on http://127.0.0.1:{args.port}/", flush=True)
    ThreadingHTTPServer(("127.0.0.1", args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
