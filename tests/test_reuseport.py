"""The steering program on real sockets: a reuseport group of sockets on 127.0.0.1 (and ::1), clients
on their own loopback addresses, each from a new source port every time."""

from __future__ import annotations

import select
import socket

import pytest

from resolverguard.reuseport import affinity_program, steer_by_client, worker_of

CLIENTS = [f"127.0.1.{i}" for i in range(10, 40)]


def group(kind: int, family: int, host: str, size: int) -> list[socket.socket]:
    socks: list[socket.socket] = []
    port = 0
    for _ in range(size):
        s = socket.socket(family, kind)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        s.bind((host, port))
        port = s.getsockname()[1]
        if kind == socket.SOCK_STREAM:
            s.listen(64)
        socks.append(s)
    return socks


def landed(socks: list[socket.socket]) -> tuple[int, str]:
    """Which socket of the group got the next datagram or connection, and from whom."""
    ready, _, _ = select.select(socks, [], [], 2)
    assert len(ready) == 1
    sock = ready[0]
    if sock.type == socket.SOCK_STREAM:
        conn, peer = sock.accept()
        conn.close()
    else:
        _, peer = sock.recvfrom(64)
    return socks.index(sock), peer[0]


@pytest.mark.parametrize("size", [2, 3])
def test_udp_datagrams_of_one_client_reach_the_socket_its_address_picks(size: int) -> None:
    socks = group(socket.SOCK_DGRAM, socket.AF_INET, "127.0.0.1", size)
    try:
        steer_by_client(socks[-1], size)  # on any one socket: it is the group's program
        port = socks[0].getsockname()[1]
        for client in CLIENTS:
            for _ in range(4):
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as c:
                    c.bind((client, 0))
                    c.sendto(b"q", ("127.0.0.1", port))
                assert landed(socks) == (worker_of(client, size), client)
        assert {worker_of(c, size) for c in CLIENTS} == set(range(size))  # every socket has clients
    finally:
        for s in socks:
            s.close()


def test_tcp_connections_are_steered_alike() -> None:
    socks = group(socket.SOCK_STREAM, socket.AF_INET, "127.0.0.1", 2)
    try:
        steer_by_client(socks[0], 2)
        port = socks[0].getsockname()[1]
        for client in CLIENTS[:12]:
            for _ in range(2):
                with socket.socket() as c:
                    c.bind((client, 0))
                    c.connect(("127.0.0.1", port))
                    assert landed(socks) == (worker_of(client, 2), client)
    finally:
        for s in socks:
            s.close()


def test_ipv6_clients_are_steered_by_their_address() -> None:
    socks = group(socket.SOCK_DGRAM, socket.AF_INET6, "::1", 2)
    try:
        steer_by_client(socks[0], 2)
        port = socks[0].getsockname()[1]
        for _ in range(6):
            with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as c:
                c.sendto(b"q", ("::1", port))
            assert landed(socks) == (worker_of("::1", 2), "::1")
    finally:
        for s in socks:
            s.close()


def test_the_program_is_checked_before_the_kernel_sees_it() -> None:
    assert affinity_program(4)[11] == (0x94, 0, 0, 4)  # mod 4
    with pytest.raises(ValueError):
        affinity_program(0)
    assert worker_of("::ffff:127.0.1.10", 3) == worker_of("127.0.1.10", 3)  # a v4 client on a dual-stack socket
