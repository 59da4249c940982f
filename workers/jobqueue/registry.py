"""``@job`` registration and the worker's allow-list of modules.

Jobs are data, not code: a payload in Redis names a function, and whoever can write to Redis
chooses that name. RQ imports whatever the name says (``os.system`` included:
``rq.utils.import_attribute``). Here a worker runs a function only if

1. it was decorated with :func:`job` — registration happens at import time, by the
   application's own code, never because a payload asked for it; and
2. it lives in one of the modules the queue allow-lists (``JobQueue.spec.worker.imports``),
   or in a submodule of one of them.

The worker imports the allow-listed modules itself, once, at start; nothing is ever imported
because of a payload. :class:`Allowlist` is the lookup the worker does for every job.
"""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final, TypeVar, overload

from jobqueue import patterns
from jobqueue.errors import RegistrationError

F = TypeVar("F", bound=Callable[..., Any])

#: Attribute set on decorated functions: their registered (dotted) name.
NAME_ATTR: Final = "__jobqueue_name__"
_DOTTED = re.compile(patterns.PY_FUNCTION)
_MODULE = re.compile(patterns.PY_MODULE)


@dataclass(frozen=True)
class JobFunction:
    name: str  # "package.module.function"
    module: str
    func: Callable[..., Any]
    is_async: bool


_registry: dict[str, JobFunction] = {}


@overload
def job(func: F, /) -> F: ...
@overload
def job(*, name: str | None = None) -> Callable[[F], F]: ...


def job(func: F | None = None, /, *, name: str | None = None) -> F | Callable[[F], F]:
    """Register a module-level function as a job.

    The function stays a plain function (call it directly in tests); workers of queues that
    allow-list its module may run it. ``name`` overrides the registered name, which is
    otherwise ``<module>.<function>``; it must still start with the module's name so the
    allow-list keeps meaning something.

    .. code-block:: python

        from jobqueue import job

        @job
        def send_email(to: str, subject: str) -> None: ...
    """

    def register(f: F) -> F:
        if not callable(f) or not hasattr(f, "__module__") or not hasattr(f, "__qualname__"):
            raise RegistrationError(f"@job needs a function, got {f!r}")
        if "." in f.__qualname__ or "<" in f.__qualname__:
            raise RegistrationError(
                f"@job functions must be defined at module level; {f.__module__}.{f.__qualname__} "
                f"is nested or a method (payloads name functions by a dotted module path)"
            )
        if f.__module__ == "__main__":
            raise RegistrationError(
                f"@job function {f.__qualname__} is defined in __main__: workers import job modules "
                f"by name, so define it in an importable module"
            )
        registered = name or f"{f.__module__}.{f.__qualname__}"
        if not _DOTTED.match(registered) or not (registered + ".").startswith(f.__module__ + "."):
            raise RegistrationError(
                f"job name {registered!r} must be a dotted name starting with its module {f.__module__!r}"
            )
        existing = _registry.get(registered)
        # Re-importing a module (importlib.reload) re-registers the same function: fine.
        if existing is not None and (existing.module, existing.func.__qualname__) != (
            f.__module__,
            f.__qualname__,
        ):
            raise RegistrationError(f"two different functions register the job name {registered!r}")
        _registry[registered] = JobFunction(
            name=registered, module=f.__module__, func=f, is_async=inspect.iscoroutinefunction(f)
        )
        setattr(f, NAME_ATTR, registered)
        return f

    if func is not None:
        return register(func)
    return register


def registered_name(func: Callable[..., Any]) -> str:
    """The job name of a decorated function; RegistrationError if it is not decorated."""
    name = getattr(func, NAME_ATTR, None)
    if not isinstance(name, str):
        qual = getattr(func, "__qualname__", repr(func))
        raise RegistrationError(f"{qual} is not a job: decorate it with @jobqueue.job")
    return name


def is_valid_name(name: str) -> bool:
    """True for a syntactically valid job name (``module.function``)."""
    return bool(_DOTTED.match(name))


def _in_modules(module: str, allowed: tuple[str, ...]) -> bool:
    return any(module == m or module.startswith(m + ".") for m in allowed)


class Allowlist:
    """The functions one worker may run: registered ones from its allow-listed modules."""

    def __init__(self, modules: Iterable[str]) -> None:
        self.modules: tuple[str, ...] = tuple(dict.fromkeys(modules))
        if not self.modules:
            raise RegistrationError("a worker needs at least one --import module to take jobs from")
        for m in self.modules:
            if not _MODULE.match(m):
                raise RegistrationError(f"{m!r} is not a module name")

    def import_modules(self) -> None:
        """Import every allow-listed module (raises with the module's own error)."""
        for m in self.modules:
            try:
                importlib.import_module(m)
            except Exception as exc:
                raise RegistrationError(
                    f"cannot import job module {m!r}: {type(exc).__name__}: {exc}"
                ) from exc

    def functions(self) -> dict[str, JobFunction]:
        return {n: f for n, f in _registry.items() if _in_modules(f.module, self.modules)}

    def lookup(self, name: str) -> JobFunction:
        """The function a payload names, or RegistrationError saying why it may not run."""
        f = _registry.get(name)
        if f is None or not _in_modules(f.module, self.modules):
            shown = name if len(name) <= 200 else name[:200] + "…"
            raise RegistrationError(
                f"function {shown!r} is not a registered @job function of this queue's modules "
                f"({', '.join(self.modules)}); nothing was run"
            )
        return f
