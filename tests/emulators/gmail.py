"""A Gmail API v1 emulator on 127.0.0.1, driven by the real google-api-python-client.

It speaks the wire format the client library sends and Google answers with: the draft and
message resources, ``drafts.list`` search, Google's error bodies, per-user quota with
``Retry-After``, and bearer-token auth (plus a tiny OAuth token endpoint so refreshing
credentials can be exercised). Tests inject faults (5xx, 429, 403 rate limits, latency,
dropped connections, "stored but the response was lost") and inspect what was stored.

In-process::

    with running_gmail_emulator(tokens={"T": "owner@example.com"}) as (gmail, base_url):
        service = build("gmail", "v1", credentials=Credentials(token="T"),
                        client_options={"api_endpoint": base_url}, static_discovery=True)
        gmail.faults.push("created_then_drop", method="drafts.create")
        ...
        assert len(gmail.drafts) == 1

Gmail's search index lags its store: with ``search_lag_s``, a ``drafts.list`` with ``q`` does
not see drafts stored less than that long ago (a ``drafts.list`` without ``q`` sees them all).

Another process (e2e, benchmarks)::

    python -m tests.emulators.gmail --port 8901 --token T
    curl http://127.0.0.1:8901/_emulator/state          # counters and drafts (ids only)
    curl -X POST -d '{"push": ["500"], "method": "drafts.create"}' .../_emulator/faults

Facts encoded here (Google's docs, checked): 15,000 quota units per user per minute;
drafts.create costs 10, drafts.list / drafts.get / messages.get cost 5; a draft joins
``threadId`` only when the message also has In-Reply-To and References and the same subject,
otherwise it starts a new thread; a threadId that is not hex is a 400, an unknown one a 404.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import email
import email.policy
import html
import itertools
import json
import math
import random
import re
import socket
import threading
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from email.message import EmailMessage, Message
from typing import Any

from werkzeug.datastructures import Headers, MultiDict
from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from tests.emulators.server import serve_until_interrupted, serve_wsgi

DEFAULT_TOKEN = "test-token"
DEFAULT_USER = "owner@example.com"
QUOTA_COSTS: dict[str, int] = {
    "drafts.create": 10,
    "drafts.list": 5,
    "drafts.get": 5,
    "messages.get": 5,
    "users.getProfile": 1,
}
KEY_HEADER = "X-Invoice-Collector-Key"
_GMAIL_ID = re.compile(r"[0-9a-fA-F]{1,16}")  # message and thread ids
_ADMIN_PREFIX = "/_emulator/"


# ---------------------------------------------------------------------------------------------
# Stored state
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StoredDraft:
    """One draft as Gmail holds it: ids, the mailbox it lives in, and the raw MIME bytes."""

    draft_id: str
    message_id: str
    thread_id: str
    user: str
    raw: bytes
    internal_date_ms: int
    history_id: int

    def message(self) -> EmailMessage:
        """The raw bytes parsed with the modern email policy."""
        parsed = email.message_from_bytes(self.raw, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed

    @property
    def key(self) -> str | None:
        """The X-Invoice-Collector-Key header, when present."""
        value = self.message().get(KEY_HEADER)
        return None if value is None else str(value)


@dataclass
class _Mailbox:
    drafts: list[StoredDraft] = field(default_factory=list)  # oldest first
    by_draft_id: dict[str, StoredDraft] = field(default_factory=dict)
    by_message_id: dict[str, StoredDraft] = field(default_factory=dict)
    thread_subjects: dict[str, str] = field(default_factory=dict)  # thread id -> base subject


# ---------------------------------------------------------------------------------------------
# Faults
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Fault:
    """One injected misbehaviour.

    kind: ``error`` (answer ``status`` with Google's body for it), ``drop`` (close the socket
    before doing anything), ``drop_after`` (do the call — store the draft — then close the
    socket: the client never learns the outcome), ``error_after`` (do the call, then answer
    ``status`` as if it failed), ``latency`` (sleep ``seconds``, then behave
    normally). For a 429, ``seconds`` is the Retry-After it announces.
    """

    kind: str
    status: int = 0
    reason: str = ""
    seconds: float = 0.0

    @classmethod
    def server_error(cls, status: int = 500) -> Fault:
        """A 5xx (500 backendError, 503 unavailable)."""
        return cls("error", status=status, reason="backendError")

    @classmethod
    def rate_limited(cls, retry_after_s: float = 1.0) -> Fault:
        """A 429 rateLimitExceeded with ``Retry-After: retry_after_s``."""
        return cls("error", status=429, reason="rateLimitExceeded", seconds=retry_after_s)

    @classmethod
    def user_rate_limited(cls) -> Fault:
        """A 403 userRateLimitExceeded (Gmail's older way of saying 429)."""
        return cls("error", status=403, reason="userRateLimitExceeded")

    @classmethod
    def drop(cls) -> Fault:
        """Close the connection without doing the call or answering."""
        return cls("drop")

    @classmethod
    def created_then_drop(cls) -> Fault:
        """Do the call (the draft is stored), then close the connection without answering."""
        return cls("drop_after")

    @classmethod
    def stored_then_error(cls, status: int = 500) -> Fault:
        """Do the call (the draft is stored), then answer a 5xx as though it had failed."""
        return cls("error_after", status=status, reason="backendError")

    @classmethod
    def latency(cls, seconds: float) -> Fault:
        """Answer normally after ``seconds``."""
        return cls("latency", seconds=seconds)

    @classmethod
    def parse(cls, text: str) -> Fault:
        """Parse the short forms: 500, 503, 429, 403, drop, created_then_drop, stored_then_500,
        latency:0.2."""
        text = text.strip().lower()
        if text in {"drop", "dropped"}:
            return cls.drop()
        if text in {"drop_after", "created_then_drop", "stored_then_drop"}:
            return cls.created_then_drop()
        if text.startswith("stored_then_"):
            return cls.stored_then_error(int(text.removeprefix("stored_then_")))
        if text.startswith("latency:"):
            return cls.latency(float(text.split(":", 1)[1]))
        status = int(text)
        if status == 429:
            return cls.rate_limited()
        if status == 403:
            return cls.user_rate_limited()
        if status >= 500:
            return cls.server_error(status)
        return cls("error", status=status, reason="invalidArgument")


_FaultLike = Fault | str


def _as_fault(value: _FaultLike) -> Fault:
    return value if isinstance(value, Fault) else Fault.parse(value)


class FaultPlan:
    """Which calls misbehave: an explicit queue first, then per-kind probabilities."""

    def __init__(self, seed: int | None = None) -> None:
        self._lock = threading.Lock()
        self._queue: deque[tuple[frozenset[str] | None, Fault]] = deque()
        self._rates: list[tuple[float, Fault, frozenset[str] | None]] = []
        self._rng = random.Random(seed)
        self.injected: Counter[str] = Counter()  # "500", "429", "drop", "drop_after", ...

    def push(self, *faults: _FaultLike, method: str | Iterable[str] | None = None) -> None:
        """Queue faults for the next matching calls, in order (``method`` e.g. drafts.create)."""
        methods = _methods(method)
        with self._lock:
            self._queue.extend((methods, _as_fault(f)) for f in faults)

    def set_rate(
        self, fault: _FaultLike, probability: float, *, method: str | Iterable[str] | None = None
    ) -> None:
        """Make each matching call misbehave this way with ``probability`` (0..1)."""
        with self._lock:
            self._rates.append((probability, _as_fault(fault), _methods(method)))

    def seed(self, seed: int) -> None:
        """Re-seed the random draws, for reproducible runs."""
        with self._lock:
            self._rng.seed(seed)

    def clear(self) -> None:
        """Forget queued faults and rates (the injected counter is kept)."""
        with self._lock:
            self._queue.clear()
            self._rates.clear()

    @property
    def pending(self) -> int:
        """How many queued faults have not fired yet."""
        with self._lock:
            return len(self._queue)

    def next_for(self, method: str) -> Fault | None:
        """The fault for this call, if any (consumes a queued one)."""
        with self._lock:
            for index, (methods, fault) in enumerate(self._queue):
                if methods is None or method in methods:
                    del self._queue[index]
                    self._count(fault)
                    return fault
            for probability, fault, methods in self._rates:
                if (methods is None or method in methods) and self._rng.random() < probability:
                    self._count(fault)
                    return fault
        return None

    def _count(self, fault: Fault) -> None:
        self.injected[str(fault.status) if fault.kind == "error" else fault.kind] += 1


def _methods(method: str | Iterable[str] | None) -> frozenset[str] | None:
    if method is None:
        return None
    return frozenset([method] if isinstance(method, str) else method)


# ---------------------------------------------------------------------------------------------
# Quota
# ---------------------------------------------------------------------------------------------
class QuotaMeter:
    """Per-user units over a rolling window (Google: 15,000 per user per minute).

    ``window_s`` and ``clock`` are injectable so tests can shrink a minute to a second.
    Rejected calls consume nothing.
    """

    def __init__(
        self,
        units: int = 15_000,
        window_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.units = units
        self.window_s = window_s
        self.clock = clock
        self._lock = threading.Lock()
        self._log: dict[str, deque[tuple[float, int]]] = defaultdict(deque)
        self._used: Counter[str] = Counter()

    def charge(self, user: str, units: int) -> float:
        """Charge ``units`` to ``user``; 0.0 when granted, else seconds until it would be."""
        with self._lock:
            now = self.clock()
            log = self._log[user]
            while log and log[0][0] <= now - self.window_s:
                self._used[user] -= log.popleft()[1]
            if self._used[user] + units > self.units:
                need = self._used[user] + units - self.units
                freed = 0
                for stamp, cost in log:
                    freed += cost
                    if freed >= need:
                        return max(stamp + self.window_s - now, 0.001)
                return self.window_s
            log.append((now, units))
            self._used[user] += units
            return 0.0

    def used(self, user: str) -> int:
        """Units charged to ``user`` inside the current window."""
        self.charge(user, 0)
        with self._lock:
            return self._used[user]

    def reset(self) -> None:
        """Forget all usage."""
        with self._lock:
            self._log.clear()
            self._used.clear()


# ---------------------------------------------------------------------------------------------
# Calls and results
# ---------------------------------------------------------------------------------------------
@dataclass
class _Call:
    method: str
    path: str
    args: MultiDict[str, str]
    headers: Headers
    body: bytes
    arrived: float  # Unix time the request reached Gmail: a draft's internalDate


@dataclass
class _Result:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False

    @classmethod
    def json(cls, status: int, payload: Any, headers: dict[str, str] | None = None) -> _Result:
        hdrs = {"Content-Type": "application/json; charset=UTF-8", **(headers or {})}
        return cls(status, json.dumps(payload, indent=2).encode(), hdrs)


_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}


def google_error(
    code: int,
    message: str,
    reason: str,
    *,
    domain: str = "global",
    headers: dict[str, str] | None = None,
    **extra: str,
) -> _Result:
    """An error in Google's JSON shape (``error.code/message/errors[]/status``)."""
    detail = {"message": message, "domain": domain, "reason": reason, **extra}
    payload = {
        "error": {
            "code": code,
            "message": message,
            "errors": [detail],
            "status": _STATUS_NAMES.get(code, "UNKNOWN"),
        }
    }
    return _Result.json(code, payload, headers)


def _unauthenticated() -> _Result:
    return google_error(
        401,
        "Request had invalid authentication credentials. Expected OAuth 2 access token, login "
        "cookie or other valid authentication credential. See "
        "https://developers.google.com/identity/sign-in/web/devconsole-project.",
        "authError",
        headers={"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/"'},
        location="Authorization",
        locationType="header",
    )


def _not_found() -> _Result:
    return google_error(404, "Requested entity was not found.", "notFound")


def _bad_request(message: str) -> _Result:
    return google_error(400, message, "badRequest")


def _fault_result(fault: Fault) -> _Result:
    if fault.status == 429:
        return _rate_limited(fault.seconds, reason=fault.reason or "rateLimitExceeded", floor=0)
    if fault.status == 403:
        return google_error(
            403,
            "User Rate Limit Exceeded",
            fault.reason or "userRateLimitExceeded",
            domain="usageLimits",
        )
    if fault.status == 503:
        return google_error(503, "The service is currently unavailable.", "backendError")
    if fault.status >= 500:
        return google_error(fault.status, "Internal error encountered.", "backendError")
    return google_error(fault.status, "Injected error.", fault.reason or "invalidArgument")


def _rate_limited(wait_s: float, reason: str = "rateLimitExceeded", floor: int = 1) -> _Result:
    seconds = max(floor, math.ceil(wait_s))  # Retry-After carries whole seconds
    until = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() + seconds))
    return google_error(
        429,
        f"User-rate limit exceeded.  Retry after {until}.000Z",
        reason,
        domain="usageLimits",
        headers={"Retry-After": str(seconds)},
    )


# ---------------------------------------------------------------------------------------------
# Search (the subset of Gmail's query language the service uses, and a little more)
# ---------------------------------------------------------------------------------------------
_TERM = re.compile(r'(-?)(?:(\w+):)?(?:"([^"]*)"|\(([^)]*)\)|(\S+))')


def _words(text: str) -> list[str]:
    # Gmail tokenises on non-alphanumerics and ignores case.
    return re.findall(r"\w+", text.lower())


def _has_phrase(haystack: list[str], phrase: list[str]) -> bool:
    n = len(phrase)
    return n == 0 or any(haystack[i : i + n] == phrase for i in range(len(haystack) - n + 1))


def _matcher(query: str) -> Callable[[EmailMessage], bool]:
    tests: list[Callable[[EmailMessage], bool]] = []
    for negate, op, quoted, grouped, bare in _TERM.findall(query):
        value = quoted or grouped or bare
        tests.append(_term_test(op.lower(), value, bool(negate)))
    return lambda msg: all(test(msg) for test in tests)


def _term_test(op: str, value: str, negate: bool) -> Callable[[EmailMessage], bool]:
    def addresses(msg: EmailMessage, *names: str) -> str:
        return " ".join(str(msg.get(name, "")) for name in names).lower()

    def test(msg: EmailMessage) -> bool:
        if op in {"to", "from", "cc", "bcc"}:
            names = ("To", "Cc", "Bcc") if op == "to" else (op.capitalize(),)
            return value.lower() in addresses(msg, *names)
        if op == "subject":
            return _has_phrase(_words(str(msg.get("Subject", ""))), _words(value))
        if op == "rfc822msgid":
            return value.strip("<>").lower() == str(msg.get("Message-ID", "")).strip("<>").lower()
        if op in {"in", "is", "label"}:
            return value.lower() in {"draft", "drafts"}
        text = " ".join(
            [str(msg.get("Subject", "")), addresses(msg, "From", "To", "Cc"), _text_of(msg)]
        )
        return _has_phrase(_words(text), _words(f"{op}:{value}" if op else value))

    return (lambda msg: not test(msg)) if negate else test


def _text_of(msg: EmailMessage) -> str:
    body = msg.get_body(preferencelist=("plain", "html"))
    if body is None:
        return ""
    try:
        return str(body.get_content())
    except (LookupError, ValueError):
        return ""


# ---------------------------------------------------------------------------------------------
# Resource shapes
# ---------------------------------------------------------------------------------------------
def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii")


def _b64url_decode(text: str) -> bytes:
    cleaned = re.sub(r"\s", "", text)
    return base64.urlsafe_b64decode(cleaned + "=" * (-len(cleaned) % 4))


def _headers_of(msg: Message, only: set[str] | None = None) -> list[dict[str, str]]:
    return [
        {"name": name, "value": str(value)}
        for name, value in msg.items()
        if only is None or name.lower() in only
    ]


def _part(msg: Message, part_id: str) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "partId": part_id,
        "mimeType": msg.get_content_type(),
        "filename": msg.get_filename() or "",
        "headers": _headers_of(msg),
    }
    if msg.is_multipart():
        resource["body"] = {"size": 0}
        children = msg.get_payload()
        assert isinstance(children, list)
        resource["parts"] = [
            _part(child, f"{part_id}.{i}" if part_id else str(i))
            for i, child in enumerate(children)
        ]
    else:
        data = msg.get_payload(decode=True)
        data = data if isinstance(data, bytes) else b""
        resource["body"] = {"size": len(data), "data": _b64url(data)} if data else {"size": 0}
    return resource


def _snippet(msg: EmailMessage) -> str:
    return html.escape(" ".join(_text_of(msg).split())[:200], quote=True)


def message_resource(
    stored: StoredDraft, fmt: str = "full", metadata_headers: Iterable[str] = ()
) -> dict[str, Any]:
    """A users.messages resource in the requested format (minimal/full/raw/metadata)."""
    msg = stored.message()
    resource: dict[str, Any] = {
        "id": stored.message_id,
        "threadId": stored.thread_id,
        "labelIds": ["DRAFT"],
        "snippet": _snippet(msg),
        "sizeEstimate": len(stored.raw),
        "historyId": str(stored.history_id),
        "internalDate": str(stored.internal_date_ms),
    }
    if fmt == "raw":
        resource["raw"] = _b64url(stored.raw)
    elif fmt == "metadata":
        only = {h.lower() for h in metadata_headers} or None
        resource["payload"] = {
            "mimeType": msg.get_content_type(),
            "headers": _headers_of(msg, only),
        }
    elif fmt == "full":
        # Gmail parses with its own MIME reader; compat32 keeps header values as written.
        resource["payload"] = _part(email.message_from_bytes(stored.raw), "")
    return resource


def _base_subject(subject: str) -> str:
    # Gmail compares subjects without reply/forward prefixes when threading.
    stripped = re.sub(r"^\s*((re|fwd?|aw|wg)\s*:\s*)+", "", subject, flags=re.IGNORECASE)
    return stripped.strip().lower()


# ---------------------------------------------------------------------------------------------
# The emulator
# ---------------------------------------------------------------------------------------------
_ROUTES = Map(
    [
        Rule("/gmail/v1/users/<user_id>/drafts", methods=["POST"], endpoint="drafts.create"),
        Rule("/upload/gmail/v1/users/<user_id>/drafts", methods=["POST"], endpoint="drafts.create"),
        Rule("/gmail/v1/users/<user_id>/drafts", methods=["GET"], endpoint="drafts.list"),
        Rule("/gmail/v1/users/<user_id>/drafts/<item_id>", methods=["GET"], endpoint="drafts.get"),
        Rule("/gmail/v1/users/<user_id>/profile", methods=["GET"], endpoint="users.getProfile"),
        Rule(
            "/gmail/v1/users/<user_id>/messages/<item_id>", methods=["GET"], endpoint="messages.get"
        ),
    ]
)


class GmailEmulator:
    """An in-memory Gmail (one mailbox per user) behind a thread-safe WSGI app (``.app``).

    tokens: a mapping access token -> user address, or an iterable of tokens that all belong
    to ``user``. refresh_tokens: refresh token -> access token it yields at ``POST /token``.
    search_lag_s: how far ``drafts.list`` searches (``q``) run behind the store.
    quota_units / quota_window_s / clock: the per-user rolling quota. latency_s: added to every
    HTTP round trip (a stand-in for the network).
    """

    def __init__(
        self,
        tokens: Mapping[str, str] | Iterable[str] = (DEFAULT_TOKEN,),
        *,
        user: str = DEFAULT_USER,
        refresh_tokens: Mapping[str, str] | None = None,
        quota_units: int = 15_000,
        quota_window_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        latency_s: float = 0.0,
        search_lag_s: float = 0.0,
        seed: int | None = None,
    ) -> None:
        self.tokens: dict[str, str] = (
            dict(tokens) if isinstance(tokens, Mapping) else dict.fromkeys(tokens, user)
        )
        self.refresh_tokens: dict[str, str] = dict(refresh_tokens or {})
        self.quota = QuotaMeter(quota_units, quota_window_s, clock)
        self.faults = FaultPlan(seed)
        self.latency_s = latency_s
        self.search_lag_s = search_lag_s
        self.calls: Counter[str] = Counter()  # per API method
        self.round_trips = 0  # HTTP requests received
        self._lock = threading.RLock()
        self._mailboxes: dict[str, _Mailbox] = defaultdict(_Mailbox)
        self._rng = random.Random(seed)
        self._ids = itertools.count(1)
        self._id_base = self._rng.randrange(0x18000000_00000000, 0x19000000_00000000)
        self._history = itertools.count(100_000)

    # -- inspection ---------------------------------------------------------------------------
    @property
    def drafts(self) -> list[StoredDraft]:
        """Every stored draft in every mailbox, oldest first."""
        with self._lock:
            everything = [d for box in self._mailboxes.values() for d in box.drafts]
        return sorted(everything, key=lambda d: d.history_id)

    def drafts_for(self, user: str = DEFAULT_USER) -> list[StoredDraft]:
        """The drafts of one mailbox, oldest first."""
        with self._lock:
            return list(self._mailboxes[user].drafts)

    def send_draft(self, draft_id: str, user: str = DEFAULT_USER) -> None:
        """A person pressed Send: the draft leaves Drafts (drafts.get answers 404 for it), its
        message stays in the thread as a sent one."""
        with self._lock:
            box = self._mailboxes[user]
            stored = box.by_draft_id.pop(draft_id)
            box.drafts.remove(stored)

    def add_draft(
        self, raw: bytes, *, user: str = DEFAULT_USER, thread_id: str | None = None
    ) -> StoredDraft:
        """Store a draft directly (no HTTP, no quota), e.g. one a person wrote in Gmail."""
        with self._lock:
            return self._store(user, raw, thread_id)

    def reset(self) -> None:
        """Empty every mailbox, counter, quota window and fault plan; the index keeps up."""
        with self._lock:
            self._mailboxes.clear()
            self.calls.clear()
            self.round_trips = 0
        self.search_lag_s = 0.0
        self.quota.reset()
        self.faults.clear()
        self.faults.injected.clear()

    # -- WSGI -----------------------------------------------------------------------------------
    def app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        """The WSGI entry point."""
        request = Request(environ)
        if request.path.startswith(_ADMIN_PREFIX):
            return self._admin(request)(environ, start_response)
        if request.path == "/token" and request.method == "POST":
            return self._token_endpoint(request)(environ, start_response)
        with self._lock:
            self.round_trips += 1
        if self.latency_s:
            time.sleep(self.latency_s)
        arrived = time.time()
        body = request.get_data(cache=False)
        result = self._dispatch(
            _Call(request.method, request.path, request.args, request.headers, body, arrived)
        )
        if result.drop:
            return _drop_connection(environ)
        response = Response(result.body, status=result.status, headers=result.headers)
        return response(environ, start_response)

    __call__ = app

    # -- one API call ---------------------------------------------------------------------------
    def _dispatch(self, call: _Call) -> _Result:
        adapter = _ROUTES.bind("emulator", path_info=call.path)
        try:
            endpoint, params = adapter.match(call.path, method=call.method)
        except HTTPException:  # NotFound, MethodNotAllowed
            return google_error(404, f"Method not found: {call.method} {call.path}", "notFound")
        name = str(endpoint)
        with self._lock:
            self.calls[name] += 1
        auth = call.headers.get("Authorization")
        token = auth[7:].strip() if auth and auth[:7].lower() == "bearer " else None
        user = self.tokens.get(token) if token else None
        if user is None:
            return _unauthenticated()
        if params["user_id"] not in {"me", user}:
            return google_error(403, f"Delegation denied for {user}", "forbidden")
        fault = self.faults.next_for(name)
        if fault is not None and fault.kind == "latency":
            time.sleep(fault.seconds)
            fault = None
        if fault is not None and fault.kind == "drop":
            return _Result(0, drop=True)
        if fault is not None and fault.kind == "error":
            return _fault_result(fault)
        wait = self.quota.charge(user, QUOTA_COSTS[name])
        if wait:
            return _rate_limited(wait)
        handler = {
            "drafts.create": self._create,
            "drafts.list": self._list,
            "drafts.get": self._get_draft,
            "messages.get": self._get_message,
            "users.getProfile": self._profile,
        }[name]
        result = handler(user, call, {k: str(v) for k, v in params.items()})
        if fault is not None and fault.kind == "drop_after":
            result.drop = True  # the call took effect; only its answer is lost
        if fault is not None and fault.kind == "error_after":
            return _fault_result(fault)  # the call took effect; the answer says it failed
        return result

    def _create(self, user: str, call: _Call, params: dict[str, str]) -> _Result:
        try:
            metadata, raw = _parse_create(call)
        except ValueError as exc:
            return _bad_request(str(exc))
        thread_id = metadata.get("threadId")
        # Gmail's thread ids are hex. One it cannot parse (a Maildir Message-ID, a web-UI id)
        # is a 400 "Invalid thread_id value"; a well-formed one it does not know (deleted, or
        # another mailbox's) a 404. Seen in clients that handle both on drafts.create and
        # messages.send, e.g. a Go test "404 notFound (stale/cross-mailbox thread)" beside
        # "400 ... Invalid thread_id value", and "Gmail rejects fake threadIds with a 400".
        if thread_id and not _GMAIL_ID.fullmatch(str(thread_id)):
            return google_error(400, "Invalid thread_id value", "invalidArgument")
        with self._lock:
            box = self._mailboxes[user]
            if thread_id and thread_id not in box.thread_subjects:
                return _not_found()
            stored = self._store(user, raw, thread_id, call.arrived)
        body = {
            "id": stored.draft_id,
            "message": {
                "id": stored.message_id,
                "threadId": stored.thread_id,
                "labelIds": ["DRAFT"],
            },
        }
        return _Result.json(200, body)

    def _store(
        self, user: str, raw: bytes, thread_id: str | None, arrived: float | None = None
    ) -> StoredDraft:
        box = self._mailboxes[user]
        n = next(self._ids)
        message_id = f"{self._id_base + n * 7919:016x}"
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        subject = _base_subject(str(msg.get("Subject", "")))
        # Gmail's rule (Message.threadId in the API reference): the requested threadId, "The
        # References and In-Reply-To headers must be set", and "The Subject headers must match".
        replies = bool(msg.get("In-Reply-To") and msg.get("References"))
        joins = bool(thread_id) and replies and box.thread_subjects.get(str(thread_id)) == subject
        thread = str(thread_id) if joins else message_id
        box.thread_subjects.setdefault(thread, subject)
        stored = StoredDraft(
            draft_id=f"r-{self._id_base % 10**18 + n * 104729}",
            message_id=message_id,
            thread_id=thread,
            user=user,
            raw=raw,
            internal_date_ms=int((arrived or time.time()) * 1000),
            history_id=next(self._history),
        )
        box.drafts.append(stored)
        box.by_draft_id[stored.draft_id] = stored
        box.by_message_id[stored.message_id] = stored
        return stored

    def _list(self, user: str, call: _Call, params: dict[str, str]) -> _Result:
        try:
            max_results = min(int(call.args.get("maxResults", "100")), 500)
            offset = int(call.args.get("pageToken") or "0")
        except ValueError:
            return _bad_request("Invalid pageToken or maxResults")
        if max_results < 1:
            return _bad_request("Invalid maxResults")
        query = call.args.get("q", "")
        matches = _matcher(query)
        with self._lock:
            newest_first = list(reversed(self._mailboxes[user].drafts))
        if query and self.search_lag_s:  # the index has not seen the newest drafts yet
            indexed_by = (time.time() - self.search_lag_s) * 1000
            newest_first = [d for d in newest_first if d.internal_date_ms <= indexed_by]
        hits = [d for d in newest_first if matches(d.message())]
        page = hits[offset : offset + max_results]
        body: dict[str, Any] = {"resultSizeEstimate": len(hits)}
        if page:  # Gmail omits empty arrays
            body["drafts"] = [
                {"id": d.draft_id, "message": {"id": d.message_id, "threadId": d.thread_id}}
                for d in page
            ]
        if offset + max_results < len(hits):
            body["nextPageToken"] = str(offset + max_results)
        return _Result.json(200, body)

    def _profile(self, user: str, call: _Call, params: dict[str, str]) -> _Result:
        with self._lock:
            box = self._mailboxes[user]
            count = len(box.drafts)
        body = {"emailAddress": user, "messagesTotal": count, "threadsTotal": count,
                "historyId": str(next(self._history))}  # fmt: skip
        return _Result.json(200, body)

    def _get_draft(self, user: str, call: _Call, params: dict[str, str]) -> _Result:
        with self._lock:
            stored = self._mailboxes[user].by_draft_id.get(params["item_id"])
        if stored is None:
            return _not_found()
        fmt = call.args.get("format", "full")
        if fmt not in {"minimal", "full", "raw", "metadata"}:
            return _bad_request(f"Invalid value at 'format' ({fmt})")
        return _Result.json(200, {"id": stored.draft_id, "message": message_resource(stored, fmt)})

    def _get_message(self, user: str, call: _Call, params: dict[str, str]) -> _Result:
        with self._lock:
            stored = self._mailboxes[user].by_message_id.get(params["item_id"])
        if stored is None:
            return _not_found()
        fmt = call.args.get("format", "full")
        if fmt not in {"minimal", "full", "raw", "metadata"}:
            return _bad_request(f"Invalid value at 'format' ({fmt})")
        wanted = call.args.getlist("metadataHeaders")
        return _Result.json(200, message_resource(stored, fmt, wanted))

    # -- OAuth token endpoint (refresh_token grant only) ------------------------------------
    def _token_endpoint(self, request: Request) -> Response:
        form = request.form
        access = self.refresh_tokens.get(form.get("refresh_token", ""))
        if form.get("grant_type") != "refresh_token" or access is None:
            body = {
                "error": "invalid_grant",
                "error_description": "Token has been expired or revoked.",
            }
            return Response(json.dumps(body), status=400, content_type="application/json")
        body2 = {"access_token": access, "expires_in": 3599, "token_type": "Bearer"}
        return Response(json.dumps(body2), status=200, content_type="application/json")

    # -- admin API for separate processes ---------------------------------------------------
    def _admin(self, request: Request) -> Response:
        action = request.path[len(_ADMIN_PREFIX) :].strip("/")
        data = request.get_json(silent=True) or {}
        if action == "state" and request.method == "GET":
            payload: Any = self.state()
        elif action == "drafts" and request.method == "GET":
            payload = [
                {
                    "draft_id": d.draft_id,
                    "message_id": d.message_id,
                    "thread_id": d.thread_id,
                    "user": d.user,
                    "key": d.key,
                    "raw": _b64url(d.raw),
                }
                for d in self.drafts
            ]
        elif action == "faults" and request.method == "POST":
            method = data.get("method")
            if data.get("push"):
                self.faults.push(*data["push"], method=method)
            for kind, probability in (data.get("rates") or {}).items():
                self.faults.set_rate(kind, float(probability), method=method)
            if data.get("clear"):
                self.faults.clear()
            payload = {"pending": self.faults.pending}
        elif action == "tokens" and request.method == "POST":
            self.tokens[str(data["token"])] = str(data.get("user", DEFAULT_USER))
            payload = {"tokens": len(self.tokens)}
        elif action == "reset" and request.method == "POST":
            self.reset()
            payload = {"reset": True}
        else:
            return Response("not found", status=404)
        return Response(json.dumps(payload), status=200, content_type="application/json")

    def state(self) -> dict[str, Any]:
        """Counters and draft ids, JSON-ready (no bodies)."""
        with self._lock:
            return {
                "round_trips": self.round_trips,
                "calls": dict(self.calls),
                "faults_injected": dict(self.faults.injected),
                "drafts": len(self.drafts),
                "draft_ids": [d.draft_id for d in self.drafts],
            }


# ---------------------------------------------------------------------------------------------
# Wire helpers
# ---------------------------------------------------------------------------------------------
def _parse_create(call: _Call) -> tuple[dict[str, Any], bytes]:
    """(message metadata, raw MIME) from the JSON, media or multipart upload forms."""
    upload = call.args.get("uploadType")
    content_type = call.headers.get("Content-Type", "")
    if call.path.startswith("/upload/"):
        if upload == "media" or content_type.lower().startswith("message/"):
            return {}, call.body
        if upload == "multipart":
            pieces = _split_multipart(content_type, call.body)
            if len(pieces) != 2:
                raise ValueError("A multipart upload needs a metadata part and a media part")
            try:
                meta = json.loads(pieces[0] or b"{}")
            except json.JSONDecodeError as exc:
                raise ValueError("Invalid JSON in the metadata part") from exc
            return dict(meta.get("message") or {}), pieces[1]
        raise ValueError(f"Unsupported uploadType: {upload}")
    try:
        body = json.loads(call.body or b"{}")
    except json.JSONDecodeError as exc:
        raise ValueError(f"Invalid JSON payload received. {exc.msg}") from exc
    message = body.get("message") if isinstance(body, dict) else None
    if not isinstance(message, dict) or not message.get("raw"):
        raise ValueError("Invalid draft: message.raw is required")
    try:
        raw = _b64url_decode(str(message["raw"]))
    except (binascii.Error, ValueError) as exc:
        raise ValueError("Invalid value for ByteString: message.raw") from exc
    return message, raw


def _split_multipart(content_type: str, body: bytes) -> list[bytes]:
    """The bodies of a multipart payload, byte for byte (the media part is the raw message)."""
    match = re.search(r'boundary="?([^";]+)"?', content_type)
    if match is None:
        raise ValueError("multipart body without a boundary")
    delimiter = b"--" + match.group(1).encode()
    bodies = []
    for chunk in body.split(delimiter)[1:]:
        if chunk.startswith(b"--"):
            break
        chunk = chunk.removeprefix(b"\r\n").removeprefix(b"\n")
        ends = [
            (i, n) for i, n in ((chunk.find(b"\r\n\r\n"), 4), (chunk.find(b"\n\n"), 2)) if i >= 0
        ]
        if not ends:
            raise ValueError("multipart part without a header/body separator")
        start, width = min(ends)  # the first blank line ends the part's headers
        content = chunk[start + width :]
        # The line break before the next delimiter belongs to the delimiter (RFC 2046).
        bodies.append(content.removesuffix(b"\n").removesuffix(b"\r"))
    return bodies


def _drop_connection(environ: dict[str, Any]) -> Iterator[bytes]:
    """A response body that, when the server starts sending it, closes the socket instead."""
    sock = environ.get("werkzeug.socket") or environ.get("gunicorn.socket")
    if sock is not None:
        with suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
    # werkzeug treats a ConnectionError from the app as "client went away": no 500, no log.
    raise BrokenPipeError("emulator dropped the connection on purpose")
    yield b""  # pragma: no cover - makes this a generator, so it runs while serving


# ---------------------------------------------------------------------------------------------
# Fixture-friendly runner and CLI
# ---------------------------------------------------------------------------------------------
@contextmanager
def running_gmail_emulator(**options: Any) -> Iterator[tuple[GmailEmulator, str]]:
    """Serve a fresh GmailEmulator(**options) on 127.0.0.1; yield (emulator, base URL)."""
    emulator = GmailEmulator(**options)
    with serve_wsgi(emulator.app) as base_url:
        yield emulator, base_url


def main(argv: list[str] | None = None) -> None:
    """Run the emulator in the foreground: ``python -m tests.emulators.gmail --port 8901``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8901)
    parser.add_argument("--token", action="append", help="a valid access token (repeatable)")
    parser.add_argument("--user", default=DEFAULT_USER, help="the mailbox the tokens open")
    parser.add_argument("--quota-units", type=int, default=15_000)
    parser.add_argument("--quota-window", type=float, default=60.0, help="seconds")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per round trip")
    parser.add_argument(
        "--fault-rate", action="append", default=[], help="KIND=P, e.g. 500=0.1 or drop=0.05"
    )
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    emulator = GmailEmulator(
        args.token or [DEFAULT_TOKEN],
        user=args.user,
        quota_units=args.quota_units,
        quota_window_s=args.quota_window,
        latency_s=args.latency,
        seed=args.seed,
    )
    for spec in args.fault_rate:
        kind, _, probability = spec.partition("=")
        emulator.faults.set_rate(kind, float(probability))
    serve_until_interrupted(
        emulator.app, args.host, args.port, lambda url: f"gmail emulator on {url}"
    )


if __name__ == "__main__":
    main()
