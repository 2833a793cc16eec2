"""Fixtures of the API tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.helpers.services import database_of_its_own


@pytest.fixture(scope="module")
def keyed_db(postgres_server_url: str) -> Iterator[str]:
    """A database of this module alone, schema at head, for tests that add API keys.

    Keys turn auth on for every API on their database, so they never go into
    the session's database, where the other tests run without keys.
    """
    with database_of_its_own(postgres_server_url, "tickpipe_keys") as url:
        yield url
