from collections.abc import Callable
from typing import Any

def pack(items: list[Any], known: set[int] | None) -> tuple[bytes, list[Any], list[str]] | None: ...
def render(
    records: bytes,
    slots: list[Any],
    clients: list[str],
    texts: dict[int, tuple[str, str]],
    make: Callable[[Any], tuple[str, str]],
    second: Callable[[int], str],
    buffer: bytearray,
) -> int | None: ...
