"""The composition root: settings + credentials → clients and stores, shared by handlers, CLI and demo.

Built once per FC instance (``qcflow.fc.FunctionApp``) or once per CLI run. Modules a
function does not need are imported only when asked for (the push function never imports
the harvester), because every import is paid on a cold start.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING

import httpx

from qcflow.ccc import CccClient
from qcflow.config import Settings, env_name, load_settings
from qcflow.credentials import Credentials, CredentialsProvider
from qcflow.errors import ConfigError, ForeignBucketError
from qcflow.sca import ScaClient
from qcflow.store import ObjectStore, open_store, parse_store_url

if TYPE_CHECKING:
    from qcflow.push import Pusher


@dataclass
class Services:
    settings: Settings
    credentials: CredentialsProvider
    http: httpx.AsyncClient
    ccc: CccClient
    sca: ScaClient
    store: ObjectStore
    #: ``QCFLOW_PII_RAW_STORE``: where the unredacted rows go too (``None``: nowhere).
    raw_store: ObjectStore | None = None
    _recordings: dict[str, ObjectStore] = field(default_factory=dict)
    _pushers: dict[str, Pusher] = field(default_factory=dict)

    def recordings_url_for(self, bucket: str | None) -> str:
        """``QCFLOW_RECORDINGS_URL``, or the event's bucket; an event for another bucket is refused."""
        configured = self.settings.push.recordings_url
        if configured:
            kind, where, _ = parse_store_url(configured)
            # a local folder stands in for any bucket (the demo and tests feed it OSS events)
            if bucket is not None and kind == "oss" and where != bucket:
                raise ForeignBucketError(
                    f"event for bucket {bucket!r}, but {env_name('recordings_url')}={configured} names another place; "
                    "point the OSS trigger at that bucket or change the setting"
                )
            return configured
        if bucket is None:
            raise ConfigError(f"{env_name('recordings_url')} is not set: where are the recordings?")
        return f"oss://{bucket}"

    def recordings(self, url: str) -> ObjectStore:
        if url not in self._recordings:
            store = open_store(url, settings=self.settings, credentials=self.credentials)
            if hasattr(store, "origin"):  # what a NoSuchBucket blames: the setting, or the event
                configured = self.settings.push.recordings_url
                store.origin = (
                    env_name("recordings_url")
                    if configured == url
                    else f"the OSS event (its bucket; {env_name('recordings_url')} is not set)"
                )
            self._recordings[url] = store
        return self._recordings[url]

    def pusher(self, bucket: str | None = None) -> Pusher:
        """The push use case for recordings in ``bucket`` (or ``QCFLOW_RECORDINGS_URL``)."""
        from qcflow.push import Pusher  # here, not at the top: the harvest and callback functions never load push

        url = self.recordings_url_for(bucket)
        if url not in self._pushers:
            recordings = self.recordings(url)
            sign_url, problem = self._url_signer(url, recordings)
            self._pushers[url] = Pusher(
                self.settings.push,
                zone=self.settings.zone,
                ccc=self.ccc,
                sca=self.sca,
                store=self.store,
                recordings=recordings,
                sign_url=sign_url,
                sign_url_problem=problem,
                callback_token=token.get_secret_value() if (token := self.settings.callback.token) else None,
            )
        return self._pushers[url]

    def _url_signer(self, url: str, recordings: ObjectStore):  # type: ignore[no-untyped-def]
        """How push signs ``voiceFileUrl`` with strategy ``signed`` (None, and why not)."""
        settings = self.settings.push
        if settings.audio_url_strategy != "signed":
            return None, None
        lifetime = timedelta(seconds=settings.audio_url_lifetime_seconds)
        if settings.audio_url_access_key_id and settings.audio_url_access_key_secret:
            key = Credentials(settings.audio_url_access_key_id, settings.audio_url_access_key_secret.get_secret_value())
            signer = open_store(url, settings=self.settings, credentials=key)
            return (lambda object_key: signer.signed_get_url(object_key, lifetime)), None
        try:
            sts = self.credentials().security_token is not None
        except ConfigError:
            sts = False
        if sts:
            return None, (
                f"{env_name('audio_url_strategy')}=signed with the function's STS credentials: "
                "the URL would die with the "
                f"token (about an hour), long before the 12 h SCA needs. Set {env_name('audio_url_access_key_id')} and "
                f"{env_name('audio_url_access_key_secret')} (a RAM user allowed oss:GetObject on the recordings only), "
                "or use strategy ccc"
            )
        return (lambda object_key: recordings.signed_get_url(object_key, lifetime)), None

    async def aclose(self) -> None:
        await self.http.aclose()


async def build_services(
    credentials: CredentialsProvider,
    settings: Settings | None = None,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Services:
    """Clients and stores for ``settings`` (default: from the environment), one HTTP pool."""
    from qcflow.logs import configure_logging

    settings = settings or load_settings()
    configure_logging(settings.log_level)
    http = httpx.AsyncClient(
        transport=transport,
        timeout=httpx.Timeout(settings.http.timeout_seconds, connect=settings.http.connect_timeout_seconds),
        limits=httpx.Limits(max_connections=100, max_keepalive_connections=50),
    )
    if settings.secrets.kms_names():  # secrets named by QCFLOW_*_KMS_NAME: read once, now
        from qcflow.secrets import resolve_secrets

        try:
            settings = await resolve_secrets(settings, credentials, http=http)
        except BaseException:
            await http.aclose()
            raise
    if settings.pii.raw_store and settings.pii.raw_store.rstrip("/") == settings.store.url.rstrip("/"):
        await http.aclose()
        raise ConfigError(f"{env_name('pii_raw_store')} must name another store than {env_name('store')}")
    return Services(
        settings=settings,
        credentials=credentials,
        http=http,
        ccc=CccClient.from_settings(settings, credentials, http=http),
        sca=ScaClient.from_settings(settings, credentials, http=http),
        store=open_store(settings.store.url, settings=settings, credentials=credentials),
        raw_store=(
            open_store(settings.pii.raw_store, settings=settings, credentials=credentials)
            if settings.pii.raw_store
            else None
        ),
    )
