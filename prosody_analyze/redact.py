"""Stable pseudonyms for JIDs, domains, IP addresses and room names, so a report can leave the company.

One :class:`Redactor` serves one report: the same input always gets the same pseudonym
(``user-3``, ``domain-1.example``, ``room-2``, ``ip-4``), so a reader can still follow one
participant or room across tables and plots. Jitsi's well-known sub-domains keep their first
label (``conference.domain-1.example``) because they tell what a component is, not whose it is.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

# Labels Jitsi and Prosody put in front of the deployment's domain; they say which component it is.
COMPONENT_LABELS = {
    "conference",
    "focus",
    "auth",
    "internal-muc",
    "internal",
    "lobby",
    "breakout",
    "guest",
    "muc",
    "recorder",
    "jigasi",
    "jvb",
    "speakerstats",
    "avmoderation",
    "metadata",
    "polls",
    "upload",
}
# Last labels that mark a host name in free text even with a single dot (others need two dots,
# so that Prosody sources like `http.server` and file names like `prosody.log` stay).
COMMON_TLDS = {
    "com",
    "org",
    "net",
    "io",
    "de",
    "fr",
    "uk",
    "eu",
    "si",
    "nl",
    "ch",
    "at",
    "it",
    "es",
    "us",
    "local",
    "internal",
    "lan",
    "example",
    "test",
    "localhost",
    "cloud",
    "dev",
    "edu",
    "gov",
}
FILE_EXTENSIONS = {
    "log",
    "txt",
    "json",
    "jsonl",
    "csv",
    "parquet",
    "gz",
    "lua",
    "py",
    "js",
    "html",
    "md",
    "xml",
    "conf",
    "cfg",
    "yaml",
    "yml",
    "pem",
    "crt",
    "key",
    "sock",
    "pid",
    "zst",
    "bz2",
    "xz",
}

IPV4 = r"(?<![\w.])(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)(?![\w.])"
IPV6 = r"(?<![\w:])(?:[0-9a-fA-F]{0,4}:){2,7}[0-9a-fA-F]{0,4}(?![\w:])"
LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
HOST = rf"\[?(?:{LABEL}\.)*{LABEL}\]?"
# local@domain[/resource]; the local part of a JID excludes the characters XMPP forbids there.
JID = rf"(?P<local>[^\s@<>'\"/&:,;()\[\]{{}}=]+)@(?P<domain>{HOST})(?:/(?P<resource>[^\s<>'\"]+))?"
URL_HOST = rf"(?P<scheme>\b(?:wss?|https?|xmpp)://)(?P<host>{HOST})"
ADDRESS = rf"(?P<address>{IPV4}|{IPV6})"
FREE_HOST = rf"(?<![\w.@/-])(?P<free>(?:{LABEL}\.)+(?P<tld>[A-Za-z]{{2,24}}))(?![\w-])"


def _is_ipv6(text: str) -> bool:
    """Tell an IPv6 address from a clock time like 21:03:03 (all-digit, three groups)."""
    groups = text.split(":")
    return "::" in text or len(groups) >= 5 or any(c in "abcdefABCDEF" for c in text)


class Redactor:
    """Replaces identifying names in text by stable pseudonyms; ``enabled=False`` passes text through."""

    def __init__(self, enabled: bool = True, domains: Iterable[str] = (), rooms: Iterable[str] = ()):
        self.enabled = enabled
        self._names: dict[str, dict[str, str]] = {
            "user": {},
            "domain": {},
            "room": {},
            "ip": {},
            "resource": {},
        }
        self._domains: set[str] = set()
        self._rooms: set[str] = set()
        self._pattern: re.Pattern[str] = re.compile("")
        self.learn(domains=domains, rooms=rooms)

    def learn(self, domains: Iterable[str] = (), rooms: Iterable[str] = ()) -> None:
        """Names to find in free text even where no pattern would spot them (``localhost``, a bare room)."""
        self._domains.update(d.strip("[]").lower() for d in domains if d and d.strip("[]"))
        for room in rooms:
            if not room:
                continue
            local, _, domain = room.partition("@")
            self._rooms.add(local)
            if domain:
                self._domains.add(domain.strip("[]").lower())
        words = sorted(self._domains | self._rooms, key=len, reverse=True)
        known = (
            [r"(?<![\w.@-])\[?(?P<known>" + "|".join(map(re.escape, words)) + r")\]?(?![\w-])"]
            if words
            else []
        )
        # One pass over the text, so a pseudonym already written is never matched again.
        self._pattern = re.compile("|".join([JID, URL_HOST, ADDRESS, *known, FREE_HOST]), re.IGNORECASE)

    def _pseudonym(self, kind: str, value: str) -> str:
        names = self._names[kind]
        if value not in names:
            names[value] = f"{kind}-{len(names) + 1}"
        return names[value]

    def domain(self, value: str) -> str:
        host = value.strip("[]").lower()
        if not host:
            return value
        first, dot, rest = host.partition(".")
        if dot and first in COMPONENT_LABELS and rest:
            return f"{first}.{self.domain(rest)}"
        return self._pseudonym("domain", host) + ".example"

    def room(self, value: str) -> str:
        return self._pseudonym("room", value)

    def ip(self, value: str) -> str:
        return self._pseudonym("ip", value.lower())

    def _jid(self, match: re.Match[str]) -> str:
        local, domain, resource = match["local"], match["domain"], match["resource"]
        is_room = local in self._rooms or domain.strip("[]").lower().split(".", 1)[0] in COMPONENT_LABELS
        text = f"{self.room(local) if is_room else self._pseudonym('user', local)}@{self.domain(domain)}"
        if resource:
            text += "/" + self._pseudonym("resource", resource)
        return text

    def _replace(self, match: re.Match[str]) -> str:
        if match["local"] is not None:
            return self._jid(match)
        if match["scheme"] is not None:
            return match["scheme"] + self.domain(match["host"])
        if match["address"] is not None:
            text = match["address"]
            return self.ip(text) if ":" not in text or _is_ipv6(text) else text
        if match.groupdict().get("known") is not None:
            word = match["known"]
            return self.room(word) if word in self._rooms else self.domain(word)
        host, tld = match["free"], match["tld"].lower()
        if tld in FILE_EXTENSIONS or (tld not in COMMON_TLDS and host.count(".") < 2):
            return host
        return self.domain(host)

    def text(self, value: str | None) -> str | None:
        """``value`` with every JID, URL host, IP address, known domain and room replaced."""
        if not self.enabled or not value:
            return value
        return self._pattern.sub(self._replace, value)

    def value(self, value: object) -> object:
        """Strings redacted; lists and dicts walked; anything else unchanged (for manifests and JSON)."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, list):
            return [self.value(v) for v in value]
        if isinstance(value, dict):
            return {k: self.value(v) for k, v in value.items()}
        return value
