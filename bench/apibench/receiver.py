"""The bare receiver for the dock upload: only the durable work of an upload, no HTTP framework,
no database, no ledger.

``python receiver.py FOLDER``: listens on 127.0.0.1 (a free port, printed on stdout), one
connection at a time. For each ``PUT`` it reads the request line and headers, then
``Content-Length`` bytes of body into page-aligned 4 MiB buffers; each buffer is hashed
(SHA-256) and handed to a writer thread (two buffers: the next one is received and hashed
while the previous one is written), which writes it to a new file in FOLDER opened with
``O_DIRECT`` (falling back to plain writes where the file system refuses it: tmpfs, some
overlays), then ``fsync``; the answer is ``201`` with ``{"sha256": ..., "size": ...}``. The file
is removed after the answer: the bench measures, it does not keep.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import mmap
import os
import queue
import socket
import sys
import threading

BUF = 4 << 20
ALIGN = 4096


class _Writer:
    """Writes whole buffers with O_DIRECT when the file system allows it; the unaligned tail
    (the last buffer's last partial block) with O_DIRECT cleared."""

    def __init__(self, path: str) -> None:
        self.direct = True
        self.direct_bytes = 0
        try:
            self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_DIRECT, 0o600)
        except OSError:
            self.direct = False
            self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)

    def _plain(self) -> None:
        if self.direct:
            flags = fcntl.fcntl(self.fd, fcntl.F_GETFL)
            fcntl.fcntl(self.fd, fcntl.F_SETFL, flags & ~os.O_DIRECT)
            self.direct = False

    def write(self, view: memoryview) -> None:
        aligned = len(view) - len(view) % ALIGN if self.direct else 0
        done = 0
        while done < aligned:
            try:
                n = os.write(self.fd, view[done:aligned])
                done += n
                self.direct_bytes += n
            except OSError:  # O_DIRECT refused at the first write: plain writes from here on
                self._plain()
                break
        if done < len(view):
            self._plain()
            while done < len(view):
                done += os.write(self.fd, view[done:])

    def close(self) -> None:
        os.fsync(self.fd)
        os.close(self.fd)


def _receive(conn: socket.socket, folder: str, n: int) -> None:
    pending = b""
    while b"\r\n\r\n" not in pending:
        data = conn.recv(65536)
        if not data:
            return
        pending += data
    head, _, pending = pending.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    if head.lower().find(b"expect: 100-continue") >= 0:
        conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
    path = os.path.join(folder, f"bare-receiver-{os.getpid()}-{n}")
    out = _Writer(path)
    bufs = [mmap.mmap(-1, BUF), mmap.mmap(-1, BUF)]  # page-aligned, as O_DIRECT needs
    free: queue.Queue[int] = queue.Queue()
    full: queue.Queue[tuple[int, int] | None] = queue.Queue()
    for i in range(len(bufs)):
        free.put(i)
    failed: list[BaseException] = []

    def writer() -> None:
        try:
            while (item := full.get()) is not None:
                out.write(memoryview(bufs[item[0]])[: item[1]])
                free.put(item[0])
        except BaseException as exc:  # reported after the body is read
            failed.append(exc)
            free.put(-1)

    thread = threading.Thread(target=writer)
    thread.start()
    h = hashlib.sha256()
    got = 0
    try:
        while got < length:
            i = free.get()
            if i < 0:
                break
            view = memoryview(bufs[i])
            fill = 0
            if pending:
                fill = len(pending)
                view[:fill] = pending
                pending = b""
            want = min(BUF, length - got)
            while fill < want:
                k = conn.recv_into(view[fill:want])
                if not k:
                    raise ConnectionError("closed mid-body")
                fill += k
            h.update(view[:fill])
            got += fill
            full.put((i, fill))
    finally:
        full.put(None)
        thread.join()
    out.close()
    os.unlink(path)
    if failed:
        raise failed[0]
    body = json.dumps(
        {"sha256": h.hexdigest(), "size": got, "o_direct_bytes": out.direct_bytes}
    ).encode()
    conn.sendall(
        b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
    )


def main() -> None:
    folder = sys.argv[1]
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    print(srv.getsockname()[1], flush=True)
    n = 0
    while True:
        conn, _ = srv.accept()
        n += 1
        with conn, contextlib.suppress(ConnectionError):
            _receive(conn, folder, n)


if __name__ == "__main__":
    main()
