"""request: the v1 contract's routes, methods and parameters; cookies parsed defensively."""

import pytest

from personalizer import BadRequest
from personalizer.request import gpc_opt_out, parse_ask, parse_cookies


def test_parse_ask_reads_a_valid_page_request() -> None:
    """slots, item, limit and format are validated and kept in order."""
    ask = parse_ask("GET", "/v1/page", "slots=hero,item,recent&item=p00001&limit=6&format=html")
    assert (ask.endpoint, ask.slots, ask.item, ask.limit, ask.format) == (
        "page", ("hero", "item", "recent"), "p00001", 6, "html")
    assert parse_ask("GET", "/v1/recommendations", "slot=home").limit == 12
    assert parse_ask("HEAD", "/v1/banner", "slot=hero").head


@pytest.mark.parametrize("method,path,query,status,code", [
    pytest.param("GET", "/v2/page", "", 404, "not_found", id="unknown-path"),
    pytest.param("POST", "/v1/page", "slots=hero", 405, "method_not_allowed", id="wrong-method"),
    pytest.param("GET", "/v1/events", "", 405, "method_not_allowed", id="events-get"),
    pytest.param("PUT", "/v1/events", "", 405, "method_not_allowed", id="events-put"),
    pytest.param("GET", "/v1/recommendations", "", 400, "missing_slot", id="no-slot"),
    pytest.param("GET", "/v1/recommendations", "slot=garage", 400, "bad_slot", id="unknown-slot"),
    pytest.param("GET", "/v1/recommendations", "slot=home&limit=0", 400, "bad_limit", id="limit-zero"),
    pytest.param("GET", "/v1/recommendations", "slot=home&limit=49", 400, "bad_limit", id="limit-49"),
    pytest.param("GET", "/v1/recommendations", "slot=home&limit=1e3", 400, "bad_limit", id="limit-not-int"),
    pytest.param("GET", "/v1/recommendations", "slot=item", 400, "missing_item", id="item-missing"),
    pytest.param("GET", "/v1/recommendations", "slot=item&item=%3Cscript%3E", 400, "bad_item", id="bad-item"),
    pytest.param("GET", "/v1/recommendations", "slot=home&format=xml", 400, "bad_format", id="bad-format"),
    pytest.param("GET", "/v1/recommendations", "slot=home&slot=cart", 400, "bad_query", id="repeated"),
    pytest.param("GET", "/v1/recommendations", "slot=home&" + "x=1&" * 40, 400, "bad_query", id="many-params"),
    pytest.param("GET", "/v1/recommendations", "slot=home&pad=" + "a" * 3000, 414, "query_too_long",
                 id="oversized-query"),
    pytest.param("GET", "/v1/banner", "slot=home", 400, "bad_slot", id="banner-not-hero"),
    pytest.param("GET", "/v1/page", "slots=hero,hero", 400, "bad_slot", id="slot-twice"),
    pytest.param("GET", "/v1/page", "slots=", 400, "missing_slot", id="slots-empty"),
])
def test_parse_ask_rejects_off_contract_requests(method: str, path: str, query: str, status: int,
                                                 code: str) -> None:
    """Off-contract requests raise BadRequest with the 4xx status and the JSON error code."""
    with pytest.raises(BadRequest) as info:
        parse_ask(method, path, query)
    assert (info.value.status, info.value.code) == (status, code)
    if status == 405:
        assert info.value.allow


def test_parse_ask_keeps_answers_not_rejections() -> None:
    """A request line seen again answers the same Ask from the isolate's memo; a rejected line is rejected every
    time (never kept as an answer); the memo is bounded."""
    parse_ask.cache_clear()
    first = parse_ask("GET", "/v1/page", "slots=hero,home")
    assert parse_ask("GET", "/v1/page", "slots=hero,home") is first
    assert parse_ask.cache_info().hits == 1
    for _ in range(2):
        with pytest.raises(BadRequest):
            parse_ask("GET", "/v1/page", "slots=hero,hero")
    assert parse_ask.cache_info().currsize == 1
    for n in range(600):
        parse_ask("GET", "/v1/recommendations", f"slot=item&item=p{n}")
    info = parse_ask.cache_info()
    assert info.maxsize is not None and info.currsize == info.maxsize <= 512


def test_parse_cookies_is_defensive() -> None:
    """Only pz_* pairs are kept; junk is skipped; the first duplicate wins; an unreadable header is None."""
    assert parse_cookies('a=1; junk; =x; pz_uid="2"; pz_uid=3; pz_vid=4') == {"pz_uid": "2", "pz_vid": "4"}
    assert parse_cookies("a=" + "x" * 70_000) is None
    assert parse_cookies(None) == {} and parse_cookies("") == {}


def test_our_cookies_are_found_among_a_shops_many_cookies() -> None:
    """80 analytics cookies and 12 KB of header before ours: pz_consent=denied is still read."""
    crowd = "; ".join(f"_ga_{n}=GA1.1.{'9' * 120}" for n in range(80))
    assert len(crowd) > 8192
    assert parse_cookies(f"{crowd}; pz_consent=denied; pz_vid=v1.x") == {"pz_consent": "denied", "pz_vid": "v1.x"}


@pytest.mark.parametrize("header", [
    pytest.param("pz_consent=granted; pz_consent=denied", id="denied-second"),
    pytest.param("pz_consent=denied; pz_consent=granted", id="denied-first"),
    pytest.param("pz_consent=granted; pz_consent=maybe", id="conflicting"),
])
def test_conflicting_consent_cookies_are_a_denial(header: str) -> None:
    """Two pz_consent cookies that disagree (a path and a domain cookie, say) read as denied."""
    assert parse_cookies(header) == {"pz_consent": "denied"}


@pytest.mark.parametrize("value,opted_out", [
    pytest.param("1", True, id="one"), pytest.param(" 1 ", True, id="spaces"),
    pytest.param("1, 1", True, id="folded"), pytest.param("1,0", True, id="mixed-fails-closed"),
    pytest.param("0", False, id="zero"), pytest.param("", False, id="empty"), pytest.param(None, False, id="absent"),
])
def test_sec_gpc_lists_are_honoured(value: str | None, opted_out: bool) -> None:
    """Sec-GPC folded by a proxy into a list still opts out."""
    assert gpc_opt_out(value) is opted_out


@pytest.mark.parametrize("limit", ["%C2%B2", "%D9%A3", "%EF%BC%91", "01%00", "+5", "-1", " 5"])
def test_limit_takes_ascii_digits_only(limit: str) -> None:
    """Unicode digits (², Arabic-Indic ٣, full-width １) are a 400, never an int() crash."""
    with pytest.raises(BadRequest) as info:
        parse_ask("GET", "/v1/recommendations", f"slot=home&limit={limit}")
    assert info.value.code == "bad_limit"
