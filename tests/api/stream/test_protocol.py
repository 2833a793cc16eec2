"""The stream protocol: actions in JSON and msgpack, subscriptions and their counts."""

from __future__ import annotations

import msgpack
import orjson
import pytest

from api.stream import protocol as p


def test_actions_in_json_and_msgpack() -> None:
    sub = {"action": "subscribe", "trades": ["aapl"], "quotes": ["*"]}
    for raw in (orjson.dumps(sub).decode(), msgpack.packb(sub)):
        action = p.decode_action(raw)
        assert (action.kind, action.streams) == ("subscribe", {"trades": ["AAPL"], "quotes": ["*"]})
    auth = p.decode_action('{"action":"auth","key":"k","secret":"s"}')
    assert (auth.kind, auth.key, auth.secret) == ("auth", "k", "s")
    for bad, code in (
        ("[]", 400),
        ('{"action":"auth","key":1}', 400),
        ('{"action":"subscribe","quotes":"AAPL"}', 400),
        ('{"action":"subscribe","lulds":["AAPL"]}', 410),
        (b"\xc1", 400),
    ):
        with pytest.raises(p.ProtocolError) as error:
            p.decode_action(bad)
        assert error.value.code == code


def test_subscriptions_bring_corrections_with_trades_and_count_symbols() -> None:
    subs = p.Subscriptions()
    assert subs.add({"trades": ["A"], "quotes": ["A", "B"]}) == [
        ("trades", "A"),
        ("quotes", "A"),
        ("quotes", "B"),
        ("corrections", "A"),
        ("cancelErrors", "A"),
    ]
    assert subs.add({"quotes": ["A"]}) == []
    assert subs.symbol_count() == 2
    assert subs.count_after_add({"bars": ["C", "*"]}) == 4
    assert subs.remove({"trades": ["A"], "bars": ["Z"]}) == [
        ("trades", "A"),
        ("corrections", "A"),
        ("cancelErrors", "A"),
    ]
    message = subs.message()
    assert list(message) == ["T", *p.LISTED] and message["quotes"] == ["A", "B"] and message["trades"] == []


def test_crypto_channels_are_the_crypto_feeds() -> None:
    crypto = p.FEED_CHANNELS["crypto"]
    assert list(crypto.streams) == ["trades", "quotes", "orderbooks", "bars", "updatedBars", "dailyBars"]
    assert crypto.streams["orderbooks"] == p.Stream("crypto.orderbooks", "o", "crypto")
    action = p.decode_action('{"action":"subscribe","orderbooks":["btc/usd"],"quotes":["*"]}', crypto)
    assert action.streams == {"orderbooks": ["BTC/USD"], "quotes": ["*"]}
    for bad, detail in (
        ('{"action":"subscribe","corrections":["BTC/USD"]}', "expected channels among trades, quotes, orderbooks"),
        ('{"action":"subscribe","trades":["AAPL"]}', "expected a crypto pair like BTC/USD"),
    ):
        with pytest.raises(p.ProtocolError) as error:
            p.decode_action(bad, crypto)
        assert error.value.code == 400 and detail in error.value.detail
    subs = p.Subscriptions(crypto)
    assert subs.add({"trades": ["BTC/USD"]}) == [("trades", "BTC/USD")]  # nothing follows crypto trades
    assert list(subs.message()) == ["T", *crypto.listed]
    with pytest.raises(p.ProtocolError, match="expected channels among"):  # no order books on the stock path
        p.decode_action('{"action":"subscribe","orderbooks":["BTC/USD"]}')
