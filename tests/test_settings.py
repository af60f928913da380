"""Configuration: defaults that need no account, and one clear line per mistake."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.settings import ConfigError, Settings


def test_defaults_need_nothing_configured():
    s = Settings.from_env({}, dotenv=None)
    assert s.database_url == "sqlite+aiosqlite:///./deskbell.db"
    assert (s.host, s.port) == ("127.0.0.1", 8080)
    assert s.url_for(s.host, s.port) == "http://127.0.0.1:8080"


def test_port_comes_from_port_before_deskbell_port():
    assert Settings.from_env({"PORT": "5000", "DESKBELL_PORT": "6000"}, dotenv=None).port == 5000
    assert Settings.from_env({"DESKBELL_PORT": "6000"}, dotenv=None).port == 6000


def test_postgres_urls_are_mapped_to_the_async_driver():
    s = Settings.from_env({"DESKBELL_DATABASE_URL": "postgres://u:p@db/app"}, dotenv=None)
    assert s.database_url == "postgresql+asyncpg://u:p@db/app"


@pytest.mark.parametrize(
    ("env", "name"),
    [
        ({"DESKBELL_DATABASE_URL": "mysql://x"}, "DESKBELL_DATABASE_URL"),
        ({"DESKBELL_DATABASE_URL": "::::"}, "DESKBELL_DATABASE_URL"),
        ({"PORT": "eighty"}, "PORT"),
        ({"DESKBELL_PORT": "70000"}, "DESKBELL_PORT"),
        ({"DESKBELL_PUBLIC_URL": "chat.example.com"}, "DESKBELL_PUBLIC_URL"),
        ({"DESKBELL_REDIS_URL": "http://localhost"}, "DESKBELL_REDIS_URL"),
        ({"DESKBELL_SECRET_KEY": "short"}, "DESKBELL_SECRET_KEY"),
        ({"DESKBELL_LOG_LEVEL": "LOUD"}, "DESKBELL_LOG_LEVEL"),
    ],
)
def test_a_wrong_value_names_the_variable(env, name):
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(env, dotenv=None)
    assert str(caught.value).startswith(name + ":")
    assert "\n" not in str(caught.value)


def test_dotenv_is_read_and_the_environment_wins(tmp_path: Path):
    dotenv = tmp_path / ".env"
    dotenv.write_text('# comment\nexport DESKBELL_PORT=7000\nDESKBELL_PUBLIC_URL="https://chat.example.com/"\n')
    s = Settings.from_env({"DESKBELL_PORT": "7001"}, dotenv=dotenv)
    assert s.port == 7001
    assert s.public_url == "https://chat.example.com"


def test_a_broken_dotenv_line_is_named(tmp_path: Path):
    dotenv = tmp_path / ".env"
    dotenv.write_text("DESKBELL_PORT=7000\nthis is not a setting\n")
    with pytest.raises(ConfigError, match=r"\.env:2"):
        Settings.from_env({}, dotenv=dotenv)
