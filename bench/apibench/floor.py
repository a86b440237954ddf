"""The transport floor for Range streaming: the same bytes as the service sends, by a bare
``os.sendfile`` loop over loopback (no HTTP framework, no authorisation, no audit), so the
service's rate can be read against what the kernel and the 2 cores allow at all.

``python floor.py FILE``: listens on 127.0.0.1 (a free port, printed on stdout), one thread
per connection, keep-alive; each ``GET`` with ``Range: bytes=a-b`` gets a 206 and those bytes.
"""

from __future__ import annotations

import os
import re
import socket
import sys
import threading

_RANGE = re.compile(rb"\r\nrange: *bytes=(\d+)-(\d+)", re.IGNORECASE)


def _serve(conn: socket.socket, fd: int, size: int) -> None:
    pending = b""
    with conn:
        while True:
            while b"\r\n\r\n" not in pending:
                data = conn.recv(65536)
                if not data:
                    return
                pending += data
            head, _, pending = pending.partition(b"\r\n\r\n")
            m = _RANGE.search(head)
            start, end = (int(m.group(1)), int(m.group(2)) + 1) if m else (0, size)
            end = min(end, size)
            conn.sendall(
                b"HTTP/1.1 206 Partial Content\r\nContent-Type: video/mp4\r\n"
                b"Content-Range: bytes %d-%d/%d\r\nContent-Length: %d\r\n\r\n"
                % (start, end - 1, size, end - start)
            )
            offset = start
            while offset < end:
                offset += os.sendfile(conn.fileno(), fd, offset, end - offset)


def main() -> None:
    fd = os.open(sys.argv[1], os.O_RDONLY)
    size = os.fstat(fd).st_size
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)
    print(srv.getsockname()[1], flush=True)
    while True:
        conn, _ = srv.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=_serve, args=(conn, fd, size), daemon=True).start()


if __name__ == "__main__":
    main()
