"""The embedded stack's port check agrees with how the API server binds."""

from __future__ import annotations

import socket

from cli.embedded import port_is_free


def _time_wait_port() -> int:
    """A loopback port whose only trace is a server-side connection in TIME_WAIT."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = int(listener.getsockname()[1])
    client = socket.create_connection(("127.0.0.1", port))
    accepted, _ = listener.accept()
    accepted.close()  # the server closes first, so its side of the connection is in TIME_WAIT
    client.recv(1)
    client.close()
    listener.close()
    return port


def test_a_port_left_in_time_wait_is_free_for_the_server() -> None:
    port = _time_wait_port()
    with socket.socket() as plain, socket.socket() as server_like:
        # The old check (a bind without SO_REUSEADDR) refused this port...
        try:
            plain.bind(("127.0.0.1", port))
            plain_refused = False
        except OSError:
            plain_refused = True
        assert plain_refused
        # ...which the server binds the way it always does.
        server_like.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server_like.bind(("127.0.0.1", port))
    assert port_is_free("127.0.0.1", port)


def test_a_listening_port_is_taken() -> None:
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        assert not port_is_free("127.0.0.1", int(listener.getsockname()[1]))
