"""Fixtures and real servers shared by the sink suites (the sink-independent kit is
:mod:`pimwatch.testing.sinks`)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from azure.core.credentials import AccessToken

from tests.sinks.private_ca import PrivateCA, make_private_ca


@pytest.fixture(scope="session")
def private_ca(tmp_path_factory: pytest.TempPathFactory) -> PrivateCA:
    """A throwaway CA and a server certificate it signed for localhost / 127.0.0.1."""
    return make_private_ca(tmp_path_factory.mktemp("private-ca"))


@pytest.fixture(scope="session")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> PrivateCA:
    """A second, unrelated CA: trusting it does not make ``private_ca``'s server trusted."""
    return make_private_ca(tmp_path_factory.mktemp("other-ca"), ca_name="some other CA")


# --- a real SMTP server (aiosmtpd) ------------------------------------------------------------------


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes
    login: bytes | None
    auth_data: Any

    def parsed(self) -> EmailMessage:
        msg = message_from_bytes(self.content, policy=default_policy)
        assert isinstance(msg, EmailMessage)
        return msg


@dataclass
class Recorder:
    """An aiosmtpd handler: records every message; scripted RCPT and DATA replies."""

    data_reply: str = "250 2.0.0 OK queued as T1"
    rcpt_replies: dict[str, str] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address in self.rcpt_replies:
            return self.rcpt_replies[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        self.received.append(
            Received(
                str(envelope.mail_from),
                list(envelope.rcpt_tos),
                content,
                getattr(session.auth_data, "login", None),
                session.auth_data,
            )
        )
        return self.data_reply


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def smtp_server(handler: Recorder, **smtp_kwargs: Any) -> Iterator[int]:
    port = free_port()
    controller = Controller(
        handler, hostname="127.0.0.1", port=port, server_hostname="mx.test", ready_timeout=5, **smtp_kwargs
    )
    controller.start()
    try:
        yield port
    finally:
        controller.stop()


def password_authenticator(user: str, password: str) -> Any:
    """An aiosmtpd authenticator accepting only ``user`` / ``password`` (AUTH PLAIN / LOGIN)."""

    def check(server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any) -> AuthResult:
        expected = (user.encode(), password.encode())
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == expected
        return AuthResult(success=ok, handled=False, auth_data=data if ok else None)

    return check


# --- Azure credentials --------------------------------------------------------------------------------


class StaticToken:
    """A real TokenCredential: a fixed token; records the scopes it was asked for."""

    def __init__(self, token: str):
        self.token = token
        self.scopes: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.scopes.append(scopes)
        return AccessToken(self.token, int(time.time()) + 3600)
