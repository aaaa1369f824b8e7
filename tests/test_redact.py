"""The one URL redaction (`monitor.redact`): no query or fragment value and no userinfo
survives, parameter names and the rest of the URL do, on examples and on generated URLs."""

from __future__ import annotations

import string

import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

from monitor.redact import MARK, redact_text, redact_url

R = MARK


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "https://h.example/p?access_token=T0K&X-Amz-Signature=S1G",
            f"https://h.example/p?access_token={R}&X-Amz-Signature={R}",
        ),
        ("https://user:pw@h.example:8443/a/b?x=1#f", f"https://{R}@h.example:8443/a/b?x={R}#{R}"),
        ("https://ghp_t0ken@github.example/feed", f"https://{R}@github.example/feed"),
        (
            "https://h.example/cb#access_token=T&state=s",
            f"https://h.example/cb#access_token={R}&state={R}",
        ),
        ("http://[::ffff:127.0.0.1]:8080/a?token=x", f"http://[::ffff:127.0.0.1]:8080/a?token={R}"),
        ("https://medium.example/@desk/feed?x=1", f"https://medium.example/@desk/feed?x={R}"),
        ("https://h.example/feed", "https://h.example/feed"),
        ("https://h.example/?dGVzdA==&flag=&&k=v", f"https://h.example/?{R}&flag={R}&&k={R}"),
        ("https://h.example/?sessionid", f"https://h.example/?{R}"),
        # a raw `?` or `#` in a password: userinfo or query, no one can tell, nothing is shown
        ("http://u:pa?ss@h.example/feed", f"http://{R}"),
        (
            "postgresql+psycopg://monitor:pw@db:5432/monitor",
            f"postgresql+psycopg://{R}@db:5432/monitor",
        ),
        ("/feed.xml?key=k", f"/feed.xml?key={R}"),
        ("http://user:pw@host.example:99999/x", f"http://{R}@host.example:99999/x"),
        ("http://[::1", "http://[::1"),  # unparsable stays as it is: nothing secret in it
        ("", ""),
    ],
)
def test_examples(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_free_text_keeps_its_words_and_loses_the_values() -> None:
    text = (
        "GET 'https://u:SENTINEL-A@h.example/p?token=SENTINEL-B&y=2'. Then (see "
        "https://h.example/p?a=SENTINEL-C), and /feed?tok=SENTINEL-D; <unknown>:1:2: bad"
    )
    assert redact_text(text) == (
        f"GET 'https://{R}@h.example/p?token={R}&y={R}'. Then (see https://h.example/p?a={R}), "
        f"and /feed?tok={R}; <unknown>:1:2: bad"
    )
    assert redact_text("a/b? no URL here, 10:30, path /usr/bin") == (
        "a/b? no URL here, 10:30, path /usr/bin"
    )


def test_known_urls_hide_their_values_in_any_form() -> None:
    url = "https://h.example/f?key=abc%2Fdef-123&lang=en"
    assert redact_text("refused key abc/def-123 (lang en)", url) == f"refused key {R} (lang en)"


# --- properties -------------------------------------------------------------------------------

SECRET = "S3CR3T"  # in every generated value: it must never be seen again
_NAME_CHARS = string.ascii_letters + string.digits + "_-.[]"
# what may stand raw in a query value or fragment (no `&`, `=` or `#`, which delimit)
_VALUE_CHARS = string.ascii_letters + string.digits + "-._~!$'()*+,;:@/?%"
names = st.text(_NAME_CHARS, min_size=1, max_size=12)
values = st.builds(
    lambda a, b: a + SECRET + b,
    st.text(_VALUE_CHARS, max_size=8),
    st.text(_VALUE_CHARS, max_size=8),
)
hosts = st.sampled_from(
    ["feeds.example.org", "127.0.0.1", "[::1]", "h.example:8443", "xn--bcher-kva.example"]
)
paths = st.lists(st.text(string.ascii_letters + string.digits + "-._~@", max_size=8), max_size=4)
userinfos = st.one_of(
    st.just(""),
    values.map(lambda v: v.replace("/", "").replace("?", "").replace("@", "") + "@"),
    st.builds(lambda u, p: f"{u}:{p}@", names, values.map(lambda v: v.replace("/", ""))),
)
params = st.lists(st.tuples(names, values), max_size=4)


@st.composite
def secret_urls(draw: st.DrawFn) -> tuple[str, str, str, list[str]]:
    """(url, its scheme, the host and path that must be kept, the parameter names)."""
    scheme = draw(st.sampled_from(["http", "https", "feed+https"]))
    host = draw(hosts)
    path = "".join("/" + segment for segment in draw(paths))
    query = draw(params)
    fragment = draw(params)
    url = f"{scheme}://{draw(userinfos)}{host}{path}"
    if query or draw(st.booleans()):
        url += "?" + "&".join(f"{n}={v}" for n, v in query)
    if fragment:
        url += "#" + "&".join(f"{n}={v}" for n, v in fragment)
    return url, scheme, host + path, [n for n, _ in query + fragment]


@given(secret_urls())
@example(("https://h/p?a=" + SECRET + "#b=" + SECRET, "https", "h/p", ["a", "b"]))
def test_no_query_value_fragment_or_userinfo_survives(
    case: tuple[str, str, str, list[str]],
) -> None:
    url, scheme, kept, param_names = case
    shown = redact_url(url)
    assert SECRET not in shown
    assert redact_url(shown) == shown  # twice is once
    if shown != f"{scheme}://{MARK}":  # all hidden: an `@` after a `?` before any `/`
        assert kept in shown
        for name in param_names:
            assert f"{name}={MARK}" in shown


@given(secret_urls(), st.text(max_size=20), st.text(max_size=20))
def test_no_secret_survives_in_free_text(
    case: tuple[str, str, str, list[str]], before: str, after: str
) -> None:
    assume(SECRET not in before + after)
    text = f"{before} {case[0]} {after}"
    shown = redact_text(text)
    assert SECRET not in shown
    assert redact_text(shown) == shown


@given(st.text())
def test_total_and_idempotent_on_any_text(text: str) -> None:
    assert redact_url(redact_url(text)) == redact_url(text)
    assert redact_text(redact_text(text)) == redact_text(text)
