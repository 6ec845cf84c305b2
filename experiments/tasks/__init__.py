"""Task families as plug-ins of the run skeleton (``experiments.run``): what differs between GLUE and E2E."""

from __future__ import annotations

from experiments.tasks.base import TaskFamily
from experiments.tasks.e2e import E2EFamily
from experiments.tasks.glue import GlueFamily

__all__ = ["FAMILIES", "E2EFamily", "GlueFamily", "TaskFamily"]

FAMILIES: dict[str, type[TaskFamily]] = {"glue": GlueFamily, "e2e": E2EFamily}
