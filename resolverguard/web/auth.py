"""Who may use the dashboard: a hashed password, sessions, CSRF tokens and a login rate limit.

The password is kept only as an scrypt hash (`scrypt$n$r$p$salt$hash`, base64 parts), made by
`resolverguard dashboard-password`; checking one costs ~50 ms of CPU by design, so it runs in a
worker thread, never on the loop that answers DNS. A browser logs in once and gets a session
cookie (HttpOnly, SameSite=Strict); every action it posts must carry that session's CSRF token as
well, so a page on another site cannot act with the cookie. A script sends the password as a
bearer token instead (no cookie, no CSRF needed). State lives in a `Sessions` object owned by the
running dashboard: nothing module-global, nothing on disk; a restart logs everyone out.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1  # ~50 ms, 16 MB: the parameters Python's docs suggest for logins
MAX_SESSIONS = 1_000  # oldest dropped beyond: a login flood cannot grow memory
MAX_TRACKED_CLIENTS = 10_000  # clients whose failed logins are remembered


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@dataclass(frozen=True, slots=True)
class PasswordHash:
    """An scrypt hash with its parameters, as written in the policy (`dashboard.password_hash`)."""

    n: int
    r: int
    p: int
    salt: bytes
    digest: bytes

    @classmethod
    def make(cls, password: str, salt: bytes | None = None) -> PasswordHash:
        salt = salt if salt is not None else secrets.token_bytes(16)
        digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32)
        return cls(SCRYPT_N, SCRYPT_R, SCRYPT_P, salt, digest)

    @classmethod
    def parse(cls, text: object) -> PasswordHash:
        """Raises ValueError (the config reader turns it into file:line: key: problem)."""
        parts = text.split("$") if isinstance(text, str) else []
        if len(parts) != 6 or parts[0] != "scrypt" or not all(p.isdigit() for p in parts[1:4]):
            raise ValueError("must be what `resolverguard dashboard-password` prints (scrypt$N$r$p$salt$hash)")
        n, r, p = (int(x) for x in parts[1:4])
        if n < 2**10 or n > 2**20 or n & (n - 1) or not 1 <= r <= 32 or not 1 <= p <= 16:
            raise ValueError("scrypt parameters out of range (N a power of two in 2^10..2^20, r 1-32, p 1-16)")
        try:
            salt, digest = base64.b64decode(parts[4], validate=True), base64.b64decode(parts[5], validate=True)
        except ValueError:
            raise ValueError("salt and hash must be base64") from None
        if len(salt) < 8 or len(digest) < 16:
            raise ValueError("salt or hash too short")
        return cls(n, r, p, salt, digest)

    @property
    def text(self) -> str:
        return f"scrypt${self.n}${self.r}${self.p}${_b64(self.salt)}${_b64(self.digest)}"

    def matches(self, password: str) -> bool:
        """Constant-time comparison; slow on purpose (call it in a worker thread)."""
        if len(password) > 1024:
            return False
        got = hashlib.scrypt(
            password.encode(), salt=self.salt, n=self.n, r=self.r, p=self.p, maxmem=2**28, dklen=len(self.digest)
        )
        return hmac.compare_digest(got, self.digest)


@dataclass(frozen=True, slots=True)
class Session:
    id: str
    csrf: str
    expires: float  # monotonic


class Sessions:
    """Logged-in browsers, by the random id in their cookie (bounded, oldest dropped first)."""

    def __init__(self, lifetime: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.lifetime, self.clock = lifetime, clock
        self._by_id: OrderedDict[str, Session] = OrderedDict()

    def create(self) -> Session:
        session = Session(secrets.token_urlsafe(32), secrets.token_urlsafe(32), self.clock() + self.lifetime)
        self._by_id[session.id] = session
        while len(self._by_id) > MAX_SESSIONS:
            self._by_id.popitem(last=False)
        return session

    def get(self, session_id: str | None) -> Session | None:
        session = self._by_id.get(session_id or "")
        if session is None:
            return None
        if session.expires <= self.clock():
            del self._by_id[session.id]
            return None
        return session

    def end(self, session_id: str | None) -> None:
        self._by_id.pop(session_id or "", None)


def csrf_ok(session: Session, token: str | None) -> bool:
    return token is not None and hmac.compare_digest(session.csrf.encode(), token.encode())


class LoginLimiter:
    """At most `attempts` failed logins per client address in any `window` seconds; a client over
    it is answered 429 before its password is even hashed (the hash is the expensive part)."""

    def __init__(self, attempts: int, window: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.attempts, self.window, self.clock = attempts, window, clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, client: str) -> deque[float]:
        times = self._failures.get(client)
        if times is None:
            return deque()
        cutoff = self.clock() - self.window
        while times and times[0] <= cutoff:
            times.popleft()
        return times

    def retry_after(self, client: str) -> float:
        """Seconds until `client` may try again; 0 when it may now."""
        times = self._recent(client)
        if len(times) < self.attempts:
            return 0.0
        return max(0.0, times[0] + self.window - self.clock())

    def failed(self, client: str) -> None:
        times = self._failures.setdefault(client, deque())
        self._failures.move_to_end(client)
        times.append(self.clock())
        while len(self._failures) > MAX_TRACKED_CLIENTS:
            self._failures.popitem(last=False)

    def succeeded(self, client: str) -> None:
        self._failures.pop(client, None)


class BearerCache:
    """Remembers bearer tokens already checked against the hash (by their SHA-256), so a script
    polling the API costs one scrypt, not one per request. Bounded; dropped on restart."""

    def __init__(self, size: int = 64) -> None:
        self.size = size
        self._good: OrderedDict[bytes, None] = OrderedDict()

    def known(self, token: str) -> bool:
        return hashlib.sha256(token.encode()).digest() in self._good

    def add(self, token: str) -> None:
        self._good[hashlib.sha256(token.encode()).digest()] = None
        while len(self._good) > self.size:
            self._good.popitem(last=False)
