"""Importers: a policy file (and list files) from what a Pi-hole, AdGuard Home or Blocky user has.

`resolverguard import pihole|adguardhome|blocky ... --out DIR` writes `DIR/policy.yaml`, commented
line by line with where each setting came from, and the list files it names. Nothing is guessed
silently: what has no counterpart here (MAC-address clients, DNS over QUIC, blocked services) is
written as a comment saying so, and `resolverguard check DIR/policy.yaml` validates the result.

Semantics are kept: Pi-hole's adlists and exact domains match exactly (`format: exact`), its regex
lists are regexes; AdGuard Home's filters and user rules stay adblock syntax (`format: adblock`);
Blocky's lists keep their wildcards (`format: wildcard`).
"""

from __future__ import annotations

import ipaddress
import json
import re
import sqlite3
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from resolverguard.config import EncryptedUpstream, parse_upstream
from resolverguard.errors import ConfigError

DEFAULT_GROUP = 0  # Pi-hole's "Default" group
# AdGuard Home's own default bootstrap (Quad9's unfiltered resolvers), used when a config names none
DEFAULT_BOOTSTRAP = ("9.9.9.10", "149.112.112.10", "2620:fe::10", "2620:fe::fe:10")
Group = dict[str, Any]  # a client group as the policy file writes it


@dataclass
class PolicyDraft:
    """What an importer found, before it is written out."""

    source: str
    upstreams: list[str] = field(default_factory=list)
    bootstrap: list[str] = field(default_factory=list)  # plain resolvers that find encrypted upstreams
    bootstrap_from: str = ""  # where `bootstrap` came from, for the comment above it
    deny_files: list[dict[str, str]] = field(default_factory=list)
    allow_files: list[dict[str, str]] = field(default_factory=list)
    records: list[str] = field(default_factory=list)
    forwarding: dict[str, str] = field(default_factory=dict)
    groups: list[dict[str, Any]] = field(default_factory=list)
    files: dict[str, list[str]] = field(default_factory=dict)  # list file name -> lines
    notes: list[str] = field(default_factory=list)  # what was not carried over, and why

    def add_source(self, kind: str, entry: dict[str, str], into: Group | None = None) -> None:
        """A list (`{url|path, format}`) for the top level, or for the group `into`."""
        if into is None:
            (self.allow_files if kind == "allow" else self.deny_files).append(entry)
        else:
            into.setdefault("lists", {}).setdefault(f"{kind}_files", []).append(entry)

    def list_file(self, name: str, lines: Iterable[str], fmt: str, kind: str, into: Group | None = None) -> None:
        """Adds a list file we write (when it has lines) to the top level, or to the group `into`."""
        lines = list(lines)
        if lines:
            self.files[name] = lines
            self.add_source(kind, {"path": f"lists/{name}", "format": fmt}, into)


def _flow(value: Any) -> str:
    """A YAML flow value (JSON is YAML): quoting is never wrong."""
    return json.dumps(value, ensure_ascii=False)


def render(draft: PolicyDraft) -> str:
    """The commented policy file."""
    out = [
        f"# Imported from {draft.source} by `resolverguard import`.",
        "# Check it with `resolverguard check policy.yaml`; every key is explained in docs/policy.md.",
        "",
    ]
    if draft.upstreams:
        out += ["# The upstream resolvers it used.", "upstreams:", *(f"  - {_flow(u)}" for u in draft.upstreams), ""]
    else:
        out += ["# No plain DNS upstream found: the first nameserver of /etc/resolv.conf is used.", ""]
    if any(isinstance(u, EncryptedUpstream) and u.address is None for u in map(parse_upstream, draft.upstreams)):
        out += [
            f"# Plain resolvers that find the tls:// and https:// upstreams' addresses ({draft.bootstrap_from}).",
            "encrypted_upstreams:",
            f"  bootstrap: {_flow(draft.bootstrap or list(DEFAULT_BOOTSTRAP))}",
            "",
        ]
    out += ["# Block and allow lists (URLs are downloaded and refreshed daily; see subscriptions).", "lists:"]
    for key, entries in (("deny_files", draft.deny_files), ("allow_files", draft.allow_files)):
        if entries:
            out.append(f"  {key}:")
            out += [f"    - {{{', '.join(f'{k}: {_flow(v)}' for k, v in e.items())}}}" for e in entries]
    if not draft.deny_files and not draft.allow_files:
        out.append("  deny: []")
    out.append("")
    if draft.records:
        out += [
            "# Local DNS records.",
            "local_records:",
            "  records:",
            *(f"    - {_flow(r)}" for r in draft.records),
            "",
        ]
    if draft.forwarding:
        out += ["# Conditional forwarding: these zones go to their own server.", "conditional_forwarding:"]
        out += [f"  {_flow(zone)}: {_flow(target)}" for zone, target in draft.forwarding.items()]
        out.append("")
    if draft.groups:
        out += ["# Client groups: first match wins; a group's lists replace the top-level lists.", "groups:"]
        for group in draft.groups:
            out += [f"  - name: {_flow(group['name'])}", f"    clients: {_flow(group['clients'])}"]
            if "mode" in group:
                out.append(f"    mode: {group['mode']}")
            lists = group.get("lists", {})
            out.append("    lists:" if lists else "    lists: {deny: []}")
            for key, entries in lists.items():
                out.append(f"      {key}:")
                out += [f"        - {{{', '.join(f'{k}: {_flow(v)}' for k, v in e.items())}}}" for e in entries]
        out.append("")
    if draft.notes:
        out += ["# Not carried over:", *(f"#   - {note}" for note in draft.notes), ""]
    return "\n".join(out)


def write(draft: PolicyDraft, out_dir: Path) -> Path:
    """Writes policy.yaml and lists/*; returns the policy's path."""
    (out_dir / "lists").mkdir(parents=True, exist_ok=True)
    for name, lines in draft.files.items():
        (out_dir / "lists" / name).write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    policy = out_dir / "policy.yaml"
    policy.write_text(render(draft), encoding="utf-8")
    return policy


def _client_networks(ids: Iterable[str], what: str, notes: list[str]) -> list[str]:
    """Addresses and CIDRs; MAC addresses, host names and interfaces are noted (we match on the source IP)."""
    out = []
    for item in ids:
        try:
            out.append(str(ipaddress.ip_network(item.strip(), strict=False)))
        except ValueError:
            notes.append(f"{what}: client {item!r} is not an address or network (MAC, name or interface)")
    return out


def _safe_name(text: str) -> str:
    return re.sub(r"[^a-z0-9_.-]+", "-", text.lower()).strip("-") or "group"


# Pi-hole --------------------------------------------------------------------------------------


def import_pihole(
    gravity: Path, custom_list: Path | None = None, toml_file: Path | None = None, setup_vars: Path | None = None
) -> PolicyDraft:
    """From Pi-hole v5/v6: gravity.db (adlists, domainlist, groups, clients), custom.list (v5
    local records), pihole.toml (v6: upstreams, hosts, CNAMEs, reverse servers) or setupVars.conf (v5)."""
    draft = PolicyDraft(f"Pi-hole ({gravity.name})")
    try:
        db = sqlite3.connect(f"file:{gravity}?mode=ro", uri=True)
        db.row_factory = sqlite3.Row
        _pihole_lists(db, draft)
        db.close()
    except sqlite3.Error as err:
        raise ConfigError(f"not a readable Pi-hole gravity database: {err}", file=str(gravity)) from None
    if custom_list is not None:
        draft.records += _hosts_lines_as_records(custom_list.read_text(encoding="utf-8", errors="replace"))
    if toml_file is not None:
        _pihole_toml(tomllib.loads(toml_file.read_text(encoding="utf-8")), draft)
    if setup_vars is not None:
        _pihole_setup_vars(setup_vars.read_text(encoding="utf-8", errors="replace"), draft)
    return draft


def _pihole_lists(db: sqlite3.Connection, draft: PolicyDraft) -> None:
    columns = {row["name"] for row in db.execute("PRAGMA table_info(adlist)")}
    typed = "type" in columns  # v6: 0 block list, 1 allow list
    adlists = db.execute(f"SELECT id, address, {'type' if typed else '0 AS type'} FROM adlist WHERE enabled = 1")
    adlist_groups = _memberships(db, "adlist_by_group", "adlist_id")
    domain_groups = _memberships(db, "domainlist_by_group", "domainlist_id")
    items: dict[int, dict[str, list[str]]] = {}  # group id -> bucket -> lines or urls
    groups = {row["id"]: row["name"] for row in db.execute('SELECT id, name FROM "group" WHERE enabled = 1')}

    def bucket(member_of: set[int], name: str) -> Iterable[list[str]]:
        for g in member_of & set(groups):  # an item of a disabled group applies to nobody
            yield items.setdefault(g, {}).setdefault(name, [])

    for row in adlists:
        for target in bucket(adlist_groups.get(row["id"], {DEFAULT_GROUP}), "allow_urls" if row["type"] else "urls"):
            target.append(row["address"])
    kinds = {0: "allow-exact", 1: "deny-exact", 2: "allow-regex", 3: "deny-regex"}
    for row in db.execute("SELECT id, type, domain FROM domainlist WHERE enabled = 1"):
        for target in bucket(domain_groups.get(row["id"], {DEFAULT_GROUP}), kinds[row["type"]]):
            target.append(row["domain"])
    _pihole_top_level(items.get(DEFAULT_GROUP, {}), draft)
    _pihole_groups(db, items, groups, draft)


def _memberships(db: sqlite3.Connection, table: str, column: str) -> dict[int, set[int]]:
    out: dict[int, set[int]] = {}
    for row in db.execute(f"SELECT {column} AS item, group_id FROM {table}"):
        out.setdefault(row["item"], set()).add(row["group_id"])
    return out


def _pihole_top_level(
    found: dict[str, list[str]], draft: PolicyDraft, into: dict[str, Any] | None = None, prefix: str = ""
) -> None:
    for url in found.get("urls", []):
        entry = {"url": url, "format": "exact"}
        (draft.deny_files if into is None else into.setdefault("lists", {}).setdefault("deny_files", [])).append(entry)
    for url in found.get("allow_urls", []):
        entry = {"url": url, "format": "exact"}
        (draft.allow_files if into is None else into.setdefault("lists", {}).setdefault("allow_files", [])).append(
            entry
        )
    for bucket, fmt in (
        ("deny-exact", "exact"),
        ("deny-regex", "regex"),
        ("allow-exact", "exact"),
        ("allow-regex", "regex"),
    ):
        kind = bucket.split("-")[0]
        draft.list_file(f"{prefix}pihole-{bucket}.txt", found.get(bucket, []), fmt, kind, into)


def _pihole_groups(
    db: sqlite3.Connection, items: dict[int, dict[str, list[str]]], names: dict[int, str], draft: PolicyDraft
) -> None:
    """A Pi-hole client gets the items of all its groups; here each distinct set of groups is one group."""
    client_groups = _memberships(db, "client_by_group", "client_id")
    by_set: dict[tuple[int, ...], list[str]] = {}
    for row in db.execute("SELECT id, ip FROM client"):
        groups = tuple(sorted(g for g in client_groups.get(row["id"], {DEFAULT_GROUP}) if g in names))
        if groups == (DEFAULT_GROUP,) or not groups:
            continue
        by_set.setdefault(groups, []).append(row["ip"])
    for groups, ids in by_set.items():
        label = "+".join(names[g] for g in groups)
        clients = _client_networks(ids, f"Pi-hole group {label}", draft.notes)
        if not clients:
            continue
        group: Group = {"name": label, "clients": clients}
        merged: dict[str, list[str]] = {}
        for g in groups:
            for key, values in items.get(g, {}).items():
                merged.setdefault(key, []).extend(v for v in values if v not in merged.get(key, []))
        _pihole_top_level(merged, draft, group, _safe_name(label) + "-")
        draft.groups.append(group)


def _hosts_lines_as_records(text: str) -> list[str]:
    out = []
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split()
        if len(fields) < 2:
            continue
        try:
            address = ipaddress.ip_address(fields[0])
        except ValueError:
            continue
        out += [f"{name} {'A' if address.version == 4 else 'AAAA'} {address}" for name in fields[1:]]
    return out


def _pihole_toml(data: dict[str, Any], draft: PolicyDraft) -> None:
    dns = data.get("dns", {})
    for upstream in dns.get("upstreams", []):
        _add_upstream(str(upstream).replace("#", ":"), draft, "Pi-hole upstream")
    draft.records += _hosts_lines_as_records("\n".join(dns.get("hosts", [])))
    for cname in dns.get("cnameRecords", []):
        parts = [p.strip() for p in str(cname).split(",")]
        if len(parts) >= 2:
            draft.records += [f"{alias} CNAME {parts[-1]}" for alias in parts[:-1]]
    for server in dns.get("revServers", []):  # "true,192.168.0.0/16,192.168.0.1#53,lan"
        parts = str(server).split(",")
        if len(parts) >= 3 and parts[0].strip() == "true":
            _reverse_server(parts[1], parts[2], parts[3] if len(parts) > 3 else "", draft)


def _pihole_setup_vars(text: str, draft: PolicyDraft) -> None:
    values = dict(line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("#"))
    for key in sorted(k for k in values if k.startswith("PIHOLE_DNS_")):
        _add_upstream(values[key].strip().replace("#", ":"), draft, "Pi-hole upstream")
    if values.get("REV_SERVER", "").strip() == "true":
        cidr, target = values.get("REV_SERVER_CIDR", ""), values.get("REV_SERVER_TARGET", "")
        _reverse_server(cidr, target, values.get("REV_SERVER_DOMAIN", ""), draft)


def _reverse_server(cidr: str, target: str, domain: str, draft: PolicyDraft) -> None:
    target = target.strip().replace("#", ":")
    if cidr.strip():
        draft.forwarding[cidr.strip()] = target
    if domain.strip():
        draft.forwarding[domain.strip()] = target


def _add_upstream(text: str, draft: PolicyDraft, what: str) -> bool:
    """A plain DNS upstream (`ip` or `ip:port`) or an encrypted one (`tls://`, `https://`); what we
    cannot speak (DNS over QUIC, DNS stamps, names without a scheme) is noted."""
    candidate = text.strip()
    if candidate.lower().startswith(("tls://", "https://")):
        try:
            candidate = str(parse_upstream(candidate))
        except ValueError as err:
            draft.notes.append(f"{what} {candidate!r}: {err}")
            return False
    elif not _add_check(candidate):
        why = "DNS over QUIC and DNS stamps are not supported; give its tls:// or https:// address"
        plain = "only plain DNS to an IP address, tls:// and https:// are supported here"
        draft.notes.append(f"{what} {candidate!r}: {why if '://' in candidate else plain}")
        return False
    if candidate not in draft.upstreams:
        draft.upstreams.append(candidate)
    return True


def _add_bootstrap(entries: Iterable[Any], draft: PolicyDraft, what: str) -> None:
    """Plain resolvers (`ip`, `ip:port`, `udp://ip`) of a bootstrap setting; others are noted."""
    for entry in entries:
        text = str(entry).strip().removeprefix("udp://").removeprefix("tcp+udp:").removeprefix("udp:")
        if _add_check(text):
            draft.bootstrap.append(text)
        else:
            draft.notes.append(f"{what} {str(entry)!r}: a bootstrap resolver must be plain DNS to an IP address")
    draft.bootstrap_from = what if draft.bootstrap else draft.bootstrap_from


# AdGuard Home -----------------------------------------------------------------------------------


def import_adguardhome(config: Path) -> PolicyDraft:
    """From AdGuardHome.yaml: filters, whitelist filters, user rules, persistent clients, upstreams
    (`[/domain/]ip` is conditional forwarding) and DNS rewrites."""
    data = yaml.safe_load(config.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ConfigError("not an AdGuard Home configuration (a YAML mapping)", file=str(config))
    draft = PolicyDraft(f"AdGuard Home ({config.name})")
    dns, filtering = data.get("dns") or {}, data.get("filtering") or {}
    for line in dns.get("upstream_dns") or []:
        _adguard_upstream(str(line), draft)
    draft.bootstrap_from = "AdGuard Home's default bootstrap"
    _add_bootstrap(dns.get("bootstrap_dns") or [], draft, "AdGuard Home bootstrap_dns")
    for item in data.get("filters") or []:
        if item.get("enabled", True):
            draft.deny_files.append({"url": str(item["url"]), "format": "adblock"})
    for item in data.get("whitelist_filters") or []:
        if item.get("enabled", True):
            draft.allow_files.append({"url": str(item["url"]), "format": "adblock"})
    clients = (data.get("clients") or {}).get("persistent") or []
    names = {str(c.get("name")): [str(i) for i in c.get("ids") or []] for c in clients}
    rules = [_adguard_client_names(str(r), names, draft) for r in data.get("user_rules") or [] if str(r).strip()]
    draft.list_file("adguard-user-rules.txt", [r for r in rules if r], "adblock", "deny")
    for rewrite in filtering.get("rewrites") or dns.get("rewrites") or []:
        _adguard_rewrite(rewrite, draft)
    for client in clients:
        _adguard_client(client, draft)
    if dns.get("blocked_services") or data.get("blocked_services"):
        draft.notes.append("blocked services: add their domains to lists.deny")
    return draft


def _adguard_upstream(line: str, draft: PolicyDraft) -> None:
    line = line.strip()
    if not line or line.startswith("#"):
        return
    match = re.match(r"^\[/([^\]]*)/\](.+)$", line)
    if match is None:
        _add_upstream(line.removeprefix("udp://"), draft, "AdGuard Home upstream")
        return
    target = match.group(2).strip().removeprefix("udp://")
    for domain in filter(None, match.group(1).split("/")):
        if _add_check(target):
            draft.forwarding[domain.strip(".")] = target
        else:
            draft.notes.append(f"AdGuard Home upstream for {domain}: {target!r} is not plain DNS to an IP address")


def _add_check(target: str) -> bool:
    host = target.rsplit(":", 1)[0] if target.count(":") == 1 else target
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def _adguard_client_names(rule: str, clients: dict[str, list[str]], draft: PolicyDraft) -> str:
    """`$client='kid tablet'` names a persistent client: rewritten to its addresses, which is what we match."""
    match = re.search(r"client=([^,$]+)", rule)
    if match is None:
        return rule
    out = []
    for item in match.group(1).split("|"):
        name = item.strip().strip("'\"")
        try:
            out.append(str(ipaddress.ip_network(name, strict=False)))
        except ValueError:
            ips = _client_networks(clients.get(name, []), f"client {name!r}", [])
            if not ips:
                draft.notes.append(f"user rule {rule!r}: client {name!r} has no IP address here; rule dropped")
                return ""
            out += ips
    return rule[: match.start(1)] + "|".join(out) + rule[match.end(1) :]


def _adguard_rewrite(rewrite: dict[str, Any], draft: PolicyDraft) -> None:
    domain, answer = str(rewrite.get("domain", "")), str(rewrite.get("answer", ""))
    if "*" in domain:
        draft.notes.append(f"rewrite {domain} -> {answer}: wildcard rewrites are not supported")
        return
    try:
        address = ipaddress.ip_address(answer)
    except ValueError:
        draft.records.append(f"{domain} CNAME {answer}")
        return
    draft.records.append(f"{domain} {'A' if address.version == 4 else 'AAAA'} {address}")


def _adguard_client(client: dict[str, Any], draft: PolicyDraft) -> None:
    name = str(client.get("name", "client"))
    ids = _client_networks([str(i) for i in client.get("ids") or []], f"AdGuard Home client {name}", draft.notes)
    if not ids:
        return
    if client.get("filtering_enabled") is False:
        draft.groups.append({"name": name, "clients": ids, "mode": "monitor"})
    if client.get("upstreams"):
        draft.notes.append(f"client {name}: per-client upstreams are not supported")


# Blocky -----------------------------------------------------------------------------------------


def import_blocky(config: Path) -> PolicyDraft:
    """From Blocky's config.yml: upstreams, blocking deny/allow lists (v0.24 `denylists` or the older
    `blackLists`), client groups, customDNS mappings and conditional mappings."""
    data = yaml.safe_load(config.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ConfigError("not a Blocky configuration (a YAML mapping)", file=str(config))
    draft = PolicyDraft(f"Blocky ({config.name})")
    upstreams = data.get("upstreams", {}).get("groups", {}) or {}
    for line in upstreams.get("default", []) or []:
        _add_upstream(_blocky_upstream(str(line)), draft, "Blocky upstream")
    draft.bootstrap_from = "Blocky's bootstrapDns names none: AdGuard Home's default"
    _blocky_bootstrap(data.get("bootstrapDns"), draft)
    blocking = data.get("blocking") or {}
    deny = blocking.get("denylists") or blocking.get("blackLists") or {}
    allow = blocking.get("allowlists") or blocking.get("whiteLists") or {}
    by_client = blocking.get("clientGroupsBlock") or {"default": list(deny)}
    for client, list_groups in by_client.items():
        target: Group | None = None
        if client != "default":
            ids = _client_networks([client], f"Blocky clientGroupsBlock {client}", draft.notes)
            if not ids:
                continue
            target = {"name": _safe_name(client), "clients": ids}
            draft.groups.append(target)
        for list_group in list_groups:
            for kind, source in (("deny", deny), ("allow", allow)):
                for n, entry in enumerate(source.get(list_group, []) or []):
                    _blocky_source(str(entry), f"{_safe_name(client)}-{list_group}-{kind}-{n}.txt", kind, draft, target)
    custom = (data.get("customDNS") or {}).get("mapping") or {}
    for name, answers in custom.items():
        for answer in str(answers).split(","):
            address = ipaddress.ip_address(answer.strip())
            draft.records.append(f"{name} {'A' if address.version == 4 else 'AAAA'} {address}")
    for zone, target in ((data.get("conditional") or {}).get("mapping") or {}).items():
        first = str(target).split(",")[0].strip()
        if _add_check(first):
            draft.forwarding[str(zone)] = first
        else:
            draft.notes.append(f"conditional {zone}: {first!r} is not plain DNS to an IP address")
    return draft


def _blocky_upstream(line: str) -> str:
    """Blocky's `[net:]host[:port][/path][#commonName]` in our syntax: `tcp-tls:1.1.1.1:853#one.one`
    is `tls://one.one@1.1.1.1:853` (the common name is what the certificate must carry)."""
    line = line.strip()
    for prefix in ("udp:", "tcp+udp:"):
        if line.startswith(prefix):
            return line.removeprefix(prefix)
    if not line.startswith("tcp-tls:"):
        return line
    address, _, name = line.removeprefix("tcp-tls:").partition("#")
    return f"tls://{name}@{address}" if name else f"tls://{address}"


def _blocky_bootstrap(value: Any, draft: PolicyDraft) -> None:
    """`bootstrapDns`: one entry, a list, or `{upstream: ..., ips: [...]}` mappings; the plain ones
    are ours to use (an encrypted bootstrap is noted)."""
    entries = value if isinstance(value, list) else [value] if value else []
    plain = [e.get("upstream", "") if isinstance(e, dict) else e for e in entries]
    _add_bootstrap(plain, draft, "Blocky bootstrapDns")


def _blocky_source(entry: str, file_name: str, kind: str, draft: PolicyDraft, into: Group | None) -> None:
    """A Blocky list entry: a URL, a local file, or an inline block of names (a multi-line string)."""
    if entry.startswith(("http://", "https://")):
        draft.add_source(kind, {"url": entry, "format": "wildcard"}, into)
    elif "\n" in entry:
        draft.list_file(file_name, [line for line in entry.splitlines() if line.strip()], "wildcard", kind, into)
    else:
        draft.add_source(kind, {"path": entry, "format": "wildcard"}, into)
