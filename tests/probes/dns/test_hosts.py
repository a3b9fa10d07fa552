"""HOSTS files in the Windows and POSIX formats, read as the TMG host reads them."""

from __future__ import annotations

import codecs
from pathlib import Path

import pytest

from diagnose.errors import InputError
from diagnose.probes.dns.hosts import read_hosts

WINDOWS_HOSTS = (
    "# Copyright (c) 1993-2009 Microsoft Corp.\r\n"
    "#\r\n"
    "# This is a sample HOSTS file used by Microsoft TCP/IP for Windows.\r\n"
    "#      102.54.94.97     rhino.acme.com          # source server\r\n"
    "#       38.25.63.10     x.acme.com              # x client host\r\n"
    "\r\n"
    "# localhost name resolution is handled within DNS itself.\r\n"
    "#\t127.0.0.1       localhost\r\n"
    "#\t::1             localhost\r\n"
    "127.0.0.10\tcas01.contoso.local   cas01\t# Exchange CAS, added for TMG publishing\r\n"
    "127.0.0.10       Mail.Contoso.COM.    # published name\r\n"
    "fe80::1%12       cas01-v6.contoso.local\r\n"
    "::1 v6only.contoso.local\r\n"
    "not-an-address   broken.contoso.com\r\n"
    "127.0.0.11\r\n"
    "127.0.0.12 mail.contoso.com\r\n"
)

POSIX_HOSTS = (
    "127.0.0.1\tlocalhost\n"
    "127.0.1.1\ttmg-test.contoso.local\ttmg-test\n"
    "\n"
    "# The following lines are desirable for IPv6 capable hosts\n"
    "::1     ip6-localhost ip6-loopback\n"
    "127.0.0.10 cas01.contoso.local cas01 webmail.contoso.com#no space before the comment\n"
)


@pytest.mark.parametrize("encoding", ["cp1252", "utf-8-sig", "utf-16"])
def test_windows_hosts_file(tmp_path: Path, encoding: str) -> None:
    path = tmp_path / "hosts"
    path.write_bytes(WINDOWS_HOSTS.encode(encoding))
    if encoding == "utf-16":
        assert path.read_bytes().startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE))
    hosts = read_hosts(path)
    assert hosts.addresses("cas01.contoso.local") == ["127.0.0.10"]
    assert hosts.addresses("CAS01") == ["127.0.0.10"]
    # names are case-insensitive, a trailing dot is ignored, and every line naming the host counts
    assert hosts.addresses("mail.contoso.com.") == ["127.0.0.10", "127.0.0.12"]
    assert [e.line for e in hosts.lookup("mail.contoso.com")] == [11, 16]
    assert hosts.addresses("cas01-v6.contoso.local") == ["fe80::1%12"]
    assert hosts.addresses("v6only.contoso.local") == ["::1"]
    # commented-out sample entries are not entries
    assert hosts.addresses("rhino.acme.com") == []
    assert hosts.addresses("localhost") == []
    # lines the resolver ignores are kept with their numbers and the reason
    assert [(i.line, i.why) for i in hosts.ignored] == [
        (14, "'not-an-address' is not an IP address"),
        (15, "an address without a name"),
    ]
    assert hosts.lookup("cas01")[0].text.startswith("127.0.0.10\tcas01.contoso.local")


def test_posix_hosts_file(tmp_path: Path) -> None:
    path = tmp_path / "hosts"
    path.write_text(POSIX_HOSTS, encoding="utf-8")
    hosts = read_hosts(path)
    assert hosts.addresses("tmg-test") == ["127.0.1.1"]
    assert hosts.addresses("ip6-loopback") == ["::1"]
    assert hosts.addresses("webmail.contoso.com") == ["127.0.0.10"]
    assert hosts.addresses("space") == []
    assert hosts.ignored == ()


def test_missing_and_binary_hosts_files_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(InputError) as missing:
        read_hosts(tmp_path / "nope")
    assert str(missing.value) == f"{tmp_path / 'nope'}: hosts file not found"
    binary = tmp_path / "hosts.bin"
    binary.write_bytes(b"127.0.0.1 a\n\x00\x01\x02")
    with pytest.raises(InputError) as bad:
        read_hosts(binary)
    assert str(bad.value) == f"{binary}@12: not a text file (NUL byte at offset 12)"
