"""Small network tools that run inside a host of the test bed.

    python -m tests.netbed_tools tcp HOST PORT FILE
        send FILE's bytes as one message (connect, send, half-close), then
        print the answer's length and bytes (nothing or `0` if none)
    python -m tests.netbed_tools udp HOST PORT FILE
        send FILE's bytes as one datagram
    python -m tests.netbed_tools record LISTEN_HOST LISTEN_PORT HOST PORT FILE
        a recorder: take one message on LISTEN_HOST:LISTEN_PORT, write
        its exact bytes to FILE, pass it on to HOST:PORT, and give the
        answer back on the same connection; then exit

The outsider uses `tcp` and `udp` to send what it forged or captured;
a signed client sends through `record` so that the test gets the exact
bytes of a real signed message, to replay. Errors are one line on stderr
and exit status 1. `bin/netbed` runs `forward` on the client host so
that a browser on the machine itself reaches the Manager's dashboard.
"""

import pathlib
import socket
import sys
import threading

from mapreduce.reactor.net import request, send_datagram

TIMEOUT = 10.0


def send_tcp(host, port, data):
    """Send `data` as one message; return the answer (b"" for none)."""
    return request(host, int(port), data, TIMEOUT)


def receive_message(connection):
    """Read one message: every byte until the sender half-closes."""
    received = bytearray()
    while True:
        chunk = connection.recv(65536)
        if not chunk:
            return bytes(received)
        received += chunk


def record(listen, target, path):
    """Take one message on `listen`, keep it in `path`, pass it on.

    `listen` and `target` are (host, port). The answer from `target`
    goes back to the sender, so that the sender sees a normal exchange.
    """
    with socket.create_server((listen[0], int(listen[1]))) as server:
        print("listening", flush=True)
        server.settimeout(TIMEOUT * 3)
        connection, _ = server.accept()
        with connection:
            connection.settimeout(TIMEOUT)
            data = receive_message(connection)
            pathlib.Path(path).write_bytes(data)
            answer = send_tcp(target[0], target[1], data)
            connection.sendall(answer)


def copy(source, target):
    """Copy bytes from socket `source` to `target` until EOF or an error."""
    try:
        while True:
            data = source.recv(65536)
            if not data:
                break
            target.sendall(data)
        target.shutdown(socket.SHUT_WR)
    except OSError:
        for sock in (source, target):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def relay(connection, target):
    """Connect `connection` to `target` (host, port); copy both ways."""
    with connection:
        try:
            upstream = socket.create_connection(target, timeout=TIMEOUT)
        except OSError:
            return
        with upstream:
            upstream.settimeout(None)
            back = threading.Thread(target=copy, args=(upstream, connection),
                                    daemon=True)
            back.start()
            copy(connection, upstream)
            back.join()


def forward(listener_fd, target):
    """Relay every connection to listening socket `listener_fd` to target."""
    with socket.socket(fileno=int(listener_fd)) as listener:
        while True:
            connection, _ = listener.accept()
            threading.Thread(target=relay, daemon=True, args=(
                connection, (target[0], int(target[1])))).start()


def main(argv):
    """Run one tool; return the exit status."""
    try:
        if argv[:1] == ["tcp"] and len(argv) == 4:
            answer = send_tcp(argv[1], argv[2],
                              pathlib.Path(argv[3]).read_bytes())
            print(len(answer), answer.decode("utf-8", "replace"))
        elif argv[:1] == ["udp"] and len(argv) == 4:
            if not send_datagram(argv[1], int(argv[2]),
                                 pathlib.Path(argv[3]).read_bytes()):
                raise OSError("the datagram could not be sent")
        elif argv[:1] == ["record"] and len(argv) == 6:
            record(argv[1:3], argv[3:5], argv[5])
        elif argv[:1] == ["forward"] and len(argv) == 4:
            forward(argv[1], argv[2:4])
        else:
            print(__doc__, file=sys.stderr)
            return 2
    except (OSError, ValueError) as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
