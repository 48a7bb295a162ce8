from mlguard.findings import Finding, Location, ScanResult, Severity, fingerprint


def test_severity_order_and_parsing():
    assert Severity.CRITICAL > Severity.HIGH > Severity.MEDIUM > Severity.LOW > Severity.INFO
    assert max([Severity.LOW, Severity.CRITICAL, Severity.MEDIUM]) is Severity.CRITICAL
    assert Severity.parse(" High ") is Severity.HIGH
    try:
        Severity.parse("severe")
    except ValueError as exc:
        assert "critical" in str(exc)
    else:
        raise AssertionError("expected ValueError")


def test_location_describe():
    assert Location(offset=0x2a1, member="archive/data.pkl").describe() == "archive/data.pkl@0x2a1"
    assert Location(offset=16).describe() == "offset 0x10"
    assert Location(line=3, column=7).describe() == "line 3:7"
    assert Location().describe() == ""


def test_result_summary_and_fail_threshold():
    def f(sev):
        return Finding("r", sev, "s", "m", "p")
    result = ScanResult(root=".", findings=(f(Severity.MEDIUM), f(Severity.MEDIUM), f(Severity.INFO)))
    assert result.summary == {"critical": 0, "high": 0, "medium": 2, "low": 0, "info": 1}
    assert result.fails(Severity.MEDIUM) and not result.fails(Severity.HIGH)
    assert result.max_severity is Severity.MEDIUM and not result.ok
    assert ScanResult(root=".").max_severity is None


def test_fingerprint_depends_on_every_part():
    base = fingerprint("r", "a.pkl", "m", "os.system")
    assert base == fingerprint("r", "a.pkl", "m", "os.system")
    others = {fingerprint("x", "a.pkl", "m", "os.system"), fingerprint("r", "b.pkl", "m", "os.system"),
              fingerprint("r", "a.pkl", None, "os.system"), fingerprint("r", "a.pkl", "m", "os.popen")}
    assert base not in others and len(others) == 4
