"""parse_html_page: section pages without a feed, read through the selectors of sources.yaml.

`nknews_foreign_relations.html` reproduces the structure of the NK News "Foreign Relations"
listing (the text of a captured page of that tag, page 269; see tests/data/README.md): each
headline appears four times (thumbnail alt, heading, screen-reader text), the byline and date
share a line, and a sidebar links to an article again. `yonhap_nk_euckr.html` is an EUC-KR page
with a <base href>, relative links, a duplicate, an ad slot and several date spellings.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from monitor.model import HtmlSelectors
from monitor.normalize import normalize_entry
from monitor.parse import ParseError, parse_html_page, validate_selectors
from monitor.parse.common import SUMMARY_CAP, TITLE_CAP

DATA = Path(__file__).resolve().parent / "data" / "html"
NK_URL = "https://www.nknews.org/tag/foreign-relations/"
NK_SELECTORS = HtmlSelectors(
    item="article.post-card",
    title=".post-card__title",
    link=".post-card__title a[href]",
    summary=".post-card__excerpt",
    date=".post-card__date",
)
YONHAP_SELECTORS = HtmlSelectors(
    item=".list-type038 .item-box01",
    title=".tit-news",
    link="a.tit-wrap",
    summary="p.lead",
    date=".txt-time",
)
HTML = {"content-type": "text/html; charset=UTF-8"}

# (title, standfirst, date) of the ten items, in page order, as in the seed text.
NK_ITEMS = [
    ("US-China coordination on North Korea may be long way off, experts say",
     "“Stalemate” underscores perception gap between China and the U.S. on North Korea issues",
     (2021, 7, 27)),
    ("Seoul announces hotline communications breakthrough with Pyongyang",
     "Phone line apparently restored after North Korea said it severed all inter-Korean "
     "communication lines last year", (2021, 7, 26)),
    ("India closes embassy in DPRK following departure of diplomats",
     "International community in Pyongyang continues to dwindle as only handful of embassies "
     "remain operational", (2021, 7, 26)),
    ("Kim Jong Un sends message of sympathy to Xi Jinping over deadly floods",
     "State media says North Korean leader voiced 'full support' for Chinese president after "
     "recent flooding in central China", (2021, 7, 23)),
    ("Absence of North Korean women’s soccer team at Olympics a loss for diplomacy",
     "Sports diplomacy advocates lament loss of key opportunity for engagement with North Korea "
     "as Summer Games begin Friday", (2021, 7, 23)),
    ("‘Substantial’ new evidence delays case of only North Korean in US custody",
     "North Korea cut ties with Malaysia over extradition of Mun Chol Myong to US in March",
     (2021, 7, 23)),
    ("Another group of diplomats and expats leaves North Korea via China",
     "Indonesian and Bulgarian embassies temporarily close due to latest departures as mass "
     "exodus of foreigners continues", (2021, 7, 23)),
    ("US, South Korea to work toward ‘diplomacy and dialogue’ with North Korea",
     "But appealing to China will be key to incentivizing DPRK to return to talks, expert says",
     (2021, 7, 22)),
    ("Sherman to visit China as US stresses ‘alignment’ with Beijing on North Korea",
     "Deputy secretary of state will meet with China’s foreign minister, says U.S. State "
     "Department", (2021, 7, 21)),
    ("Top US official begins Asia tour stressing denuclearization of Korean Peninsula",
     "North Korea’s nuclear weapons, abductee issue major talking points in high-level meeting "
     "in Tokyo", (2021, 7, 20)),
]  # fmt: skip


def test_nk_news_listing() -> None:
    body = (DATA / "nknews_foreign_relations.html").read_bytes()
    parsed = parse_html_page(body, HTML, NK_URL, NK_SELECTORS)
    assert parsed.title == "Foreign Relations | NK News"
    assert parsed.warning is None
    articles = [normalize_entry(e, "nknews-foreign-relations") for e in parsed.entries]
    got = [(a.title, a.text, a.published) for a in articles]
    want = [(t, s, datetime(*d, tzinfo=UTC)) for t, s, d in NK_ITEMS]
    assert got == want
    assert articles[1].url == (
        "https://www.nknews.org/2021/07/seoul-announces-hotline-communications-breakthrough-with"
        "-pyongyang/"
    )
    assert all(a.entry_key == "url:" + a.url for a in articles)
    assert len({a.entry_key for a in articles}) == 10
    assert all(e.guid is None for e in parsed.entries)


def test_nk_news_selectors_pass_validation() -> None:
    assert validate_selectors(NK_SELECTORS) == []


def test_encoding_base_href_duplicates_and_fallbacks() -> None:
    body = (DATA / "yonhap_nk_euckr.html").read_bytes()
    # No charset in the header: the <meta http-equiv> EUC-KR declaration is honoured.
    parsed = parse_html_page(body, {"content-type": "text/html"}, "https://en.yna.co.kr/nk/index",
                             YONHAP_SELECTORS)  # fmt: skip
    assert parsed.title == "North Korea | 연합뉴스 Yonhap News Agency"
    links = [e.link for e in parsed.entries]
    assert links == [
        "https://en.yna.co.kr/view/AEN20210727002351325",  # root-relative
        "https://en.yna.co.kr/nk/view/AEN20210726004200325?section=nk/nk&utm_source=list#body",
        "https://en.yna.co.kr/view/AEN20210725001100325",  # absolute; the duplicate is dropped
    ]
    first, second, third = (normalize_entry(e, "yonhap-nk") for e in parsed.entries)
    assert first.published == datetime(2021, 7, 27, 10, 15, tzinfo=UTC)
    assert second.title == "Unification ministry says dialogue & cooperation remain possible"
    assert second.text == "The ministry urged the North to respond to offers of talks <and> " \
        "humanitarian aid."  # fmt: skip
    assert second.published == datetime(2021, 7, 26, 8, 2, tzinfo=UTC)  # <time datetime>, +09:00
    assert second.url == "https://en.yna.co.kr/nk/view/AEN20210726004200325?section=nk/nk"
    # No .tit-news inside: the link text is the title.
    assert third.title == "Kim Jong-un visits cemetery of Chinese soldiers on war anniversary"
    assert third.text == ""
    assert third.published == datetime(2021, 7, 25, tzinfo=UTC)


def test_header_charset_wins_over_guessing() -> None:
    body = "<meta charset='utf-8'><ul><li><a href='/a'>Café Pyongyang</a></li></ul>".encode(
        "windows-1252"
    )
    sel = HtmlSelectors(item="li", title="a", link="a")
    parsed = parse_html_page(body, {"content-type": "text/html; charset=windows-1252"},
                             "http://x.example/", sel)  # fmt: skip
    assert parsed.entries[0].title == "Café Pyongyang"


def test_caps_apply_to_page_items() -> None:
    body = f"<div class=i><a href='/a'>{'헤드라인' * 1000}</a><p>{'x ' * 20000}</p></div>".encode()
    sel = HtmlSelectors(item=".i", title="a", link="a", summary="p")
    (entry,) = parse_html_page(body, HTML, "http://x.example/", sel).entries
    assert len(entry.title.encode()) <= TITLE_CAP
    assert len(entry.summary.encode()) <= SUMMARY_CAP


def test_invalid_selector_is_named() -> None:
    bad = HtmlSelectors(item="article[[", title="h3", link="a", date="  ")
    problems = validate_selectors(bad)
    assert problems[0].startswith("selectors.item 'article[[' is not a valid CSS selector")
    assert problems[1] == "selectors.date is empty"
    with pytest.raises(ParseError) as info:
        parse_html_page(b"<p>x</p>", HTML, NK_URL, bad)
    assert info.value.kind == "parse_error"
    assert "article[[" in str(info.value) and "sources.yaml" in str(info.value)


def test_layout_change_is_a_clear_error() -> None:
    body = (DATA / "nknews_foreign_relations.html").read_bytes()
    moved = HtmlSelectors(item="article.story-card", title="h3", link="h3 a")
    with pytest.raises(ParseError) as info:
        parse_html_page(body, HTML, NK_URL, moved)
    assert "no element matches the item selector 'article.story-card'" in str(info.value)
    empty = HtmlSelectors(item="article.post-card", title=".nope", link=".nope a")
    with pytest.raises(ParseError) as info:
        parse_html_page(body, HTML, NK_URL, empty)
    assert "10 items match" in str(info.value)


def test_binary_garbage_raises_only_parse_error() -> None:
    sel = HtmlSelectors(item="li", title="a", link="a")
    with pytest.raises(ParseError):
        parse_html_page(bytes(range(256)) * 50, {"content-type": "text/html"}, NK_URL, sel)


def test_links_items_and_inline_markup() -> None:
    body = b"""<ul class="news">
      <li><a href="/2024/kim-s-letter">Kim<em>\xe2\x80\x99s</em> letter <b>to</b> Trump</a></li>
      <li><a href="javascript:openPopup('x')">Popup story</a></li>
      <li><a href="mailto:desk@example.org">Write to us</a></li>
    </ul>"""
    sel = HtmlSelectors(item="ul.news > li > a", title="span.none", link="span.none")
    parsed = parse_html_page(body, HTML, "https://x.example/nk/", sel)
    first, popup, mail = parsed.entries
    # The item is the <a> itself; inline tags do not split words.
    assert first.link == "https://x.example/2024/kim-s-letter"
    assert first.title == "Kim\u2019s letter to Trump"
    # Only http(s) links are links; the items remain, identified by their content.
    assert (popup.link, popup.title) == (None, "Popup story")
    assert (mail.link, normalize_entry(mail, "s").entry_key[:5]) == (None, "hash:")
