"""Settings: read once, bad values name the variable, secrets never shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from tickpipe.errors import SettingsError
from tickpipe.settings import Settings, load_settings, redact_url


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # Settings read the environment and .env: run each test from an empty folder with no TICKPIPE-ish variables.
    for name in list(Settings.model_fields):
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.chdir(tmp_path)


def test_defaults_use_the_simulator() -> None:
    settings = load_settings()
    assert not settings.uses_alpaca
    assert settings.upstream_url == "ws://127.0.0.1:8765/v2/iex"
    assert settings.all_symbols
    assert settings.subscribed_types == ["quotes", "trades", "bars"]


def test_symbols_from_a_comma_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUBSCRIBED_SYMBOLS", "aapl, MSFT,brk.b")
    assert load_settings().subscribed_symbols == ["AAPL", "MSFT", "BRK.B"]


def test_keys_select_alpaca_and_never_show(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALPACA_API_KEY", "PKTESTKEYVALUE")
    monkeypatch.setenv("ALPACA_API_SECRET", "very-secret-value")
    monkeypatch.setenv("ALPACA_FEED", "sip")
    monkeypatch.setenv("DATABASE_URL", "postgresql://tick:hunter2@db:5432/tickpipe")
    settings = load_settings()
    assert settings.uses_alpaca
    assert settings.upstream_url == "wss://stream.data.alpaca.markets/v2/sip"
    shown = repr(settings) + str(settings)
    for secret in ("PKTESTKEYVALUE", "very-secret-value", "hunter2"):
        assert secret not in shown


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("ALPACA_FEED", "crypto", "ALPACA_FEED"),
        ("SUBSCRIBED_SYMBOLS", "AAPL,not a symbol", "SUBSCRIBED_SYMBOLS"),
        ("SUBSCRIBED_TYPES", "quotes,news", "SUBSCRIBED_TYPES"),
        ("BATCH_SIZE", "0", "BATCH_SIZE"),
        ("BATCH_SIZE", "lots", "BATCH_SIZE"),
        ("DATABASE_URL", "mysql://x", "DATABASE_URL"),
        ("REDIS_URL", "http://x", "REDIS_URL"),
        ("KAFKA_TOPIC_PREFIX", "bad prefix!", "KAFKA_TOPIC_PREFIX"),
        ("TICKPIPE_API_KEYS", "justakey", "TICKPIPE_API_KEYS"),
    ],
)
def test_bad_value_names_the_variable(monkeypatch: pytest.MonkeyPatch, name: str, value: str, expected: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert f"{expected}:" in str(caught.value)


def test_a_key_without_its_secret_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALPACA_API_KEY", "PKONLYKEY")
    with pytest.raises(SettingsError, match="ALPACA_API_SECRET must be set together"):
        load_settings()


def test_api_key_pairs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TICKPIPE_API_KEYS", "web:s3cret,mobile:other")
    settings = load_settings()
    assert settings.api_key_pairs == {"web": "s3cret", "mobile": "other"}
    assert "s3cret" not in repr(settings)


def test_dotenv_file_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("ALPACA_FEED=test\nBATCH_SIZE=123\n")
    settings = load_settings()
    assert settings.alpaca_feed == "test"
    assert settings.batch_size == 123


def test_redact_url() -> None:
    assert redact_url("postgresql://u:pw@h:5432/db") == "postgresql://u:***@h:5432/db"
    assert redact_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
    assert redact_url(None) is None


def test_env_example_documents_every_setting_and_loads_as_is(tmp_path: Path) -> None:
    import re

    example = Path(__file__).resolve().parents[2] / ".env.example"
    text = example.read_text().split("# --- docker compose only", 1)[0]
    documented = set(re.findall(r"^([A-Z_]+)=", text, re.MULTILINE))
    assert documented == {name.upper() for name in Settings.model_fields}
    # Copied verbatim to .env, the example must load, and its empty values mean "unset".
    (tmp_path / ".env").write_text(text)
    settings = load_settings()
    assert not settings.uses_alpaca
    assert settings.database_url is None
    assert settings.spool_path == Path(".tickpipe") / "spool"


def test_crypto_subscribed_types_default_to_every_crypto_channel_and_name_a_bad_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from producer.service import feed_channels
    from tickpipe.feeds import CRYPTO, STOCK

    every = ["trades", "quotes", "orderbooks", "bars", "updatedBars", "dailyBars"]
    assert load_settings().crypto_subscribed_types == every
    assert feed_channels(load_settings(), CRYPTO) == tuple(every)
    monkeypatch.setenv("CRYPTO_SUBSCRIBED_TYPES", " trades, orderbooks,trades")
    chosen = load_settings()
    assert chosen.crypto_subscribed_types == ["trades", "orderbooks"]
    assert feed_channels(chosen, CRYPTO) == ("trades", "orderbooks")
    assert feed_channels(chosen, STOCK) == ("quotes", "trades", "bars"), "SUBSCRIBED_TYPES stays the stock one"
    for bad, named in (("trades,lulds", "'lulds'"), ("statuses", "'statuses'"), (",", "")):
        monkeypatch.setenv("CRYPTO_SUBSCRIBED_TYPES", bad)
        with pytest.raises(SettingsError) as caught:
            load_settings()
        message = str(caught.value)
        assert "CRYPTO_SUBSCRIBED_TYPES:" in message and named in message and "orderbooks" in message
        assert "\n" not in message
