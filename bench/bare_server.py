"""The implementation limit: a bare aiohttp server on uvloop that reads each request body and
appends it to a file, answering a fixed small JSON document.

``python -m bench.bare_server PORT FILE``. It does what a produce must at least do (read the
whole body, write it to disk) and nothing else, so kbroker's produce throughput divided by this
server's, in the same run, is the share of the HTTP stack's limit kbroker reaches.
"""

from __future__ import annotations

import sys

import uvloop
from aiohttp import web

_ANSWER = b'{"offsets":[{"partition":0,"offset":0,"error_code":null,"error":null}]}'


def main() -> None:
    port = int(sys.argv[1])
    sink = open(sys.argv[2], "ab", buffering=0)  # noqa: SIM115 - lives as long as the server

    async def append(request: web.Request) -> web.Response:
        sink.write(await request.read())
        return web.Response(body=_ANSWER, content_type="application/json")

    app = web.Application(client_max_size=64 << 20)
    app.router.add_post("/{tail:.*}", append)
    uvloop.install()
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None, handle_signals=True)


if __name__ == "__main__":
    main()
