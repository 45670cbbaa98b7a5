"""gunicorn.conf.py: the cycle collector is off while a request runs and back on after it."""

from __future__ import annotations

import gc
import runpy
from collections.abc import Iterator
from typing import Any

import pytest

from service.config import PROJECT_ROOT


@pytest.fixture
def conf() -> Iterator[dict[str, Any]]:
    enabled = gc.isenabled()
    yield runpy.run_path(str(PROJECT_ROOT / "gunicorn.conf.py"))
    if enabled:
        gc.enable()


def test_no_collection_during_a_request_and_collection_after_it(conf: dict[str, Any]) -> None:
    conf["pre_request"](None, None)
    assert not gc.isenabled()
    conf["post_request"](None, None, {}, None)
    assert gc.isenabled()
