"""The collector: ads by type and name, each with a lifetime, an author and a last update.

Like HTCondor's collector it keeps ads in memory only: everything in it is
re-advertised periodically by its author, and a restart is forgotten within one
advertising cycle.  It stamps each ad with the identity the pool authenticated
(AuthenticatedIdentity), which is how a factory knows which frontend a request is
really from, and it lets each scope write only its own ad types.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import NamedTuple

from updraft.core import classads
from updraft.core.errors import BadRequest, Forbidden, TooCostly, TooLarge
from updraft.core.protocol import (
    ATTR_AUTHENTICATED_IDENTITY,
    ATTR_GLIDEIN_CLIENT,
    ATTR_LAST_HEARD_FROM,
    ATTR_LIFETIME,
    ATTR_MY_TYPE,
    ATTR_NAME,
    DEFAULT_AD_LIFETIME_S,
    MAX_AD_ATTRIBUTES,
    MAX_COLLECTOR_AD_CHARS,
    MAX_EXPRESSION_TEXT,
    WRITABLE_AD_TYPES,
    AdType,
    Scope,
    ad_value,
    literal,
)
from userpool import exprcost
from userpool.selection import Selector
from userpool.tokens import FRONTEND_BINDING, Identity

MAX_ADS_PER_REQUEST = 10000
MAX_LIFETIME_S = 7 * 86400


@dataclass
class StoredAd:
    ad_type: AdType
    name: str
    texts: dict[str, str]
    author: str
    expires: float
    size: int = 0  # characters of its names and texts, counted against its account's bound
    account: str = ""  # whose bound it counts against (Identity.account): its author, or their frontend


class ValidAd(NamedTuple):
    """An ad that passed ``Collector.validate``: its name, canonical texts and size (characters)."""

    name: str
    texts: dict[str, str]
    size: int


def may_write(identity: Identity, ad_type: AdType) -> bool:
    return any(ad_type in WRITABLE_AD_TYPES[scope] for scope in identity.scopes) or identity.is_admin


def _name_of(texts: dict[str, str], index: int) -> str:
    text = texts.get(ATTR_NAME)
    if text is None:
        raise BadRequest(f"ad #{index}: no Name attribute")
    try:
        name = classads.value_of_text(text) if classads.is_literal(text) else None
    except Exception:
        name = None
    if not isinstance(name, str) or not name:
        raise BadRequest(f"ad #{index}: Name must be a non-empty string literal, not {text!r}")
    return name


class Collector:
    def __init__(
        self,
        clock: Callable[[], float] = time.time,
        max_terms: int = 20_000,
        max_depth: int = 100,
        max_per_author: int = 200_000,
        max_mb_per_author: int = 1024,
    ) -> None:
        self.clock = clock
        #: the expression budget (exprcost): a pilot's START is evaluated against every autocluster
        self.max_terms = max_terms
        self.max_depth = max_depth
        #: every author's ads of a type are bounded: memory is never anyone's to take
        self.max_per_author = max_per_author
        self.max_chars_per_author = max_mb_per_author << 20
        self.ads: dict[AdType, dict[str, StoredAd]] = {t: {} for t in AdType}
        self.held: Counter[tuple[AdType, str]] = Counter()  # (type, account) -> ads in the table
        self.held_chars: Counter[tuple[AdType, str]] = Counter()  # (type, account) -> their size
        self.swept = 0.0  # when expired ads were last removed
        self.listeners: list[Callable[[AdType, list[StoredAd]], None]] = []

    def validate(self, ads: list[dict[str, str]]) -> list[ValidAd]:
        """Each ad checked and in canonical names, or BadRequest naming the ad and attribute."""
        if len(ads) > MAX_ADS_PER_REQUEST:
            raise BadRequest(f"at most {MAX_ADS_PER_REQUEST} ads per request")
        out = []
        for index, raw in enumerate(ads):
            if not isinstance(raw, dict):
                raise BadRequest(f"ad #{index}: expected an object of attribute texts")
            if len(raw) > MAX_AD_ATTRIBUTES:
                raise TooLarge(f"ad #{index}: more than {MAX_AD_ATTRIBUTES} attributes")
            texts: dict[str, str] = {}
            size = 0
            for attribute, text in raw.items():
                if not classads.is_valid_attribute_name(attribute):
                    raise BadRequest(f"ad #{index}: {attribute!r} is not an attribute name")
                if not isinstance(text, str):
                    raise BadRequest(
                        f"ad #{index}: {attribute}: value must be the text of a ClassAd expression"
                    )
                size += len(attribute) + len(text)
                if len(text) > MAX_EXPRESSION_TEXT or size > MAX_COLLECTOR_AD_CHARS:
                    raise TooLarge(
                        f"ad #{index}: {attribute}: an ad may hold {MAX_EXPRESSION_TEXT} characters per"
                        f" expression and {MAX_COLLECTOR_AD_CHARS} in all"
                    )
                classads.check(text, f"ad #{index} attribute {attribute}")
                texts[classads.canonical(attribute)] = text
            computed = [name for name, text in texts.items() if not classads.is_literal(text)]
            problem = (
                exprcost.over_budget(texts, computed, self.max_terms, self.max_depth) if computed else None
            )
            if problem:
                raise TooCostly(f"ad #{index}: {problem}")
            out.append(ValidAd(_name_of(texts, index), texts, size))
        return out

    def advertise(
        self, identity: Identity, ad_type: AdType, ads: list[dict[str, str]], lifetime_s: int | None = None
    ) -> list[StoredAd]:
        self._require_write(identity, ad_type)  # before reading the ads
        return self.advertise_valid(identity, ad_type, self.validate(ads), lifetime_s)

    def _require_write(self, identity: Identity, ad_type: AdType) -> None:
        if not may_write(identity, ad_type):
            raise Forbidden(f"{identity.name} may not write {ad_type.value} ads")

    def advertise_valid(
        self, identity: Identity, ad_type: AdType, validated: list[ValidAd], lifetime_s: int | None = None
    ) -> list[StoredAd]:
        """Store ads ``validate`` already checked (a pilot's poll reads its slot ad too); their
        texts get the collector's stamps."""
        self._require_write(identity, ad_type)
        now = self.clock()
        table = self.ads[ad_type]
        for name, _texts, _size in validated:
            existing = table.get(name)
            if (
                existing is not None
                and existing.author != identity.principal
                and not identity.is_admin
                and existing.expires > now
            ):
                raise Forbidden(
                    f"{ad_type.value} ad {name!r} belongs to {existing.author}, not {identity.principal}"
                )
        self._check_client(identity, ad_type, validated)
        self._make_room(identity, ad_type, {name: size for name, _texts, size in validated})
        stored = []
        for name, texts, size in validated:
            lifetime = lifetime_s
            if lifetime is None:
                lifetime_text = texts.get(ATTR_LIFETIME)
                try:
                    value = classads.value_of_text(lifetime_text) if lifetime_text else None
                except Exception:
                    value = None
                value = classads.number(value)
                lifetime = int(value) if value is not None else DEFAULT_AD_LIFETIME_S
            lifetime = max(1, min(int(lifetime), MAX_LIFETIME_S))
            texts[ATTR_MY_TYPE] = literal(ad_type.value)
            texts[ATTR_AUTHENTICATED_IDENTITY] = literal(identity.name)
            texts[ATTR_LAST_HEARD_FROM] = str(int(now))
            texts[ATTR_LIFETIME] = str(lifetime)
            ad = StoredAd(ad_type, name, texts, identity.principal, now + lifetime, size, identity.account)
            self._drop(table, name)
            table[name] = ad
            self.held[(ad_type, ad.account)] += 1
            self.held_chars[(ad_type, ad.account)] += ad.size
            stored.append(ad)
        for listener in self.listeners:
            listener(ad_type, stored)
        return stored

    def query(
        self, ad_type: AdType | None, constraint: str = "", projection: Iterable[str] = ()
    ) -> list[dict[str, str]]:
        selector = Selector(constraint)
        names = list(projection)
        now = self.clock()
        out = []
        types = [ad_type] if ad_type is not None else list(AdType)
        for kind in types:
            for ad in self.ads[kind].values():
                if ad.expires <= now:
                    continue
                if selector and not selector.matches_ad(ad.texts):
                    continue
                if names:
                    out.append(
                        {
                            n: ad.texts[classads.canonical(n)]
                            for n in names
                            if classads.canonical(n) in ad.texts
                        }
                    )
                else:
                    out.append(dict(ad.texts))
        return out

    def invalidate(
        self, identity: Identity, ad_type: AdType, names: Iterable[str] = (), constraint: str = ""
    ) -> int:
        if not may_write(identity, ad_type):
            raise Forbidden(f"{identity.name} may not invalidate {ad_type.value} ads")
        table = self.ads[ad_type]
        wanted = set(names)
        selector = Selector(constraint)
        if not wanted and not selector:
            raise BadRequest("invalidate needs names or a constraint")
        removed = 0
        for name, ad in list(table.items()):
            if wanted and name not in wanted:
                continue
            if selector and not selector.matches_ad(ad.texts):
                continue
            if ad.author != identity.principal and not identity.is_admin:
                if wanted:
                    raise Forbidden(
                        f"{ad_type.value} ad {name!r} belongs to {ad.author}, not {identity.principal}"
                    )
                continue
            self._drop(table, name)
            removed += 1
        return removed

    def expire(self) -> int:
        now = self.swept = self.clock()
        removed = 0
        for table in self.ads.values():
            for name in [n for n, ad in table.items() if ad.expires <= now]:
                self._drop(table, name)
                removed += 1
        return removed

    @staticmethod
    def _check_client(identity: Identity, ad_type: AdType, validated: list[ValidAd]) -> None:
        """A frontend's pilot speaks for that frontend only: frontends count their pilots' slots
        (and failures) by GLIDEIN_Client, so another frontend's pilot naming them would shrink
        their requests with slots they do not have."""
        bound = identity.bindings.get(FRONTEND_BINDING)
        if not bound or ad_type not in (AdType.Slot, AdType.PilotFailure):
            return
        key = classads.canonical(ATTR_GLIDEIN_CLIENT)
        for name, texts, _size in validated:
            if key in texts and ad_value(texts, key) != bound:
                raise Forbidden(
                    f"{ad_type.value} ad {name!r} says {ATTR_GLIDEIN_CLIENT} {texts[key]}; a pilot of"
                    f" frontend {bound!r} may speak for that frontend only"
                )

    def _drop(self, table: dict[str, StoredAd], name: str) -> None:
        """Remove an ad (if there) and its account's count: the one place ads leave the table."""
        ad = table.pop(name, None)
        if ad is not None:
            key = (ad.ad_type, ad.account)
            self.held[key] -= 1
            self.held_chars[key] -= ad.size
            if self.held[key] <= 0:
                del self.held[key], self.held_chars[key]

    def _make_room(self, identity: Identity, ad_type: AdType, sizes: dict[str, int]) -> None:
        """Refuse ads that would take their account (the author, or the frontend whose pilot it
        is) past its bounds, in number or in size (expired ads are swept first); an update of the
        author's own ad counts its growth only."""
        if identity.is_admin:
            return
        table = self.ads[ad_type]
        key = (ad_type, identity.account)

        def after() -> tuple[int, int]:
            count, chars = self.held[key], self.held_chars[key]
            for name, size in sizes.items():
                ad = table.get(name)
                own = ad is not None and ad.author == identity.principal
                count += 0 if own else 1
                chars += size - (ad.size if own and ad is not None else 0)
            return count, chars

        def over(count: int, chars: int) -> bool:
            return (0 < self.max_per_author < count) or (0 < self.max_chars_per_author < chars)

        if not over(*after()):
            return
        if self.clock() - self.swept >= 1.0:  # at most once a second: a caller at its bound asks often
            self.expire()
        count, chars = after()
        if over(count, chars):
            raise TooLarge(
                f"{identity.account} would hold {count} {ad_type.value} ads of {chars >> 20} MiB; at most"
                f" {self.max_per_author} (max_ads_per_author) and {self.max_chars_per_author >> 20} MiB"
                " (max_ad_mb_per_author): invalidate old ones or reuse their names"
            )

    def get(self, ad_type: AdType, name: str) -> StoredAd | None:
        ad = self.ads[ad_type].get(name)
        return ad if ad is not None and ad.expires > self.clock() else None

    def counts(self) -> dict[str, int]:
        return {t.value: len(table) for t, table in self.ads.items()}

    def require_scope(self, identity: Identity) -> None:
        identity.require(Scope.PILOT, Scope.FACTORY, Scope.FRONTEND, Scope.ADMIN)
