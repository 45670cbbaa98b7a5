"""``GmailSink.create_many``: drafts.create in Gmail batch requests (<= 50 calls each).

The same exactly-once rule as single creates: a call whose outcome is unknown (5xx part, or
the whole batch connection lost) is looked up with ``find`` before it is sent again.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from googleapiclient.errors import HttpError
from googleapiclient.http import BatchHttpRequest

from service.adapters.gmail import CREATE_UNITS, MAX_BATCH_CALLS, _classify, _Transient
from service.ports import CreatedDraft, OutgoingDraft, SinkError

if TYPE_CHECKING:
    from service.adapters.gmail import GmailSink


def create_in_batches(
    sink: GmailSink, drafts: Sequence[OutgoingDraft]
) -> list[CreatedDraft | SinkError]:
    """One CreatedDraft or SinkError per draft, in order; AuthorizationError stops the run."""
    results: dict[int, CreatedDraft | SinkError] = {}
    bodies = {i: sink._create_body(d) for i, d in enumerate(drafts)}
    maybe_stored: set[int] = set()
    attempts: dict[int, int] = dict.fromkeys(bodies, 0)
    # The budget covers the pacing itself (n drafts at the configured rate) plus retries.
    rate = sink._pacer.rate / CREATE_UNITS
    deadline = sink._clock() + sink._policy.max_total_s + len(drafts) / rate

    while len(results) < len(drafts):
        pending = [i for i in bodies if i not in results]
        for i in [i for i in pending if i in maybe_stored]:
            try:
                found = sink._find(drafts[i], deadline)
            except SinkError as exc:
                if exc.code == "reauthorize":
                    raise
                results[i] = exc
                continue
            if found is not None:
                results[i] = found
            else:
                maybe_stored.discard(i)  # not stored: safe to send again
        chunk = [i for i in pending if i not in results][:MAX_BATCH_CALLS]
        if not chunk:
            break
        failures = _send(sink, drafts, bodies, chunk, results)
        worst: _Transient | None = None
        for i, failure in failures.items():
            attempts[i] += 1
            if failure.ambiguous:
                maybe_stored.add(i)
            if worst is None or (failure.retry_after_s or 0) > (worst.retry_after_s or 0):
                worst = failure
        if worst is not None:
            try:
                sink._backoff(worst, max(attempts[i] for i in failures), deadline)
            except SinkError as exc:
                for i in failures:
                    results[i] = exc
    return [results[i] for i in range(len(drafts))]


def _send(
    sink: GmailSink,
    drafts: Sequence[OutgoingDraft],
    bodies: dict[int, dict[str, Any]],
    chunk: list[int],
    results: dict[int, CreatedDraft | SinkError],
) -> dict[int, _Transient]:
    """Send one batch; fill ``results`` for settled calls; return the retryable failures."""
    failures: dict[int, _Transient] = {}
    replies: dict[int, Any] = {}
    errors: dict[int, HttpError] = {}

    def collect(request_id: str, response: Any, exception: HttpError | None) -> None:
        if exception is None:
            replies[int(request_id)] = response
        else:
            errors[int(request_id)] = exception

    sink._pacer.acquire(CREATE_UNITS * len(chunk))
    batch = BatchHttpRequest(callback=collect, batch_uri=sink.batch_uri)
    for i in chunk:
        batch.add(sink._drafts().create(userId=sink._user_id, body=bodies[i]), request_id=str(i))
    try:
        batch.execute(http=sink._http.get())
    except Exception as exc:
        try:
            failure = _classify(exc)
        except SinkError as settled:
            if settled.code == "reauthorize":
                raise
            results.update(dict.fromkeys(chunk, settled))  # e.g. the batch itself was refused
            return {}
        return dict.fromkeys(chunk, failure)
    for i, reply in replies.items():
        results[i] = sink._created(drafts[i], reply)
    for i, error in errors.items():
        if error.resp.status == 404 and "threadId" in bodies[i]["message"]:
            bodies[i]["message"].pop("threadId")  # the earlier thread is gone: new thread
            failures[i] = _Transient("thread not found", ambiguous=False, retry_after_s=0.0)
            continue
        try:
            failures[i] = _classify(error)
        except SinkError as exc:
            if exc.code == "reauthorize":
                raise
            results[i] = exc
    return failures
