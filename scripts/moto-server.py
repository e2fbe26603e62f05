#!/usr/bin/env python3
"""The local AWS emulator the tests run against: moto's server, with DynamoDB's requests
answered one at a time.

    python scripts/moto-server.py [-H HOST] [-p PORT]

moto keeps its tables in memory and answers on many threads without a lock, so a
conditional write is a check and then a write, not one step. Two writes of one item that
arrive together can both pass their condition: fifty `PATCH`es of a ticket with one
`If-Match`, sent at once, made two winners on a loaded machine (3 runs in 8), where DynamoDB
makes one. Here each DynamoDB and DynamoDB Streams request runs alone, to its last byte, as
each of DynamoDB's item writes and transactions is atomic; everything else (SQS long polls,
SSM, Lambda) is still answered concurrently. Otherwise this is `moto_server`: the same
application, options and request handler.
"""

import argparse
import os
import threading

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import run_simple

# The `X-Amz-Target` prefixes of the DynamoDB and DynamoDB Streams JSON protocols.
SERIALIZED = ("DynamoDB_20120810.", "DynamoDBStreams_20120810.")


def one_at_a_time(app, prefixes):
    """`app`, with the requests whose target starts with one of `prefixes` run under one
    lock, their whole response read inside it."""
    lock = threading.Lock()

    def serve(environ, start_response):
        if not environ.get("HTTP_X_AMZ_TARGET", "").startswith(prefixes):
            return app(environ, start_response)
        with lock:
            response = app(environ, start_response)
            try:
                return [b"".join(response)]
            finally:
                close = getattr(response, "close", None)
                if close is not None:
                    close()

    return serve


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-H", "--host", default="127.0.0.1", help="the address to listen on")
    p.add_argument("-p", "--port", type=int, default=int(os.environ.get("MOTO_PORT", 5000)),
                   help="the port to listen on")
    args = p.parse_args()
    os.environ.setdefault("MOTO_PORT", str(args.port))
    app = DomainDispatcherApplication(create_backend_app)
    app.debug = True
    run_simple(args.host, args.port, one_at_a_time(app, SERIALIZED), threaded=True,
               request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main()
