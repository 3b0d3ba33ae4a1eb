"""What a Pi-hole, AdGuard Home or Blocky user has on disk, built by the tests with each tool's own
schema and file layout (written for these tests, after the tools' documented formats): a Pi-hole
gravity.db with its tables and triggers, custom.list, pihole.toml and setupVars.conf; an
AdGuardHome.yaml; a Blocky config.yml. The importer tests and the migration walk-through in
docs/migrate.md use the same builders."""

from __future__ import annotations

import sqlite3
from pathlib import Path

# Pi-hole's gravity.db (v5 layout; v6 adds adlist.type and abp_entries), with the triggers that put
# every new adlist, domain and client into the Default group (id 0).
GRAVITY_SCHEMA = """
CREATE TABLE "group" (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    enabled BOOLEAN NOT NULL DEFAULT 1,
    name TEXT UNIQUE NOT NULL,
    date_added INTEGER NOT NULL DEFAULT (cast(strftime('%s', 'now') as int)),
    date_modified INTEGER NOT NULL DEFAULT (cast(strftime('%s', 'now') as int)),
    description TEXT
);
INSERT INTO "group" (id, enabled, name, description) VALUES (0, 1, 'Default', 'The default group');
CREATE TABLE domainlist (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    type INTEGER NOT NULL DEFAULT 0,
    domain TEXT NOT NULL,
    enabled BOOLEAN NOT NULL DEFAULT 1,
    date_added INTEGER NOT NULL DEFAULT (cast(strftime('%s', 'now') as int)),
    date_modified INTEGER NOT NULL DEFAULT (cast(strftime('%s', 'now') as int)),
    comment TEXT,
    UNIQUE(domain, type)
);
CREATE TABLE adlist (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    address TEXT UNIQUE NOT NULL,
    enabled BOOLEAN NOT NULL DEFAULT 1,
    date_added INTEGER NOT NULL DEFAULT (cast(strftime('%s', 'now') as int)),
    date_modified INTEGER NOT NULL DEFAULT (cast(strftime('%s', 'now') as int)),
    comment TEXT,
    date_updated INTEGER,
    number INTEGER NOT NULL DEFAULT 0,
    invalid_domains INTEGER NOT NULL DEFAULT 0,
    status INTEGER NOT NULL DEFAULT 0
    {v6_columns}
);
CREATE TABLE adlist_by_group (
    adlist_id INTEGER NOT NULL REFERENCES adlist (id),
    group_id INTEGER NOT NULL REFERENCES "group" (id),
    PRIMARY KEY (adlist_id, group_id)
);
CREATE TABLE gravity (domain TEXT NOT NULL, adlist_id INTEGER NOT NULL REFERENCES adlist (id));
CREATE TABLE info (property TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO info VALUES ('version', '{version}');
CREATE TABLE domainlist_by_group (
    domainlist_id INTEGER NOT NULL REFERENCES domainlist (id),
    group_id INTEGER NOT NULL REFERENCES "group" (id),
    PRIMARY KEY (domainlist_id, group_id)
);
CREATE TABLE client (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ip TEXT NOT NULL UNIQUE,
    date_added INTEGER NOT NULL DEFAULT (cast(strftime('%s', 'now') as int)),
    date_modified INTEGER NOT NULL DEFAULT (cast(strftime('%s', 'now') as int)),
    comment TEXT
);
CREATE TABLE client_by_group (
    client_id INTEGER NOT NULL REFERENCES client (id),
    group_id INTEGER NOT NULL REFERENCES "group" (id),
    PRIMARY KEY (client_id, group_id)
);
CREATE TRIGGER tr_domainlist_add AFTER INSERT ON domainlist
    BEGIN INSERT INTO domainlist_by_group (domainlist_id, group_id) VALUES (NEW.id, 0); END;
CREATE TRIGGER tr_client_add AFTER INSERT ON client
    BEGIN INSERT INTO client_by_group (client_id, group_id) VALUES (NEW.id, 0); END;
CREATE TRIGGER tr_adlist_add AFTER INSERT ON adlist
    BEGIN INSERT INTO adlist_by_group (adlist_id, group_id) VALUES (NEW.id, 0); END;
"""


def pihole_gravity(path: Path, lists_url: str, v6: bool = False) -> Path:
    """A gravity.db as a family Pi-hole has it: two adlists, exact and regex entries both ways,
    a 'kids' group with its own list and domain, a kids' tablet in it, a MAC-address client."""
    db = sqlite3.connect(path)
    schema = GRAVITY_SCHEMA.replace(
        "{v6_columns}", ", type INTEGER NOT NULL DEFAULT 0, abp_entries INTEGER NOT NULL DEFAULT 0" if v6 else ""
    ).replace("{version}", "18" if v6 else "15")
    db.executescript(schema)
    add = db.execute
    add("INSERT INTO adlist (address, comment) VALUES (?, 'hosts')", (f"{lists_url}/hosts.txt",))
    add("INSERT INTO adlist (address, enabled) VALUES (?, 0)", (f"{lists_url}/disabled.txt",))
    kids_list = add("INSERT INTO adlist (address) VALUES (?)", (f"{lists_url}/domains.txt",)).lastrowid
    if v6:
        add("INSERT INTO adlist (address, type) VALUES (?, 1)", (f"{lists_url}/allow.txt",))
    add("INSERT INTO domainlist (type, domain) VALUES (1, 'ads.example.org')")
    add("INSERT INTO domainlist (type, domain) VALUES (0, 'metrics.example.net')")  # allow, exact
    add("INSERT INTO domainlist (type, domain) VALUES (3, '^track[0-9]*\\.')")
    add("INSERT INTO domainlist (type, domain, enabled) VALUES (1, 'off.example', 0)")
    kids = add("INSERT INTO \"group\" (name, description) VALUES ('kids', 'the children')").lastrowid
    add("INSERT INTO \"group\" (name, enabled) VALUES ('disabled-group', 0)")
    games = add("INSERT INTO domainlist (type, domain) VALUES (1, 'games.example')").lastrowid
    add("DELETE FROM domainlist_by_group WHERE domainlist_id = ?", (games,))
    add("INSERT INTO domainlist_by_group VALUES (?, ?)", (games, kids))
    add("DELETE FROM adlist_by_group WHERE adlist_id = ?", (kids_list,))
    add("INSERT INTO adlist_by_group VALUES (?, ?)", (kids_list, kids))
    tablet = add("INSERT INTO client (ip, comment) VALUES ('192.168.1.50', 'tablet')").lastrowid
    add("INSERT INTO client_by_group VALUES (?, ?)", (tablet, kids))
    phone = add("INSERT INTO client (ip) VALUES ('aa:bb:cc:dd:ee:ff')").lastrowid
    add("INSERT INTO client_by_group VALUES (?, ?)", (phone, kids))
    add("INSERT INTO client (ip) VALUES ('192.168.1.60')")  # Default group only: no group of its own
    db.commit()
    db.close()
    return path


PIHOLE_CUSTOM_LIST = "192.168.1.1 router.lan\n192.168.1.20 nas.lan\n"
PIHOLE_TOML = """
[dns]
  upstreams = ["127.0.0.1#{port}", "https://dns.example/dns-query"]
  hosts = ["192.168.1.30 printer.lan"]
  cnameRecords = ["files.lan,nas.lan"]
  revServers = ["true,192.168.1.0/24,127.0.0.1#{router},lan"]
"""
PIHOLE_SETUP_VARS = "PIHOLE_DNS_1=127.0.0.1#{port}\nREV_SERVER=true\nREV_SERVER_CIDR=192.168.1.0/24\n"
PIHOLE_SETUP_VARS += "REV_SERVER_TARGET=127.0.0.1#{router}\nREV_SERVER_DOMAIN=lan\n"

ADGUARDHOME_YAML = """
http:
  address: 0.0.0.0:3000
dns:
  bind_hosts: [0.0.0.0]
  port: 53
  upstream_dns:
    - 127.0.0.1:{port}
    - https://dns10.quad9.net/dns-query
    - tls://dns10.quad9.net
    - quic://dns.adguard-dns.com
    - "[/lan/]127.0.0.1:{router}"
    - "[/1.168.192.in-addr.arpa/]127.0.0.1:{router}"
  bootstrap_dns: [9.9.9.10]
filtering:
  rewrites:
    - domain: nas.lan
      answer: 192.168.1.20
    - domain: files.lan
      answer: nas.lan
    - domain: "*.dev.lan"
      answer: 192.168.1.99
filters:
  - enabled: true
    url: {lists_url}/adguard.txt
    name: test filter
    id: 1
  - enabled: false
    url: {lists_url}/disabled.txt
    name: off
    id: 2
whitelist_filters:
  - enabled: true
    url: {lists_url}/allow.txt
    name: allow
    id: 3
user_rules:
  - "||user-blocked.example^"
  - "@@||user-allowed.ads.example.com^"
  - "||kid-only.example^$client='kid tablet'"
  - "! a comment"
clients:
  persistent:
    - name: kid tablet
      ids: [192.168.1.50]
      filtering_enabled: true
    - name: work laptop
      ids: [192.168.1.70, "aa:bb:cc:dd:ee:01"]
      filtering_enabled: false
schema_version: 28
"""

BLOCKY_YAML = """
upstreams:
  groups:
    default:
      - 127.0.0.1:{port}
      - https://dns.example/dns-query
      - tcp-tls:1.1.1.1:853#cloudflare-dns.com
bootstrapDns:
  - upstream: tcp+udp:9.9.9.9
blocking:
  denylists:
    ads:
      - {lists_url}/blocky.txt
      - |
        inline-blocked.example
        *.inline-wild.example
    kids:
      - {lists_url}/domains.txt
  allowlists:
    ads:
      - |
        allowed.wild.example
  clientGroupsBlock:
    default: [ads]
    192.168.1.50/32: [ads, kids]
customDNS:
  mapping:
    nas.lan: 192.168.1.20
    printer.lan: 192.168.1.30,fd00::30
conditional:
  mapping:
    lan: 127.0.0.1:{router}
"""
