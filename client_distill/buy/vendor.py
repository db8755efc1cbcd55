"""Which vendor to buy from, as one typed value: what the vendor flags of ``vl2v embed``/``distill``/
``export``/``cache stats`` say, and what a sweep config's ``vendor``/``embed.vendor`` sections say.

A field left unset (None) is the environment's (``VL2V_VENDOR``, ``VL2V_VENDOR_URL``, ``VL2V_API_KEY``,
``VL2V_MODEL``, ``VL2V_CACHE``: :class:`~client_distill.buy.settings.ClientSettings`), read when the
vendor is opened, in the process that buys: so a sweep's worker buys with the sweep's environment and
no key needs to be written down anywhere.

The API key is a secret by construction: a :class:`~pydantic.SecretStr` that ``repr`` masks and that no
dump of the config contains (``exclude``), so nothing derived from a config (a teacher set's folder name,
a record, a log) can hold it. :meth:`VendorConfig.flags` is the config's public identity.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import diskcache
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from client_distill.adapters.base import Adapter
from client_distill.adapters.registry import ADAPTERS, create_adapter
from client_distill.buy.cache import CacheDirLimits, EmbeddingCache
from client_distill.buy.query_ledger import ledger_totals
from client_distill.buy.settings import ClientSettings, load_settings
from client_distill.buy.teacher import Teacher
from client_distill.errors import UsageError

#: the fields the environment may set (the rest have plain defaults)
FROM_ENVIRONMENT = ("vendor", "vendor_url", "api_key", "model", "cache")
#: each public field and its ``vl2v`` flag, in the order :meth:`VendorConfig.flags` lists them
FLAGS = (
    ("vendor", "--vendor"),
    ("vendor_url", "--vendor-url"),
    ("model", "--model"),
    ("concurrency", "--concurrency"),
    ("batch_size", "--batch-size"),
    ("retry_deadline", "--retry-deadline"),
    ("cache", "--cache"),
)
SECRET_FLAGS = {"--api-key": "api_key"}


class VendorConfig(BaseModel):
    """The vendor options of every buying command (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: the API flavour, a name in :data:`~client_distill.adapters.registry.ADAPTERS`
    vendor: str | None = None
    vendor_url: str | None = None
    api_key: SecretStr | None = Field(None, exclude=True)
    #: the vendor's model id (None everywhere: the vendor's first)
    model: str | None = None
    #: requests in flight at once
    concurrency: int = 4
    #: items per request (None: the vendor's limit, or the one learned from its refusals)
    batch_size: int | None = None
    #: seconds to keep retrying a failing vendor
    retry_deadline: float = 600.0
    #: the client cache (and query ledger) folder
    cache: str | None = None

    @field_validator("vendor")
    @classmethod
    def _known_vendor(cls, name: str | None) -> str | None:
        if name is not None and name not in ADAPTERS:
            raise ValueError(f"unknown vendor {name!r}; choose one of {', '.join(sorted(ADAPTERS))}")
        return name

    @classmethod
    def from_flags(cls, argv: list[Any]) -> VendorConfig:
        """The config a list of ``vl2v`` vendor flags gives (``--vendor-url URL`` or ``--vendor-url=URL``;
        a sweep config's ``vendor_args`` as older versions wrote them); an unknown flag is a ValueError."""
        by_flag = dict((flag, field) for field, flag in FLAGS) | SECRET_FLAGS
        values: dict[str, Any] = {}
        items = [str(a) for a in argv]
        i = 0
        while i < len(items):
            flag, eq, value = items[i].partition("=")
            if flag not in by_flag:
                raise ValueError(f"unknown vendor option {items[i]!r}; known: {', '.join(sorted(by_flag))}")
            if not eq:
                if i + 1 >= len(items):
                    raise ValueError(f"vendor option {flag} needs a value")
                i, value = i + 1, items[i + 1]
            values[by_flag[flag]] = value
            i += 1
        return cls.model_validate(values)

    @property
    def secret(self) -> str | None:
        """The API key itself, for the one place that sends it (the adapter's ``Authorization``)."""
        return self.api_key.get_secret_value() if self.api_key is not None else None

    def flags(self) -> list[str]:
        """The options this config sets, as ``vl2v`` flags in one order, never the API key: what a teacher
        set bought with them is named by, so rotating a key renames nothing."""
        out = []
        for field, flag in FLAGS:
            value = getattr(self, field)
            if field in self.model_fields_set and value is not None:
                out += [flag, f"{value:g}" if isinstance(value, float) else str(value)]
        return out

    def over(self, defaults: VendorConfig | ClientSettings) -> VendorConfig:
        """This config, with each field it leaves unset that the environment may set taken from
        ``defaults`` (another config, or the environment's settings)."""
        updates = {}
        for field in FROM_ENVIRONMENT:
            value = getattr(defaults, field, None)
            if getattr(self, field) is None and value is not None:
                updates[field] = str(value) if isinstance(value, Path) else value
        if not updates:
            return self
        values = {f: getattr(self, f) for f in self.model_fields_set | {"api_key"}} | updates
        return VendorConfig.model_validate(values)

    def resolved(self) -> VendorConfig:
        """This config over the environment's ``VL2V_*`` settings (read now)."""
        return self.over(load_settings())

    def open_adapter(self) -> Adapter:
        """The adapter this config (over the environment) describes; the item limits it learns from the
        vendor's size refusals are kept in the cache folder for the next run."""
        v = self.resolved()
        return create_adapter(
            str(v.vendor),
            v.vendor_url or "",
            v.secret,
            model=v.model,
            concurrency=v.concurrency,
            batch_limit=v.batch_size,
            retry_deadline_s=v.retry_deadline,
            limits=CacheDirLimits(v.cache) if v.cache else None,
        )

    def cache_dir(self) -> Path:
        """The cache folder this config (over the environment) names."""
        return Path(str(self.resolved().cache)).expanduser()


@contextlib.contextmanager
def open_teacher(
    vendor: VendorConfig,
    *,
    use_cache: bool = True,
    budget: int | None = None,
    on_progress: Callable[[Teacher], None] | None = None,
) -> Iterator[Teacher]:
    """A :class:`~client_distill.buy.teacher.Teacher` buying from ``vendor`` through its cache folder;
    the teacher and the cache are closed on exit."""
    adapter = vendor.open_adapter()  # a missing URL or unknown vendor fails before the cache is opened
    cache = EmbeddingCache(vendor.cache_dir())
    try:
        teacher = Teacher(adapter, cache, use_cache=use_cache, budget=budget, on_progress=on_progress)
        try:
            yield teacher
        finally:
            teacher.close()
    finally:
        cache.close()


def cache_stats(cache_dir: str | Path, vendor: VendorConfig | None = None) -> dict[str, Any]:
    """What the cache in ``cache_dir`` holds and what its ledger says was paid (all accounts); with a
    ``vendor``, also that key's account in the ledger and the vendor's own usage of it, to reconcile.
    A folder that holds no cache is refused, not made into an empty one: a mistyped ``--cache`` would
    otherwise read as "nothing bought"."""
    directory = Path(cache_dir).expanduser()
    if not (directory / diskcache.core.DBNAME).is_file():
        state = "does not exist" if not directory.exists() else "holds no embedding cache"
        raise UsageError(f"{directory} {state}: a cache is made by the first purchase through it (vl2v embed --cache)")
    cache = EmbeddingCache(directory)
    try:
        report = {**cache.stats(), "ledger": ledger_totals(cache)}
        lookups = report["hits"] + report["misses"]
        report["hit_rate"] = round(report["hits"] / lookups, 4) if lookups else None
        if vendor is not None:
            with Teacher(vendor.open_adapter(), cache) as teacher:
                report["account_ledger"] = ledger_totals(cache, teacher.ledger.account)
                report["vendor_usage"] = teacher.vendor_usage()
    finally:
        cache.close()
    return report
