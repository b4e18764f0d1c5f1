"""Store URLs are read one way everywhere (`thrifty.urls`)."""

from __future__ import annotations

from thrifty.urls import redacted, sqlite_path, store_url


def test_sqlite_urls_name_their_file() -> None:
    assert sqlite_path("sqlite:///data/thrifty.db") == "data/thrifty.db"  # relative
    assert sqlite_path("sqlite:////var/lib/thrifty.db") == "/var/lib/thrifty.db"  # absolute
    assert sqlite_path("sqlite://:memory:") == ":memory:"
    assert sqlite_path("sqlite://") == "thrifty.db"
    assert sqlite_path("postgresql://db/ledger") is None


def test_a_path_or_a_url_is_a_store_url() -> None:
    assert store_url("summaries.db") == "sqlite:///summaries.db"
    assert store_url("/tmp/s.db") == "sqlite:////tmp/s.db"
    assert store_url("postgresql://u@db/x") == "postgresql://u@db/x"
    assert sqlite_path(store_url("/tmp/s.db")) == "/tmp/s.db"


def test_messages_never_carry_a_password() -> None:
    assert redacted("postgresql://app:s3cret@db:5432/ledger") == "postgresql://app@db:5432/ledger"
    assert redacted("redis://:s3cret@cache:6379/0") == "redis://cache:6379/0"
    assert redacted("sqlite:///thrifty.db") == "sqlite:///thrifty.db"
