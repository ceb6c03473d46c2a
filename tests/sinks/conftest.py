"""Fixtures shared by the sink suites."""

from __future__ import annotations

import pytest

from tests.sinks.private_ca import PrivateCA, make_private_ca


@pytest.fixture(scope="session")
def private_ca(tmp_path_factory: pytest.TempPathFactory) -> PrivateCA:
    """A throwaway CA and a server certificate it signed for localhost / 127.0.0.1."""
    return make_private_ca(tmp_path_factory.mktemp("private-ca"))


@pytest.fixture(scope="session")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> PrivateCA:
    """A second, unrelated CA: trusting it does not make ``private_ca``'s server trusted."""
    return make_private_ca(tmp_path_factory.mktemp("other-ca"), ca_name="some other CA")
