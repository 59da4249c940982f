"""Redis URLs never show their credentials: property-based over URL shapes, plus named cases."""

from __future__ import annotations

import urllib.parse

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from jobqueue.redaction import HIDDEN, redact, scrub

SCHEMES = st.sampled_from(["redis", "rediss", "REDIS", "unix"])
HOSTS = st.one_of(
    st.from_regex(r"[a-z][a-z0-9-]{0,20}(\.[a-z][a-z0-9-]{0,10}){0,3}", fullmatch=True),
    st.from_regex(
        r"(25[0-5]|2[0-4][0-9]|1?[0-9]?[0-9])(\.(25[0-5]|2[0-4][0-9]|1?[0-9]?[0-9])){3}", fullmatch=True
    ),
    st.just("[::1]"),
)
#: anything, the characters that break naive parsing included
SECRETS = st.text(st.characters(blacklist_categories=("Cs",)), min_size=3, max_size=30)
ODD = st.text(alphabet="@/:?#%&= ;'\"", min_size=1, max_size=4)


@st.composite
def urls(draw: st.DrawFn) -> tuple[str, list[str], str]:
    """(URL, its secrets, the visible part nothing secret may be taken from)."""
    scheme = draw(SCHEMES)
    host = draw(HOSTS)
    port = draw(st.one_of(st.none(), st.integers(1, 65535)))
    db = draw(st.one_of(st.none(), st.integers(0, 15)))
    user = draw(st.one_of(st.none(), SECRETS, st.just("default")))
    password = draw(st.one_of(SECRETS, st.builds(lambda a, b, c: a + b + c, SECRETS, ODD, SECRETS)))
    encode = draw(st.booleans())
    in_query = draw(st.booleans())
    quote = (lambda s: urllib.parse.quote(s, safe="")) if encode else (lambda s: s)
    secrets = [password] + ([user] if user else [])
    if scheme == "unix":
        visible = f"{scheme}:///run/redis/redis.sock"
        authority = "/run/redis/redis.sock"
    else:
        visible = f"{scheme}://{host}" + (f":{port}" if port else "") + (f"/{db}" if db is not None else "")
        authority = visible.split("://", 1)[1]
    if in_query:
        query = f"?password={quote(password)}" + (f"&username={quote(user)}" if user else "")
        url = f"{scheme}://{authority}{query}"
    else:
        userinfo = f"{quote(user) if user else ''}:{quote(password)}@"
        url = f"{scheme}://{userinfo}{authority}"
    return url, secrets, visible


@given(urls())
@settings(max_examples=2000)
@example(("redis://user:12345/xyz@host:6379/0", ["12345/xyz", "user"], "redis://host:6379/0"))
@example(("redis://:p@ss@host/0", ["p@ss"], "redis://host/0"))
@example(("redis://host:6379/0?password=se@cret", ["se@cret"], "redis://host:6379/0"))
@example(("rediss://u:a?b#c@host", ["a?b#c"], "rediss://host"))
def test_redact_never_shows_a_credential(case: tuple[str, list[str], str]) -> None:
    url, secrets, visible = case
    shown = redact(url)
    for secret in secrets:
        for form in {secret, urllib.parse.quote(secret, safe="")}:
            # a secret that is also part of the server's address cannot be hidden from it
            assume(form not in visible.lower() and form.lower() not in visible.lower())
            assert form not in shown, (url, shown)
    assert "?" not in shown
    assert "#" not in shown


@given(urls())
def test_redact_shows_the_server_when_it_can(case: tuple[str, list[str], str]) -> None:
    url, _, visible = case
    shown = redact(url)
    assert shown in (
        visible.lower() if visible.startswith("REDIS") else visible,
        visible.split("://")[0].lower() + f"://{HIDDEN}",
    )


@given(st.text())
def test_redact_takes_any_text_and_is_idempotent(text: str) -> None:
    once = redact(text)
    assert redact(once) == once
    if "://" not in text:
        assert once == HIDDEN  # never echoes what it cannot read (it may be a bare password)


@given(urls(), st.text(max_size=20), st.text(max_size=20))
@example(("redis://a?password=00&", ["00&"], "redis://a"), "", "")  # (pieces too short to count)
def test_scrub_hides_the_credentials_anywhere_in_a_message(
    case: tuple[str, list[str], str], before: str, after: str
) -> None:
    url, secrets, visible = case
    message = f"{before}cannot reach Redis at {url}: {secrets[0]!r} is not a port{after}"
    out = scrub(message, url)
    for secret in secrets:
        context = before + after + "cannot reach Redis at : is not a port"
        assume(secret not in visible and secret not in context)
        assert secret not in out


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://user:12345/xyz@host:6379/0", "redis://host:6379/0"),
        ("redis://:hunter2@redis.jobs:6379/2", "redis://redis.jobs:6379/2"),
        ("rediss://user:hunter2@redis.jobs/0", "rediss://redis.jobs/0"),
        ("redis://localhost", "redis://localhost"),
        ("redis://[::1]:6380/1", "redis://[::1]:6380/1"),
        ("unix://:pw@/run/redis.sock?db=2", "unix:///run/redis.sock"),
        ("redis://h:1/0?password=a@b", f"redis://{HIDDEN}"),
        ("redis://:pass/word@h", "redis://h"),
        ("redis://h:notaport/0", f"redis://h:{HIDDEN}/0"),
        ("hunter2", HIDDEN),
    ],
)
def test_named_shapes(url: str, shown: str) -> None:
    assert redact(url) == shown


def test_scrub_redacts_urls_it_was_not_told_about() -> None:
    text = "connect redis://u:topsecret@h:1/0 and rediss://:other@x/2 failed"
    assert scrub(text) == "connect redis://h:1/0 and rediss://x/2 failed"
