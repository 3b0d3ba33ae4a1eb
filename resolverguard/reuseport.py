"""With `workers: N`, every query of one client reaches the same worker process.

The workers share each listen port with SO_REUSEPORT. Left to itself the kernel picks a socket by a
hash of the source address *and port*, so a client's queries (a new source port each, RFC 5452) are
spread over all workers, and each worker's client watch would see only part of a client's NXDOMAIN
walk. A classic BPF program attached to the port's reuseport group (SO_ATTACH_REUSEPORT_CBPF, Linux
4.5+) picks the socket from a hash of the source address alone. Sockets are numbered in the order
they joined the group, so the workers bind one at a time (see resolverguard.workers): worker k
holds the k-th socket of every group, UDP and TCP alike, and a client that retries over TCP after a
truncated answer meets the same worker. If a worker is missing (the index is past the group's
size), the kernel falls back to its own hash for that query.
"""

from __future__ import annotations

import ctypes
import socket
import struct

SO_ATTACH_REUSEPORT_CBPF = getattr(socket, "SO_ATTACH_REUSEPORT_CBPF", 51)  # asm-generic/socket.h
_NET = 0x100000000 - 0x100000  # SKF_NET_OFF: loads relative to the IP header (the program sees the payload)

_V4_MAPPED = b"\x00" * 10 + b"\xff\xff"

# linux/filter.h opcodes
_LD_B_ABS, _LD_W_ABS = 0x30, 0x20
_ALU_RSH_K, _ALU_MUL_K, _ALU_MOD_K, _ALU_XOR_X = 0x74, 0x24, 0x94, 0xAC
_JMP_JEQ_K, _JMP_JA, _MISC_TAX, _RET_A = 0x15, 0x05, 0x07, 0x16


def affinity_program(groups: int) -> list[tuple[int, int, int, int]]:
    """The program as (code, jt, jf, k): the socket index is a hash of the source address mod
    `groups` (IPv4: the address; IPv6: its last 64 bits folded, the interface identifier)."""
    if not 1 <= groups <= 0xFFFF:
        raise ValueError(f"groups must be 1..65535, not {groups}")
    return [
        (_LD_B_ABS, 0, 0, _NET + 0),  # 0: A = first byte of the IP header
        (_ALU_RSH_K, 0, 0, 4),  # 1: A = IP version
        (_JMP_JEQ_K, 2, 0, 6),  # 2: IPv6? -> 5
        (_LD_W_ABS, 0, 0, _NET + 12),  # 3: A = IPv4 source address
        (_JMP_JA, 0, 0, 4),  # 4: -> 9
        (_LD_W_ABS, 0, 0, _NET + 16),  # 5: A = IPv6 source bytes 8..11
        (_MISC_TAX, 0, 0, 0),  # 6: X = A
        (_LD_W_ABS, 0, 0, _NET + 20),  # 7: A = IPv6 source bytes 12..15
        (_ALU_XOR_X, 0, 0, 0),  # 8: A ^= X
        (_ALU_MUL_K, 0, 0, 0x9E3779B1),  # 9: Fibonacci hashing: every address bit reaches the high half
        (_ALU_RSH_K, 0, 0, 16),  # 10
        (_ALU_MOD_K, 0, 0, groups),  # 11
        (_RET_A, 0, 0, 0),  # 12: the index of the socket in the reuseport group
    ]


def steer_by_client(sock: socket.socket, groups: int) -> None:
    """Attaches the program to `sock`'s reuseport group (it applies to the whole group; every
    worker attaches the same one). Raises OSError where the kernel cannot (then the kernel's own
    spreading stays, and the caller says so)."""
    code = affinity_program(groups)
    raw = b"".join(struct.pack("HBBI", c, jt, jf, k) for c, jt, jf, k in code)
    buffer = ctypes.create_string_buffer(raw, len(raw))
    fprog = struct.pack("HxxxxxxQ", len(code), ctypes.addressof(buffer))  # struct sock_fprog
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, fprog)


def worker_of(address: str, groups: int) -> int:
    """Which worker the program sends `address` to (the same arithmetic, for tests and `explain`)."""
    packed = socket.inet_pton(socket.AF_INET6 if ":" in address else socket.AF_INET, address)
    if packed[:12] == _V4_MAPPED:
        packed = packed[12:]  # an IPv4 client on a dual-stack socket: its packets are IPv4
    if len(packed) == 4:
        word = int.from_bytes(packed, "big")
    else:
        word = int.from_bytes(packed[8:12], "big") ^ int.from_bytes(packed[12:16], "big")
    return (((word * 0x9E3779B1) & 0xFFFFFFFF) >> 16) % groups
