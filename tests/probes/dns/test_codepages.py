"""nslookup recordings saved in a Windows code page other than UTF-8/UTF-16: the code page is
detected from the text (cmd.exe writes a redirect in the OEM code page of the system's locale: 936 on
zh-CN, 850 in Western Europe; Windows PowerShell's Out-File -Encoding Default the ANSI one, 1252...)."""

from __future__ import annotations

from pathlib import Path

import pytest

from diagnose.probes.dns.recorded.model import decode
from tests.probes.dns.test_transcripts import DATA, resolutions, summary

ZH_CN = {
    ("mail.contoso.com", "10.1.4.1:53"): ("ok", ("203.0.113.10",), ()),
    ("mail.contoso.com", "10.1.4.9:53"): ("timeout", (), ()),
    ("webmail.contoso.com", "10.1.4.5:53"): ("ok", ("10.1.5.11", "fd00:10:1:5::11"), ("cas01.contoso.local",)),
    ("autodiscover.contoso.com", "10.1.4.2:53"): ("servfail", (), ()),
}


def test_zh_cn_recording_in_gbk_reads_as_in_utf16(tmp_path: Path) -> None:
    """The zh-CN recording (服务器, 名称, 非权威应答, 找不到, 请求 ... 超时) as cmd.exe writes it on zh-CN: cp936."""
    text = (DATA / "windows-nslookup-zh-cn.txt").read_bytes().decode("utf-16")
    gbk = tmp_path / "dns.txt"
    gbk.write_bytes(text.encode("cp936"))
    assert "服务器".encode("cp936") in gbk.read_bytes()
    got = summary(resolutions(gbk, "mail.contoso.com", "webmail.contoso.com", "autodiscover.contoso.com"))
    assert got == ZH_CN


def test_french_recording_in_the_ansi_code_page(tmp_path: Path) -> None:
    """Out-File -Encoding Default on a French Windows: cp1252, where é is 0xE9 (cp850 reads it as Ú)."""
    french = tmp_path / "dns.txt"
    french.write_bytes(
        "Serveur :   dc2.contoso.local\r\nAddress:  10.1.4.5\r\n\r\n"
        "Réponse ne faisant pas autorité :\r\nNom :    mail.contoso.com\r\nAddress:  10.1.5.11\r\n\r\n".encode("cp1252")
    )
    got = summary(resolutions(french, "mail.contoso.com"))
    assert got == {("mail.contoso.com", "10.1.4.5:53"): ("ok", ("10.1.5.11",), ())}


@pytest.mark.parametrize(
    "text,page",
    [
        ("服务器:  UnKnown\r\nAddress:  10.1.4.1\r\n\r\n名称:    mail.contoso.com\r\n", "cp936"),
        ("Name:    邮件.contoso.com\r\nAddress:  10.1.5.11\r\n", "cp936"),  # no label to go by
        ("伺服器:  UnKnown\r\n名稱:    mail.contoso.com\r\n", "cp950"),
        ("サーバー:  UnKnown\r\n名前:    mail.contoso.com\r\n", "cp932"),
        ("Сервер:  UnKnown\r\nИмя:    mail.contoso.com\r\n", "cp866"),
        ("Сервер:  UnKnown\r\nИмя:    mail.contoso.com\r\n", "cp1251"),
        ("Serveur par défaut :   UnKnown\r\n", "cp850"),
        ("Server:  dc01\r\nName:  café.contoso.com\r\n", "cp850"),
        ("Servidor:  UnKnown\r\nNombre:  señal.contoso.com\r\n", "cp850"),
        ("Server:  UnKnown\r\nNázev:    mail.contoso.com\r\n", "cp852"),
    ],
)
def test_the_code_page_is_detected(text: str, page: str) -> None:
    assert decode(text.encode(page), "dns.txt") == text


def test_a_recording_with_an_endless_line_is_judged_on_a_sample() -> None:
    """Found by the fuzz suite: a GBK recording with a 3 MB line held fifteen full readings (200 MB, 6 s).
    The code page is judged on the first lines, and only the winner reads the whole file."""
    import tracemalloc

    gbk = (DATA / "windows-nslookup-zh-cn.txt").read_bytes()
    if gbk.startswith(b"\xff\xfe"):
        gbk = gbk.decode("utf-16").encode("gbk")
    data = gbk + b"A" * (3 << 20) + b"\r\n"
    tracemalloc.start()
    try:
        text = decode(data, "big.txt")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert text.startswith(gbk.decode("gbk")) and len(text) == len(gbk.decode("gbk")) + (3 << 20) + 2
    assert peak < 40 << 20, f"{peak >> 20} MB"  # the text itself is 3 MB; fifteen readings took 69 MB
