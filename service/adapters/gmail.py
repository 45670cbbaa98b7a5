"""The Gmail draft sink: ``users.drafts.create`` paced to the mailbox's quota, never sent twice.

``drafts.create`` is not idempotent, so ``create`` retries only failures that certainly stored
nothing (a 429 or 403 rate limit, a connection never made). After one whose outcome is unknown
(a 5xx, a timeout, a dropped connection) it raises OutcomeUnknown: the ledger keeps the key
reserved, and a call that finds the lease expired reconciles it with ``find``. Not at once:
Gmail's search index lags its store, and a search right after would miss a draft Gmail kept.
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar
from urllib.parse import quote

import google.auth.exceptions
from googleapiclient.errors import HttpError

from service.adapters.google_api import (
    GoogleCredentials,
    Pacer,
    ThreadLocalHttp,
    TransportFailure,
    build_service,
    credentials_from,
    error_details,
    is_rate_limited,
)
from service.adapters.http_retry import RetryPolicy, Transient, retry_after_seconds
from service.ports import (
    KEY_HEADER,
    AuthorizationError,
    CreatedDraft,
    LedgerEntry,
    OutcomeUnknown,
    OutgoingDraft,
    SinkError,
)

T = TypeVar("T")

# Quota units per call (Gmail's published per-method costs): create 10, list and get 5.
CREATE_UNITS = 10
READ_UNITS = 5
GMAIL_RETRY = RetryPolicy()  # the shared defaults: 8 tries within 60 s
_AUTH_REASONS = frozenset({"authError", "insufficientPermissions", "forbidden"})


class _Transient(Transient):
    """A failure worth retrying. ``ambiguous``: Gmail may have done the work anyway."""

    def __init__(self, summary: str, ambiguous: bool, retry_after: float | None = None) -> None:
        super().__init__(summary, retry_after=retry_after)
        self.ambiguous = ambiguous


def _classify(exc: Exception) -> _Transient:
    """Return a retryable failure, or raise the exception a caller should see."""
    if isinstance(exc, google.auth.exceptions.RefreshError):
        # A bare access token cannot refresh, so the client turns Gmail's 401 into this.
        raise AuthorizationError() from exc
    if isinstance(exc, google.auth.exceptions.TransportError):
        return _Transient("token refresh could not reach Google", ambiguous=False)
    if isinstance(exc, TransportFailure | TimeoutError | ConnectionError):
        # Only a TransportFailure can tell that the request never left.
        return _Transient("connection to Gmail failed", ambiguous=getattr(exc, "sent", True))
    if not isinstance(exc, HttpError):
        raise exc
    status = int(exc.resp.status)
    reasons, message = error_details(exc.content)
    reason = ",".join(sorted(reasons))
    retry_after = retry_after_seconds(exc.resp.get("retry-after"))
    if status == 401:
        raise AuthorizationError() from exc
    if is_rate_limited(status, reasons):
        return _Transient(f"Gmail rate limited ({status} {reason})", False, retry_after)
    if status == 403 and reasons & _AUTH_REASONS:
        raise AuthorizationError(
            f"Gmail refused access ({reason}): re-authorise with the gmail.compose scope"
        ) from exc
    if status >= 500 or status == 408:
        return _Transient(f"Gmail error {status}", True, retry_after)
    raise SinkError(
        f"Gmail rejected the request: {status} {reason} {message}".strip(),
        retryable=False,
        code="gmail_rejected",
    ) from exc


def _headers(reply: dict[str, Any]) -> dict[str, str]:
    headers = (reply.get("message") or {}).get("payload", {}).get("headers") or []
    return {str(h.get("name", "")).lower(): str(h.get("value", "")).strip() for h in headers}


class GmailSink:
    """A DraftSink on the Gmail API (never sends; ``gmail.compose`` scope)."""

    def __init__(
        self,
        credentials: GoogleCredentials | str,
        *,
        pacer: Pacer,
        endpoint: str | None = None,
        mailbox: str | None = None,
        policy: RetryPolicy = GMAIL_RETRY,
        max_find_candidates: int = 20,
        newest_drafts: int = 100,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """``pacer``: the mailbox's quota, shared by every process; ``mailbox``: the sender
        (asked of Gmail when None); ``newest_drafts``: how many of the newest drafts ``find``
        reads when the search finds nothing."""
        creds = credentials_from(credentials)
        self._users = build_service("gmail", "v1", creds, endpoint).users()
        self._drafts = self._users.drafts()
        self._http = ThreadLocalHttp(creds)
        self._address = mailbox
        self._pacer = pacer
        self._policy = policy
        self._max_find_candidates = max_find_candidates
        self._newest_drafts = newest_drafts
        self._newest: dict[str, dict[str, Any]] | None = None  # key header -> drafts.get reply
        self._newest_lock = threading.Lock()
        self._sleep = sleep

    def create(self, draft: OutgoingDraft) -> CreatedDraft:
        """Create one draft, retrying only failures that stored nothing (else OutcomeUnknown)."""
        message: dict[str, Any] = {"raw": base64.urlsafe_b64encode(draft.raw).decode("ascii")}
        if draft.thread is not None and draft.thread.thread_id:
            message["threadId"] = draft.thread.thread_id

        def attempt() -> CreatedDraft:
            self._pacer.acquire(self.mailbox, CREATE_UNITS)
            try:
                reply = self._execute(self._drafts.create(userId="me", body={"message": message}))
            except Exception as exc:
                refused = isinstance(exc, HttpError) and exc.resp.status in (400, 404)
                if refused and message.pop("threadId", None):
                    # The earlier reminder's thread is gone (404) or not Gmail's (400 "Invalid
                    # thread_id value", e.g. a Maildir one); nothing was stored: a new thread.
                    return attempt()
                failure = _classify(exc)
                if failure.ambiguous:
                    raise OutcomeUnknown(
                        f"Gmail: {failure}; the draft may exist", code="gmail_outcome_unknown"
                    ) from exc
                raise failure from exc
            return self._created(draft, reply)

        return self._retrying(attempt)

    def find(self, draft: OutgoingDraft) -> CreatedDraft | None:
        """The draft made earlier for ``draft.key``: searched by recipient and subject, else among
        the newest drafts, and confirmed by its key header, which ``drafts.get(format=metadata)``
        returns (``messages.get`` could filter headers but is outside the gmail.compose scope)."""
        deadline = time.monotonic() + self._policy.max_total_s
        wanted = draft.key.header_value()
        if draft.to:
            # Gmail's subject: search is word-based; quotes inside the phrase would end it early.
            phrase = " ".join(draft.subject.replace('"', " ").split())
            query = f'to:{draft.to[0]} subject:"{phrase}"'
            for draft_id in self._listed(query, self._max_find_candidates, deadline):
                reply = self._get(draft_id, "metadata", deadline)
                if reply is not None and _headers(reply).get(KEY_HEADER.lower()) == wanted:
                    return self._created(draft, reply)
        found = self._newest_by_key(deadline).get(wanted)
        return None if found is None else self._created(draft, found)

    @property
    def mailbox(self) -> str:
        """GMAIL_SENDER, else asked of Gmail once (users.getProfile, 1 unit, unpaced: the pace is
        keyed by this address) — a sidebar user's token does not say whose it is."""
        if self._address is None:
            reply = self._read(self._users.getProfile(userId="me"), None, units=0)
            self._address = str(reply["emailAddress"])
        return self._address

    def in_drafts(self, entry: LedgerEntry) -> bool:
        """True while the draft is in Drafts: Gmail answers 404 once it is sent or deleted."""
        if not entry.draft_id:
            return False
        return self._get(entry.draft_id, "minimal", None) is not None

    def _execute(self, request: Any) -> Any:
        # num_retries=0: the client's own retry loop would re-send creates blindly.
        return request.execute(http=self._http.http, num_retries=0)

    def _created(self, draft: OutgoingDraft, reply: dict[str, Any]) -> CreatedDraft:
        message = reply.get("message") or {}
        message_id = message.get("id")
        # Gmail's web UI opens a draft's compose window from its message id; authuser picks
        # the right account when several are signed in. Best effort: not an API guarantee.
        account = quote(self.mailbox)
        url = f"https://mail.google.com/mail/?authuser={account}#drafts?compose={message_id}"
        return CreatedDraft(
            draft_id=str(reply["id"]),
            message_id=message_id,
            thread_id=message.get("threadId"),
            rfc_message_id=_headers(reply).get("message-id") or draft.rfc_message_id,
            url=url if message_id else None,
            mailbox=self.mailbox,
        )

    def _retrying(self, attempt: Callable[[], T], deadline: float | None = None) -> T:
        try:
            return self._policy.run(attempt, sleep=self._sleep, deadline=deadline)
        except _Transient as failure:
            raise SinkError(
                f"Gmail: {failure}; gave up after {failure.attempts} attempts",
                retryable=True,
                code="gmail_unavailable",
            ) from failure

    def _read(self, request: Any, deadline: float | None, units: int = READ_UNITS) -> Any:
        """Execute an idempotent call (list/get), retrying every transient failure."""

        def attempt() -> Any:
            if units:
                self._pacer.acquire(self.mailbox, units)
            try:
                return self._execute(request)
            except Exception as exc:
                raise _classify(exc) from exc

        return self._retrying(attempt, deadline)

    def _listed(self, query: str | None, limit: int, deadline: float) -> Iterator[str]:
        """Up to ``limit`` draft ids, newest first: those ``query`` finds, or all of them."""
        page_token: str | None = None
        while limit > 0:
            request = self._drafts.list(
                userId="me", q=query, maxResults=min(limit, 100), pageToken=page_token
            )
            listing = self._read(request, deadline)
            items = (listing.get("drafts") or [])[:limit]
            limit -= len(items)
            yield from (str(item["id"]) for item in items)
            page_token = listing.get("nextPageToken")
            if not page_token or not items:
                return

    def _get(self, draft_id: str, view: str, deadline: float | None) -> dict[str, Any] | None:
        """drafts.get in format ``view``, or None when the draft is gone (sent or deleted)."""
        request = self._drafts.get(userId="me", id=draft_id, format=view)
        try:
            reply: dict[str, Any] = self._read(request, deadline)
        except SinkError as exc:
            if isinstance(exc.__cause__, HttpError) and exc.__cause__.resp.status == 404:
                return None
            raise
        return reply

    def _newest_by_key(self, deadline: float) -> dict[str, dict[str, Any]]:
        """The newest drafts by key header, read once per sink (one request's worth of
        reconciling): Gmail lists a draft at once, however far its search index lags."""
        with self._newest_lock:
            if self._newest is None:
                newest: dict[str, dict[str, Any]] = {}
                for draft_id in self._listed(None, self._newest_drafts, deadline):
                    reply = self._get(draft_id, "metadata", deadline)
                    if reply is not None:
                        newest.setdefault(_headers(reply).get(KEY_HEADER.lower(), ""), reply)
                self._newest = newest
            return self._newest
