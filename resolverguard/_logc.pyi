from collections.abc import Callable
from typing import Any

def pack(items: list[Any], known: set[int] | None) -> tuple[bytes, list[Any], list[str]] | None: ...
def render(
    records: bytes, mids: list[str], rests: list[str], clients: list[str], second: Callable[[int], str]
) -> bytes | None: ...
