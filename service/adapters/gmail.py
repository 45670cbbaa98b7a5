"""The Gmail draft sink: ``users.drafts.create`` with pacing, backoff and crash-safe adoption.

Exactly-once is shared with the caller. ``drafts.create`` is not idempotent at Gmail: sending
it twice makes two drafts. The ledger flow (DESIGN §7) reserves a key before ``create`` and, on
recovery from a crash, calls ``find`` to adopt a draft made earlier. Inside ``create`` the same
rule applies to our own retries: after an attempt whose outcome is unknown (the connection
dropped, timed out, or Gmail answered 5xx — Gmail may have stored the draft anyway) the sink
looks for the draft with ``find`` before it sends ``create`` again. Rejections that store
nothing (429, 403 rate limits) are retried directly. Residual risk: Gmail's search index is
near-real-time, not transactional; the backoff before the look-up gives it time, and the
ledger's own recovery (``find`` on the next run) catches what a fast retry might miss.

``find`` searches ``to:<first recipient> subject:"<subject>"`` and confirms a hit by the
``X-Invoice-Collector-Key`` header via ``drafts.get(format=metadata)`` — ``messages.get`` would
allow ``metadataHeaders`` but is outside the ``gmail.compose`` scope, and ``drafts.get`` has no
such parameter, so it returns every header.
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Callable
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
    normalise_endpoint,
    pacer_for,
)
from service.adapters.http_retry import RetryPolicy, Transient, retry_after_seconds
from service.ports import AuthorizationError, CreatedDraft, OutgoingDraft, SinkError

log = logging.getLogger(__name__)
T = TypeVar("T")

KEY_HEADER = "X-Invoice-Collector-Key"
# Quota units per call (Gmail's published per-method costs).
CREATE_UNITS = 10
LIST_UNITS = 5
GET_UNITS = 5
# 15,000 units per user per minute / 10 units per create = 25/s. Gmail counts a rolling window,
# so a steady 25/s plus any burst lands some windows over the quota: pace 2% under it.
DRAFTS_PER_SECOND = 24.5
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
        return _Transient("connection to Gmail failed", ambiguous=True)
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


class GmailSink:
    """A DraftSink on the Gmail API (never sends; ``gmail.compose`` scope)."""

    def __init__(
        self,
        credentials: GoogleCredentials | str,
        *,
        endpoint: str | None = None,
        user_id: str = "me",
        mailbox: str | None = None,
        drafts_per_second: float = DRAFTS_PER_SECOND,
        policy: RetryPolicy = GMAIL_RETRY,
        timeout_s: float = 30.0,
        max_find_candidates: int = 20,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``credentials``: a bare access token or a google-auth credential; ``endpoint``:
        GMAIL_API_ENDPOINT (emulators, proxies); ``mailbox``: the pacing key, shared
        process-wide (defaults to ``user_id``; pass the sender address when it is "me")."""
        creds = credentials_from(credentials)
        self._service = build_service("gmail", "v1", creds, normalise_endpoint(endpoint))
        self._http = ThreadLocalHttp(creds, timeout_s)
        self._user_id = user_id
        self._mailbox = mailbox or user_id
        # A bucket of one create, not a second's worth: a full bucket on top of the steady rate is
        # exactly the burst that tips a rolling window over the quota.
        self._pacer: Pacer = pacer_for(
            self._mailbox, drafts_per_second * CREATE_UNITS, burst_units=CREATE_UNITS
        )
        self._policy = policy
        self._max_find_candidates = max_find_candidates
        self._sleep = sleep
        self._clock = clock

    def close(self) -> None:
        """Release pooled connections."""
        self._http.close()

    def __enter__(self) -> GmailSink:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- DraftSink ------------------------------------------------------------------------------
    def create(self, draft: OutgoingDraft) -> CreatedDraft:
        """Create one draft; retry transient failures, looking for the draft before re-sending."""
        deadline = self._clock() + self._policy.max_total_s
        message: dict[str, Any] = {"raw": base64.urlsafe_b64encode(draft.raw).decode("ascii")}
        if draft.thread is not None and draft.thread.thread_id:
            message["threadId"] = draft.thread.thread_id
        maybe_stored = False

        def attempt() -> CreatedDraft:
            nonlocal maybe_stored
            if maybe_stored:
                found = self._find(draft, deadline)
                if found is not None:
                    log.info("gmail: adopted draft %s after an unanswered create", found.draft_id)
                    return found
            self._pacer.acquire(CREATE_UNITS)
            try:
                reply = self._execute(
                    self._drafts().create(userId=self._user_id, body={"message": message})
                )
            except Exception as exc:
                gone = isinstance(exc, HttpError) and exc.resp.status == 404
                if gone and message.pop("threadId", None):
                    # The earlier reminder's thread is gone (deleted): start a new thread.
                    return attempt()
                failure = _classify(exc)
                # Once an attempt may have stored the draft, every later retry must look first.
                maybe_stored = maybe_stored or failure.ambiguous
                raise failure from exc
            return self._created(draft, reply)

        try:
            return self._retrying(attempt, deadline)
        except SinkError as exc:
            if maybe_stored and exc.code == "gmail_unavailable":
                # Gmail may hold the draft: whoever retries must ``find`` before creating.
                exc.code = "gmail_outcome_unknown"
            raise

    def find(self, draft: OutgoingDraft) -> CreatedDraft | None:
        """Find a draft made earlier for ``draft.key`` (recipient + subject, confirmed by key)."""
        return self._find(draft, self._clock() + self._policy.max_total_s)

    # -- internals ------------------------------------------------------------------------------
    def _drafts(self) -> Any:
        return self._service.users().drafts()

    def _execute(self, request: Any) -> Any:
        # num_retries=0: the client's own retry loop would re-send creates blindly.
        return request.execute(http=self._http.get(), num_retries=0)

    def _created(
        self, draft: OutgoingDraft, reply: dict[str, Any], rfc_message_id: str | None = None
    ) -> CreatedDraft:
        message = reply.get("message") or {}
        message_id = message.get("id")
        return CreatedDraft(
            draft_id=str(reply["id"]),
            message_id=message_id,
            thread_id=message.get("threadId"),
            rfc_message_id=rfc_message_id or draft.rfc_message_id,
            url=self._draft_url(message_id),
        )

    def _draft_url(self, message_id: str | None) -> str | None:
        # Gmail's web UI opens a draft's compose window from its message id; authuser picks
        # the right account when several are signed in. Best effort: not an API guarantee.
        if not message_id:
            return None
        account = f"?authuser={quote(self._mailbox)}" if "@" in self._mailbox else ""
        return f"https://mail.google.com/mail/{account}#drafts?compose={message_id}"

    def _retrying(self, attempt: Callable[[], T], deadline: float) -> T:
        """``attempt()`` under the retry policy; giving up is a retryable SinkError."""
        try:
            return self._policy.run(
                attempt, sleep=self._sleep, clock=self._clock, deadline=deadline
            )
        except _Transient as failure:
            raise SinkError(
                f"Gmail: {failure}; gave up after {failure.attempts} attempts",
                retryable=True,
                code="gmail_unavailable",
            ) from failure

    def _run(self, make_request: Callable[[], Any], units: int, deadline: float) -> Any:
        """Execute an idempotent call (list/get), retrying every transient failure."""

        def attempt() -> Any:
            self._pacer.acquire(units)
            try:
                return self._execute(make_request())
            except Exception as exc:
                raise _classify(exc) from exc

        return self._retrying(attempt, deadline)

    def _find(self, draft: OutgoingDraft, deadline: float) -> CreatedDraft | None:
        if not draft.to:
            return None
        # Gmail's subject: search is word-based; quotes inside the phrase would end it early.
        phrase = " ".join(draft.subject.replace('"', " ").split())
        query = f'to:{draft.to[0]} subject:"{phrase}"'
        wanted = draft.key.header_value()
        checked = 0
        page_token: str | None = None
        while checked < self._max_find_candidates:

            def search(token: str | None = page_token) -> Any:
                return self._drafts().list(
                    userId=self._user_id, q=query, maxResults=25, pageToken=token
                )

            listing = self._run(search, LIST_UNITS, deadline)
            for item in listing.get("drafts") or []:
                if checked >= self._max_find_candidates:
                    break
                checked += 1
                found = self._confirm(draft, str(item["id"]), wanted, deadline)
                if found is not None:
                    return found
            page_token = listing.get("nextPageToken")
            if not page_token:
                break
        return None

    def _confirm(
        self, draft: OutgoingDraft, draft_id: str, wanted: str, deadline: float
    ) -> CreatedDraft | None:
        try:
            reply = self._run(
                lambda: self._drafts().get(userId=self._user_id, id=draft_id, format="metadata"),
                GET_UNITS,
                deadline,
            )
        except SinkError as exc:
            if isinstance(exc.__cause__, HttpError) and exc.__cause__.resp.status == 404:
                return None  # deleted between list and get
            raise
        headers = (reply.get("message") or {}).get("payload", {}).get("headers") or []
        values = {str(h.get("name", "")).lower(): str(h.get("value", "")) for h in headers}
        if values.get(KEY_HEADER.lower(), "").strip() != wanted:
            return None
        return self._created(draft, reply, values.get("message-id") or None)
