"""QuickBooks Online as an invoice source: open invoices from the Accounting API (DESIGN §11).

QuickBooks has no column for the reminder state, so it is read from the exactly-once ledger:
the highest stage drafted for an invoice and its day are ``last_stage_sent`` and
``last_sent_at``. No second table can drift from the ledger (a draft is recorded there before
any write-back could be), so ``write_back`` changes nothing in the client's books.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import requests

from service.adapters.http_retry import RetryPolicy
from service.adapters.intuit_auth import (
    QBO_RETRY,
    IntuitTokens,
    QuickBooksAuthorizationError,
    QuickBooksError,
    RefreshTokenFile,
    send_with_retries,
)
from service.domain.invoice import INPUT_FIELDS, OUTPUT_FIELDS
from service.ports import Ledger, SheetSnapshot, SourceRow, WriteBack

QUERY = "select * from Invoice where Balance > '0'"
MINOR_VERSION = "75"  # Intuit retired minor versions 1–74 in 2025
MAX_PAGE_SIZE = 1000  # the most MAXRESULTS may ask for
NO_STAGE_LIMIT = 2**31 - 1


class QuickBooksSource:
    """The InvoiceSource port on QuickBooks Online, for one company (realm)."""

    def __init__(
        self,
        realm_id: str,
        tokens: IntuitTokens,
        ledger: Ledger,
        *,
        api_base: str,
        session: requests.Session,
        page_size: int = MAX_PAGE_SIZE,
        policy: RetryPolicy = QBO_RETRY,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be 1–{MAX_PAGE_SIZE}")
        self.scope = f"quickbooks:{realm_id}"
        self._tokens = tokens
        self._ledger = ledger
        self._url = f"{api_base.rstrip('/')}/v3/company/{realm_id}/query"
        self._session = session
        self._page_size = page_size
        self._policy = policy
        self._sleep = sleep

    def read(self) -> SheetSnapshot:
        """Every open invoice, with the reminder state the ledger holds for it."""
        rows: list[SourceRow] = []
        seen: set[str] = set()
        for invoice in self._open_invoices():
            # Offset paging can repeat an invoice when the set shifts between pages.
            qbo_id = str(invoice.get("Id", ""))
            if qbo_id and qbo_id in seen:
                continue
            seen.add(qbo_id)
            values = invoice_values(invoice)
            entry = self._ledger.latest_created(
                self.scope, str(values["invoice_id"]), NO_STAGE_LIMIT
            )
            if entry is not None:
                values["last_stage_sent"] = entry.key.stage
                values["last_sent_at"] = entry.drafted_on or entry.reserved_at.date()
            rows.append(SourceRow(row=len(rows) + 2, values=values))  # row 1 is the header
        return SheetSnapshot(self.scope, INPUT_FIELDS + OUTPUT_FIELDS, tuple(rows))

    def write_back(self, snapshot: SheetSnapshot, updates: Sequence[WriteBack]) -> int:
        """Nothing to write: the ledger already holds each draft's stage and day (see above)."""
        return 0

    def _open_invoices(self) -> Iterator[Mapping[str, Any]]:
        for start in itertools.count(1, self._page_size):  # STARTPOSITION is 1-based
            query = f"{QUERY} STARTPOSITION {start} MAXRESULTS {self._page_size}"
            page = self._query(query).get("Invoice", [])
            yield from page
            if len(page) < self._page_size:
                return

    def _query(self, query: str) -> Mapping[str, Any]:
        response = self._get(query)
        if response.status_code == 401:
            # The access token expired or was revoked early: refresh once, then retry.
            self._tokens.refresh()
            response = self._get(query)
        if response.status_code in (401, 403):
            raise QuickBooksAuthorizationError()
        try:
            body = response.json(parse_float=Decimal)  # money stays exact
        except ValueError:
            body = {}
        body = body if isinstance(body, Mapping) else {}
        result = body.get("QueryResponse", {})
        result = result if isinstance(result, Mapping) else {}
        # A 200 may still hold a Fault, beside or inside QueryResponse: never read it as no rows.
        faulted = body if "Fault" in body else result
        if response.status_code != 200 or "Fault" in faulted:
            status = response.status_code
            code = "unavailable" if status >= 500 else "quickbooks_error"
            code = "rate_limited" if status == 429 else code
            raise QuickBooksError(_fault_message(response, faulted), code=code)
        return result

    def _get(self, query: str) -> requests.Response:
        params = {"query": query, "minorversion": MINOR_VERSION}
        token = self._tokens.access_token()
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        return send_with_retries(
            lambda: self._session.get(self._url, params=params, headers=headers, timeout=60),
            self._policy,
            self._sleep,
        )


def invoice_values(invoice: Mapping[str, Any]) -> dict[str, object]:
    """One QBO Invoice as a row keyed by our field names (reminder state left empty)."""
    total = _decimal(invoice.get("TotalAmt"))
    balance = _decimal(invoice.get("Balance"))
    return {
        # DocNumber is the number on the client's invoice; Id is QBO's key when there is none.
        "invoice_id": str(invoice.get("DocNumber") or invoice.get("Id") or "").strip(),
        "client_name": _ref(invoice, "CustomerRef", "name"),
        "client_email": _ref(invoice, "BillEmail", "Address"),
        "amount": total,
        # Without multicurrency QBO may omit CurrencyRef: DEFAULT_CURRENCY then applies.
        "currency": _ref(invoice, "CurrencyRef", "value"),
        # ISO text, which parse_row reads whatever DATE_FORMAT says.
        "due_date": invoice.get("DueDate"),
        "sent_date": invoice.get("TxnDate"),
        "status": "",
        "amount_paid": total - balance if total is not None and balance is not None else None,
        "notes": "",  # PrivateNote is internal to the business: never put it in an email
        "last_stage_sent": None,
        "last_sent_at": None,
    }


def _ref(invoice: Mapping[str, Any], name: str, key: str) -> str:
    ref = invoice.get(name)
    return str(ref.get(key) or "") if isinstance(ref, Mapping) else ""


def _decimal(value: object) -> Decimal | None:
    # The body is parsed with parse_float=Decimal; str() keeps an int or a stray float exact.
    return None if value is None or isinstance(value, bool) else Decimal(str(value))


def _fault_message(response: requests.Response, body: Mapping[str, Any]) -> str:
    fault = body.get("Fault")
    errors = fault.get("Error", []) if isinstance(fault, Mapping) else []
    detail = "; ".join(
        str(e.get("Detail") or e.get("Message") or "") for e in errors if isinstance(e, dict)
    )
    tid = response.headers.get("intuit_tid")  # Intuit support asks for it
    text = f"QuickBooks answered {response.status_code}" + (f": {detail}" if detail else "")
    return text + (f" (intuit_tid {tid})" if tid else "")


class QuickBooksNotConfigured(ValueError):
    """A setting the QuickBooks source needs is missing; the message names it."""


def quickbooks_source(
    ledger: Ledger,
    *,
    realm_id: str,
    client_id: str,
    client_secret: str,
    refresh_token: str,
    token_url: str,
    api_base: str,
    token_file: Path,
) -> QuickBooksSource:
    """The source for one company; QuickBooksNotConfigured names any missing QBO_* setting."""
    required = {
        "QBO_REALM_ID": realm_id,
        "QBO_CLIENT_ID": client_id,
        "QBO_CLIENT_SECRET": client_secret,
        "QBO_REFRESH_TOKEN": refresh_token,
    }
    if missing := [name for name, value in required.items() if not value]:
        raise QuickBooksNotConfigured(f"the QuickBooks source needs {', '.join(missing)}")
    session = requests.Session()
    tokens = IntuitTokens(
        client_id,
        client_secret,
        refresh_token,
        token_url=token_url,
        session=session,
        token_file=RefreshTokenFile(token_file, refresh_token),
    )
    return QuickBooksSource(realm_id, tokens, ledger, api_base=api_base, session=session)
