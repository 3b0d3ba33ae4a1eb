from collections.abc import Callable
from typing import Any

class Linear:
    def __init__(
        self,
        low: Any,
        weights: Any,
        terms: Any,
        classes: bytes,
        dense: tuple[float, float, float, float, float],
        bias: float,
        maxlen: int,
        bits: int,
        end: int,
        dot: int,
        fallback: Callable[[bytes], float],
    ) -> None: ...
    def logit(self, raw: bytes) -> float: ...
