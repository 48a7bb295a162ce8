"""CVSS base scores against the official examples (FIRST v3.1 examples document, CVSS v2 guide, NVD)."""
import itertools

import pytest

from mlguard.advisories.cvss import CVSSError, _roundup_30, _roundup_31, base_score, score, severity

V31 = [  # FIRST "CVSS v3.1: Examples" and NVD
    ("AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", 9.8),  # CVE-2014-6271 Shellshock
    ("AV:N/AC:L/PR:N/UI:R/S:C/C:L/I:L/A:N", 6.1),  # CVE-2013-1937 phpMyAdmin XSS
    ("AV:N/AC:L/PR:L/UI:N/S:C/C:L/I:L/A:N", 6.4),  # CVE-2013-0375 MySQL
    ("AV:N/AC:H/PR:N/UI:R/S:U/C:L/I:N/A:N", 3.1),  # CVE-2014-3566 POODLE
    ("AV:N/AC:L/PR:L/UI:N/S:C/C:H/I:H/A:H", 9.9),  # CVE-2012-1516 VMware
    ("AV:L/AC:L/PR:H/UI:N/S:U/C:L/I:L/A:L", 4.2),  # CVE-2009-0783 Tomcat
    ("AV:N/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H", 8.8),  # CVE-2012-0384 Cisco IOS
    ("AV:L/AC:L/PR:N/UI:R/S:U/C:H/I:H/A:H", 7.8),  # CVE-2015-1098 iWork
    ("AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:N", 7.5),  # CVE-2014-0160 Heartbleed
    ("AV:N/AC:H/PR:N/UI:N/S:C/C:N/I:H/A:N", 6.8),  # CVE-2008-1447 DNS
    ("AV:P/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", 6.8),  # CVE-2014-2005 Sophos
    ("AV:N/AC:L/PR:N/UI:N/S:C/C:L/I:N/A:N", 5.8),  # CVE-2010-0467 Joomla
    ("AV:A/AC:L/PR:N/UI:N/S:C/C:H/I:N/A:H", 9.3),  # CVE-2013-6014 Juniper
    ("AV:L/AC:L/PR:H/UI:N/S:C/C:H/I:H/A:H", 8.2),  # CVE-2016-5729 Lenovo
    ("AV:P/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:N", 4.6),
    ("AV:N/AC:L/PR:L/UI:R/S:C/C:L/I:L/A:N", 5.4),
    ("AV:A/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", 8.8),  # CVE-2011-1265 Bluetooth
    ("AV:N/AC:L/PR:N/UI:R/S:U/C:H/I:H/A:H", 8.8),  # CVE-2015-0970 CSRF
    ("AV:N/AC:H/PR:N/UI:N/S:U/C:H/I:H/A:N", 7.4),  # CVE-2014-0224 OpenSSL CCS
    ("AV:N/AC:L/PR:N/UI:R/S:C/C:H/I:H/A:H", 9.6),  # CVE-2012-5376 Chrome
    ("AV:N/AC:H/PR:N/UI:R/S:U/C:H/I:H/A:N", 6.8),  # CVE-2016-0128 Badlock
    ("AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H", 10.0),  # CVE-2021-44228 Log4Shell (capped at 10)
    ("AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:N", 0.0),  # no impact
    ("AV:N/AC:L/PR:N/UI:N/S:C/C:N/I:N/A:N", 0.0),  # no impact, scope changed
]

V2 = [  # CVSS v2 guide examples and NVD
    ("AV:N/AC:L/Au:N/C:P/I:P/A:P", 7.5),
    ("AV:N/AC:M/Au:N/C:N/I:P/A:N", 4.3),
    ("AV:N/AC:L/Au:N/C:N/I:N/A:C", 7.8),  # CVE-2002-0392 Apache chunked encoding
    ("AV:N/AC:L/Au:N/C:C/I:C/A:C", 10.0),  # CVE-2003-0818 Windows ASN.1
    ("AV:L/AC:H/Au:N/C:C/I:C/A:C", 6.2),  # CVE-2003-0062 NOD32
    ("AV:N/AC:M/Au:N/C:P/I:P/A:P", 6.8),
    ("AV:N/AC:L/Au:S/C:P/I:P/A:P", 6.5),
    ("AV:N/AC:M/Au:N/C:C/I:C/A:C", 9.3),
    ("AV:L/AC:L/Au:N/C:P/I:N/A:N", 2.1),
    ("AV:N/AC:L/Au:N/C:P/I:N/A:N", 5.0),
    ("AV:N/AC:L/Au:N/C:N/I:N/A:N", 0.0),
]


@pytest.mark.parametrize("body,expected", V31)
def test_v31_examples(body, expected):
    assert base_score("CVSS:3.1/" + body) == expected
    assert score("CVSS_V3", "CVSS:3.1/" + body) == expected


def test_v30_examples():
    assert base_score("CVSS:3.0/AV:N/AC:L/PR:L/UI:R/S:C/C:H/I:H/A:H") == 9.0
    assert base_score("CVSS:3.0/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H") == 9.8
    assert score("CVSS_V3", "CVSS:3.0/AV:N/AC:L/PR:N/UI:R/S:C/C:L/I:L/A:N") == 6.1


def test_v30_and_v31_roundup_differ():
    # 3.0: ceil(x * 10) / 10, so a float artefact just above 4.0 rounds to 4.1;
    # 3.1 (Appendix A) works in integer space and gives 4.0.
    assert _roundup_30(4.000000000000001) == 4.1
    assert _roundup_31(4.000000000000001) == 4.0
    for x, expected in [(4.0, 4.0), (4.02, 4.1), (9.96, 10.0), (0.0, 0.0)]:
        assert _roundup_30(x) == _roundup_31(x) == expected


def test_v30_and_v31_agree_on_every_base_vector():
    # Checked exhaustively: the Roundup change never alters a *base* score, so no
    # vector-level example of the difference exists (it shows in temporal/environmental).
    for values in itertools.product("NALP", "LH", "NLH", "NR", "UC", "HLN", "HLN", "HLN"):
        body = "AV:{}/AC:{}/PR:{}/UI:{}/S:{}/C:{}/I:{}/A:{}".format(*values)
        assert base_score("CVSS:3.0/" + body) == base_score("CVSS:3.1/" + body)


def test_v3_metric_order_and_optional_metrics():
    assert base_score("CVSS:3.1/A:H/I:H/C:H/S:U/UI:N/PR:N/AC:L/AV:N") == 9.8
    assert base_score("CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:C/C:L/I:L/A:N/E:P/RL:W/RC:C") == 6.1
    assert base_score("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H/MAV:L/CR:H/MS:X") == 9.8


@pytest.mark.parametrize("vector,expected", V2)
def test_v2_examples(vector, expected):
    assert base_score(vector) == expected
    assert base_score("(" + vector + ")") == expected
    assert score("CVSS_V2", vector) == expected


def test_v2_optional_metrics():
    assert base_score("AV:N/AC:L/Au:N/C:P/I:P/A:P/E:POC/RL:OF/RC:C/CDP:LM/TD:H/CR:M/IR:ND/AR:H") == 7.5


@pytest.mark.parametrize("value,label", [
    (0.0, "none"), (0.1, "low"), (3.9, "low"), (4.0, "medium"), (6.9, "medium"),
    (7.0, "high"), (8.9, "high"), (9.0, "critical"), (10.0, "critical"),
])
def test_severity(value, label):
    assert severity(value) == label


@pytest.mark.parametrize("value", [-0.1, 10.1, float("nan")])
def test_severity_out_of_range(value):
    with pytest.raises(ValueError):
        severity(value)


FULL = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"


@pytest.mark.parametrize("vector,problem", [
    ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H", "missing mandatory metric(s) A"),
    ("CVSS:3.1/AV:X/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", "unknown value 'X' for metric 'AV'"),
    ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H/AV:N", "duplicate metric 'AV'"),
    ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H/ZZ:N", "unknown metric 'ZZ'"),
    ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H/E:UP", "unknown value 'UP' for metric 'E'"),
    ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H/", "malformed component ''"),
    ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A", "malformed component 'A'"),
    ("CVSS:3.1/av:n/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", "unknown metric 'av'"),
    ("CVSS:3.2/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", "unknown CVSS version '3.2'"),
    ("CVSS:2.0/AV:N/AC:L/Au:N/C:P/I:P/A:P", "unknown CVSS version '2.0'"),
    ("CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N", "CVSS v4.0 scoring is not supported"),
    ("AV:N/AC:L/Au:N/C:P/I:P", "missing mandatory metric(s) A"),
    ("AV:N/AC:L/Au:N/C:P/I:P/A:P/E:X", "unknown value 'X' for metric 'E'"),
    ("AV:N/AC:L/Au:N/C:P/I:P/A:H", "unknown value 'H' for metric 'A'"),
    ("AV:N/AC:L/PR:N/C:P/I:P/A:P", "unknown metric 'PR'"),
    ("(AV:N/AC:L/Au:N/C:P/I:P/A:P", "unbalanced parentheses"),
    ("", "empty vector"),
    (FULL + "/E:X" * 60, "longer than 256 characters"),
])
def test_malformed_vectors(vector, problem):
    with pytest.raises(CVSSError) as info:
        base_score(vector)
    message = str(info.value)
    assert problem in message
    assert message.startswith("invalid CVSS vector ")
    assert info.value.problem in message
    assert score("CVSS_V3", vector) is None and score("CVSS_V2", vector) is None


def test_length_limit_is_256():
    at_limit = FULL + "/" + "X" * (255 - len(FULL))
    assert len(at_limit) == 256
    with pytest.raises(CVSSError, match="malformed component"):  # parsed, not rejected on length
        base_score(at_limit)
    with pytest.raises(CVSSError, match="longer than 256 characters"):
        base_score(at_limit + "X")


def test_non_string_raises_cvss_error():
    with pytest.raises(CVSSError, match="expected a string"):
        base_score(None)


@pytest.mark.parametrize("osv_type,vector", [
    ("CVSS_V4", "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N"),
    ("CVSS_V3", "AV:N/AC:L/Au:N/C:P/I:P/A:P"),  # type says v3, vector is v2
    ("CVSS_V2", FULL),  # type says v2, vector is v3
    ("CVSS_V5", FULL),
    ("cvss_v3", FULL),
    (None, FULL),
    ("CVSS_V3", None),
    ("CVSS_V3", 9.8),
    ("CVSS_V3", b"CVSS:3.1/AV:N"),
    ("CVSS_V3", "x" * 10_000),
    ("CVSS_V2", "(" * 300),
])
def test_score_returns_none_and_never_raises(osv_type, vector):
    assert score(osv_type, vector) is None
