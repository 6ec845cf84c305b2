"""The runners' command line: every error as one ``error: ...`` line, with a "did you mean" for a near miss.

Hydra prints its own composition errors (``Key 'methd' is not in struct``, ``Could not find
'method/lorra'``) with no suggestion, and a job's error after a line of its own. :func:`command` has
Hydra hand every error to it instead, and names the closest key of the composed config or the closest
option of the config group. ``HYDRA_FULL_ERROR=1`` prints the full traceback instead, as with Hydra.
"""

from __future__ import annotations

import functools
import os
import re
import sys
import traceback
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from hydra.errors import ConfigCompositionException, MissingConfigException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import InterpolationResolutionError, OmegaConfBaseException

from experiments.suggest import closest, unknown_setting

__all__ = ["INTERRUPTED", "JobFailed", "command", "error_message"]

_FULL_ERROR = "HYDRA_FULL_ERROR"
_HINT = f"(run with {_FULL_ERROR}=1 for the traceback)"
INTERRUPTED = (
    "interrupted; a run keeps its last checkpoint (train.checkpoint_every_steps, and every epoch's end): "
    "the same command resumes it from there"
)


class JobFailed(SystemExit):
    """A single run's error, carried past Hydra's job handler (which catches ``Exception``) to :func:`command`.

    Uncaught, it exits with status 1 after printing its one-line message.
    """

    def __init__(self, error: Exception) -> None:
        super().__init__(f"error: {error_message(error)}")
        self.error = error


def command(hydra_main: Callable[[], Any]) -> Callable[[], None]:
    """Wrap a ``@hydra.main`` function so that any error ends the process with one line and status 1
    (an interrupt: one line and status 130)."""

    @functools.wraps(hydra_main)
    def main() -> None:
        full = os.environ.get(_FULL_ERROR) == "1"
        os.environ[_FULL_ERROR] = "1"  # Hydra re-raises instead of printing: the error reaches us
        try:
            hydra_main()
        except (JobFailed, Exception) as caught:
            error = caught.error if isinstance(caught, JobFailed) else caught
            if full:
                traceback.print_exception(error)
            else:
                print(f"error: {error_message(error)}\n{_HINT}", file=sys.stderr, flush=True)
            sys.exit(1)
        except KeyboardInterrupt:  # Ctrl-C: not a traceback out of torch, but what to do next
            if full:
                raise
            print(f"error: {INTERRUPTED}", file=sys.stderr, flush=True)
            sys.exit(130)
        finally:
            if not full:
                del os.environ[_FULL_ERROR]

    return main


def error_message(error: BaseException) -> str:
    """What went wrong in words a user can act on; a mistyped key or group option gets its closest match."""
    if isinstance(error, MissingConfigException) and error.options and "/" in (error.missing_cfg_file or ""):
        group, _, name = error.missing_cfg_file.rpartition("/")
        near = closest(name, error.options)
        hint = f"did you mean {group}={near}? " if near else ""
        return f"{group}={name} is not an option ({hint}options: {', '.join(error.options)})"
    if isinstance(error, ConfigCompositionException) and isinstance(error.__cause__, OmegaConfBaseException):
        key = _override_key(error)
        parent = getattr(error.__cause__, "parent_node", None)
        if key and isinstance(parent, DictConfig):
            tree = OmegaConf.to_container(parent._get_root(), resolve=False)
            return unknown_setting(key, closest(key, _dotted_keys(tree)))  # type: ignore[arg-type]
    if isinstance(error, InterpolationResolutionError):
        inner = _non_omegaconf_cause(error)
        if inner is not None:
            return error_message(inner)
    if isinstance(error, OmegaConfBaseException | ConfigCompositionException):
        return str(error).splitlines()[0]
    return str(error)


def _override_key(error: ConfigCompositionException) -> str | None:
    """The key of the override Hydra could not apply (``Could not override 'method.rr'``)."""
    found = re.search(r"Could not override '([^']+)'", str(error))
    return found.group(1) if found else None


def _dotted_keys(tree: Mapping[Any, Any], prefix: str = "") -> Iterator[str]:
    """Every key of a config as ``a.b.c`` (inner nodes too), Hydra's own section left out."""
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if name == "hydra":
            continue
        yield name
        if isinstance(value, Mapping):
            yield from _dotted_keys(value, f"{name}.")


def _non_omegaconf_cause(error: BaseException) -> BaseException | None:
    """The error a resolver raised, which OmegaConf wraps (as the context of its own exception)."""
    seen = error.__cause__ or error.__context__
    while seen is not None:
        if not isinstance(seen, OmegaConfBaseException):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None
