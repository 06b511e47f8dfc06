"""request: the v1 contract's routes, methods and parameters; cookies parsed defensively."""

import pytest

from personalizer import BadRequest
from personalizer.request import parse_ask, parse_cookies


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
    pytest.param("POST", "/v1/events", "", 501, "not_implemented", id="events-later"),
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


def test_parse_cookies_is_defensive() -> None:
    """Pairs parse; junk is skipped; the first duplicate wins; an oversized header is ignored whole."""
    assert parse_cookies('a=1; junk; =x; b="2"; a=3') == {"a": "1", "b": "2"}
    assert parse_cookies("a=" + "x" * 9000) == {}
    assert parse_cookies(None) == {}
