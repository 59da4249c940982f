"""@job registration and the worker's allow-list (pure logic, no Redis)."""

from __future__ import annotations

import sys
import types

import pytest

from jobqueue import RegistrationError, job
from jobqueue.registry import Allowlist, is_valid_name, registered_name


def _module(name: str) -> types.ModuleType:
    mod = types.ModuleType(name)
    sys.modules[name] = mod
    return mod


def _define(mod: types.ModuleType, source: str) -> None:
    exec(compile(source, f"<{mod.__name__}>", "exec"), mod.__dict__)


@pytest.fixture
def jobs_module() -> types.ModuleType:
    mod = _module("regtest_pkg.jobs")
    _module("regtest_pkg")
    _define(
        mod,
        "from jobqueue import job\n@job\ndef hello(name):\n    return 'hi ' + name\n"
        "async def _a():\n    return 1\n"
        "@job\nasync def ahello():\n    return 2\n",
    )
    sub = _module("regtest_pkg.jobs.email")
    _define(sub, "from jobqueue import job\n@job\ndef send(to):\n    return to\n")
    other = _module("regtest_other")
    _define(other, "from jobqueue import job\n@job\ndef secret():\n    return 'nope'\n")
    return mod


def test_job_keeps_the_function_callable_and_names_it(jobs_module: types.ModuleType) -> None:
    assert jobs_module.hello("ann") == "hi ann"
    assert registered_name(jobs_module.hello) == "regtest_pkg.jobs.hello"


def test_allowlist_finds_registered_functions_of_allowed_modules_and_submodules(
    jobs_module: types.ModuleType,
) -> None:
    allow = Allowlist(["regtest_pkg.jobs"])
    assert allow.lookup("regtest_pkg.jobs.hello").func is jobs_module.hello
    assert allow.lookup("regtest_pkg.jobs.email.send").name == "regtest_pkg.jobs.email.send"
    assert allow.lookup("regtest_pkg.jobs.ahello").is_async
    assert set(allow.functions()) == {
        "regtest_pkg.jobs.hello",
        "regtest_pkg.jobs.ahello",
        "regtest_pkg.jobs.email.send",
    }


@pytest.mark.parametrize(
    "name",
    [
        "os.system",
        "regtest_other.secret",
        "regtest_pkg.jobs._a",
        "regtest_pkg.jobs.missing",
        "builtins.eval",
        "x" * 500,
    ],
)
def test_allowlist_refuses_everything_else(jobs_module: types.ModuleType, name: str) -> None:
    with pytest.raises(RegistrationError, match="not a registered @job function") as exc:
        Allowlist(["regtest_pkg.jobs"]).lookup(name)
    assert "nothing was run" in str(exc.value)
    assert len(str(exc.value)) < 400


def test_prefix_of_a_module_name_is_not_a_submodule(jobs_module: types.ModuleType) -> None:
    with pytest.raises(RegistrationError):
        Allowlist(["regtest_pkg.job"]).lookup("regtest_pkg.jobs.hello")


def test_nested_functions_and_methods_are_refused() -> None:
    def inner() -> None: ...

    with pytest.raises(RegistrationError, match="module level"):
        job(inner)

    class C:
        def m(self) -> None: ...

    with pytest.raises(RegistrationError, match="module level"):
        job(C.m)


def test_functions_of_main_are_refused() -> None:
    mod = _module("__main__regtest")
    _define(mod, "def f():\n    pass\n")
    f = mod.f
    f.__module__ = "__main__"
    with pytest.raises(RegistrationError, match="__main__"):
        job(f)


def test_custom_name_must_stay_under_its_module() -> None:
    mod = _module("regtest_named")
    _define(mod, "def f():\n    pass\n")
    assert registered_name(job(name="regtest_named.alias")(mod.f)) == "regtest_named.alias"
    with pytest.raises(RegistrationError, match="must be a dotted name"):
        job(name="os.system")(mod.f)


def test_two_functions_cannot_share_a_name() -> None:
    a, b = _module("regtest_dup_a"), _module("regtest_dup_b")
    _define(a, "def f():\n    pass\n")
    _define(b, "def g():\n    pass\n")
    job(name="regtest_dup_a.same")(a.f)
    b.g.__module__ = "regtest_dup_a"
    with pytest.raises(RegistrationError, match="two different functions"):
        job(name="regtest_dup_a.same")(b.g)


def test_undecorated_function_has_no_job_name() -> None:
    def plain() -> None: ...

    with pytest.raises(RegistrationError, match=r"decorate it with @jobqueue\.job"):
        registered_name(plain)


def test_allowlist_needs_valid_module_names() -> None:
    with pytest.raises(RegistrationError, match="at least one"):
        Allowlist([])
    with pytest.raises(RegistrationError, match="not a module name"):
        Allowlist(["os; rm -rf /"])


def test_import_errors_name_the_module() -> None:
    with pytest.raises(RegistrationError, match="cannot import job module 'no_such_module_xyz'"):
        Allowlist(["no_such_module_xyz"]).import_modules()


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("a.b", True),
        ("pkg.mod.fn_1", True),
        ("fn", False),
        ("a..b", False),
        ("a.b()", False),
        ("1a.b", False),
    ],
)
def test_valid_job_names(name: str, ok: bool) -> None:
    assert is_valid_name(name) is ok
