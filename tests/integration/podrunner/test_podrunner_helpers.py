"""The pod runner's pure pieces, checked against Kubernetes' documented behaviour. (No cluster:
these live here with the rest of the runner's tests, which are dev tooling's, not the product's.)"""

from __future__ import annotations

import pytest
from lightkube.core.selector import build_selector

import podrunner


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$(NAME)", "pod-1"),
        ("x-$(NAME)-$(NS)", "x-pod-1-ns"),
        ("$$(NAME)", "$(NAME)"),  # $$ escapes the reference
        ("$$$$", "$$"),  # so `echo $$$$` in a pod's command prints the shell's pid
        ("$(UNDEFINED)", "$(UNDEFINED)"),
        ("$(NAME", "$(NAME"),  # unclosed: left as written
        ("$NAME and $", "$NAME and $"),  # only $(…) is a reference
        ("$()", "$()"),
    ],
)
def test_dollar_paren_expansion_follows_kubernetes(text: str, expected: str) -> None:
    assert podrunner.expand(text, {"NAME": "pod-1", "NS": "ns"}) == expected


@pytest.mark.parametrize(
    ("selector", "encoded"),
    [
        ("app.kubernetes.io/part-of=jobqueue", "app.kubernetes.io/part-of=jobqueue"),
        ("a==b, c!=d", "a=b,c!=d"),
        ("tier in (a, b),env notin (prod),present,!absent", "tier in (a,b),env notin (prod),present,!absent"),
        ("", ""),
    ],
)
def test_label_selectors_parse_into_lightkubes_form(selector: str, encoded: str) -> None:
    parsed = podrunner.parse_selector(selector)
    assert (build_selector(parsed) if parsed else "") == encoded


def test_a_malformed_selector_is_refused() -> None:
    with pytest.raises(ValueError, match="invalid label selector"):
        podrunner.parse_selector("a=b=c")


@pytest.mark.parametrize(
    ("returncode", "described"), [(0, "0"), (3, "3"), (-15, "143 (SIGTERM)"), (-9, "137 (SIGKILL)")]
)
def test_exit_codes_read_like_a_containers(returncode: int, described: str) -> None:
    assert podrunner.describe_exit(podrunner.exit_code(returncode)) == described


@pytest.mark.parametrize(
    ("policy", "code", "restarted"),
    [
        ("Always", 0, True),
        ("Always", 1, True),
        ("OnFailure", 0, False),
        ("OnFailure", 2, True),
        ("Never", 0, False),
        ("Never", 2, False),
    ],
)
def test_restart_policies(policy: str, code: int, restarted: bool) -> None:
    assert podrunner.restarts(policy, code) is restarted
