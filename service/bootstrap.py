"""Wires real adapters from Settings. Entry points call this; tests pass their own pieces."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field

from service.config import Settings
from service.planning import PlanSettings
from service.rendering import TemplateSet

Clock = Callable[[], dt.datetime]


def utc_now() -> dt.datetime:
    """The real clock, timezone-aware."""
    return dt.datetime.now(dt.UTC)


@dataclass
class Services:
    """What the entry points need, built once per process."""

    settings: Settings
    templates: TemplateSet
    clock: Clock = utc_now
    extras: dict[str, object] = field(default_factory=dict)

    @property
    def plan_settings(self) -> PlanSettings:
        """The settings plan() takes."""
        s = self.settings
        return PlanSettings(s.policy, s.parse_options, s.render_settings)


def build_services(settings: Settings, clock: Clock = utc_now) -> Services:
    """Load templates and wire adapters for ``settings``."""
    templates = TemplateSet(settings.templates_dir, settings.stages)
    return Services(settings=settings, templates=templates, clock=clock)
