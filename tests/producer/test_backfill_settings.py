"""Where the backfill reads history (``Settings.data_url``) and which resources it fills."""

from __future__ import annotations

from producer.service import backfill_resources, history_client
from tickpipe.feeds import CRYPTO, OPTIONS, STOCK
from tickpipe.settings import load_settings


def test_the_rest_url_follows_the_stream() -> None:
    assert load_settings().data_url == "http://127.0.0.1:8765"  # the built-in simulator
    assert load_settings(simulator_host="sim", simulator_port=9000).data_url == "http://sim:9000"
    keys = {"alpaca_api_key": "k", "alpaca_api_secret": "s"}
    assert load_settings(**keys).data_url == "https://data.alpaca.markets"
    assert load_settings(**keys, alpaca_stream_url="wss://stream.data.alpaca.markets/v2/sip").data_url == (
        "https://data.alpaca.markets"
    )
    assert load_settings(alpaca_stream_url="ws://10.0.0.5:8765/v2/iex").data_url == "http://10.0.0.5:8765"
    assert load_settings(**keys, alpaca_data_url="http://proxy:1/").data_url == "http://proxy:1"


def test_trades_and_bars_always_quotes_when_asked() -> None:
    assert backfill_resources(load_settings()) == ["trades", "bars"]
    assert backfill_resources(load_settings(backfill_quotes=True)) == ["trades", "bars", "quotes"]
    assert backfill_resources(load_settings(subscribed_types="quotes,trades")) == ["trades"]


def test_crypto_gaps_fill_trades_and_bars_quotes_when_asked_never_books() -> None:
    assert CRYPTO.history_path == "/v1beta3/crypto/us/{history}" and STOCK.history_path == "/v2/stocks/{history}"
    assert backfill_resources(load_settings(), CRYPTO) == ["trades", "bars"]
    assert backfill_resources(load_settings(backfill_quotes=True), CRYPTO) == ["trades", "bars", "quotes"]
    assert backfill_resources(load_settings(crypto_subscribed_types="quotes,orderbooks"), CRYPTO) == []
    assert backfill_resources(load_settings(subscribed_types="quotes"), CRYPTO) == ["trades", "bars"]
    crypto = history_client(load_settings(alpaca_feed="sip"), CRYPTO)
    stock = history_client(load_settings(alpaca_feed="sip"))
    assert (crypto.path, crypto.feed) == ("/v1beta3/crypto/us/{history}", None)  # crypto takes no feed=
    assert (stock.path, stock.feed) == ("/v2/stocks/{history}", "sip")


def test_option_gaps_fill_trades_from_the_option_history_which_takes_no_feed() -> None:
    assert OPTIONS.history_path == "/v1beta1/options/{history}" and not OPTIONS.history_feed
    assert backfill_resources(load_settings(), OPTIONS) == ["trades"]
    assert backfill_resources(load_settings(backfill_quotes=True), OPTIONS) == ["trades"], "no option quote history"
    options = history_client(load_settings(alpaca_options_feed="opra", alpaca_feed="sip"), OPTIONS)
    assert (options.path, options.feed) == ("/v1beta1/options/{history}", None)
