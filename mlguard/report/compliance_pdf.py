"""Compliance evidence as a PDF (reportlab): verdict, scan metadata, the caveat, per-control evidence with
file/line references, a findings appendix, and the SHA-256 of the evidence it was rendered from."""
from __future__ import annotations

import io
from xml.sax.saxutils import escape

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.platypus import KeepTogether, PageBreak, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

_STATUS_COLOUR = {"findings": colors.HexColor("#b00020"), "observations": colors.HexColor("#b26a00"),
                  "no findings": colors.HexColor("#1b5e20"), "not assessed": colors.grey}
_MAX_CITED = 25
"""Findings cited under one control (all of them are in the appendix)."""


def render_pdf(data: dict, sha256: str) -> bytes:
    styles = getSampleStyleSheet()
    body, small = styles["BodyText"], styles["BodyText"].clone("small", fontSize=8, leading=10)
    h1, h2 = styles["Heading1"], styles["Heading2"]

    def p(text: str, style=body) -> Paragraph:
        return Paragraph(escape(str(text)), style)

    verdict = data["verdict"].upper()
    scan = data["scan"]
    story = [
        p(f"ML Guard compliance evidence — {data['title']}", h1),
        Paragraph(f"<b>Verdict: {verdict}</b> (no finding at or above {escape(scan['fail_on'])})"
                  if verdict == "PASS" else
                  f"<b>Verdict: {verdict}</b> (findings at or above {escape(scan['fail_on'])})", body),
        Spacer(1, 4 * mm),
        _table([["Scanned", scan["root"]], ["Files scanned", str(scan["files_scanned"])],
                ["Findings", ", ".join(f"{k} {v}" for k, v in scan["summary"].items())],
                ["Generated", data["generated"]],
                ["Tool", f"{data['tool']['name']} {data['tool']['version']} (engine: {data['tool']['engine']})"],
                ["Evidence SHA-256", sha256]], small, widths=(35 * mm, 135 * mm)),
        Spacer(1, 4 * mm),
        p("Caveat", h2), p(data["caveat"]),
        p("Controls", h2),
    ]
    for control in data["controls"]:
        colour = _STATUS_COLOUR[control["status"]]
        block = [Paragraph(f"<b>{escape(control['id'])} — {escape(control['title'])}</b>: "
                           f"<font color='{colour.hexval()}'>{escape(control['status'])}</font>", body),
                 p(f"Supports: {control['claim']}", small), p(f"Cannot show: {control['limits']}", small)]
        if control["scanners"]:
            block.append(p(f"Checked by: {', '.join(control['scanners'])} "
                           f"({len(control['rules'])} rules)", small))
        cited = control["findings"][:_MAX_CITED]
        if cited:
            rows = [["Severity", "File", "Where", "Rule / message"]] + [
                [f["severity"], f["path"], f["where"], f"{f['rule_id']}: {f['message']}"] for f in cited]
            block.append(_table(rows, small, widths=(18 * mm, 45 * mm, 32 * mm, 75 * mm), header=True))
            if len(control["findings"]) > _MAX_CITED:
                block.append(p(f"… and {len(control['findings']) - _MAX_CITED} more (see the appendix).", small))
        story += [KeepTogether(block[:3]), *block[3:], Spacer(1, 3 * mm)]
    story += [PageBreak(), p("Appendix: all findings", h2)]
    if data["findings"]:
        rows = [["Severity", "File", "Where", "Rule / message / fingerprint"]] + [
            [f["severity"], f["path"], f["where"], f"{f['rule_id']}: {f['message']} [{f['fingerprint']}]"]
            for f in data["findings"]]
        story.append(_table(rows, small, widths=(18 * mm, 45 * mm, 32 * mm, 75 * mm), header=True))
    else:
        story.append(p("No findings."))
    story += [Spacer(1, 4 * mm), p(f"SHA-256 of the canonical JSON evidence this report was rendered from: "
                                   f"{sha256}", small)]
    out = io.BytesIO()
    doc = SimpleDocTemplate(out, pagesize=A4, title=f"ML Guard — {data['title']}", author="ml-guard",
                            leftMargin=20 * mm, rightMargin=20 * mm, topMargin=18 * mm, bottomMargin=18 * mm)
    doc.build(story, onFirstPage=_footer(sha256), onLaterPages=_footer(sha256))
    return out.getvalue()


def _table(rows, style, widths, header: bool = False) -> Table:
    cells = [[Paragraph(escape(str(c)), style) for c in row] for row in rows]
    table = Table(cells, colWidths=widths, repeatRows=1 if header else 0)
    commands = [("VALIGN", (0, 0), (-1, -1), "TOP"), ("GRID", (0, 0), (-1, -1), 0.25, colors.lightgrey)]
    if header:
        commands.append(("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#eeeeee")))
    table.setStyle(TableStyle(commands))
    return table


def _footer(sha256: str):
    def draw(canvas, doc) -> None:
        canvas.saveState()
        canvas.setFont("Helvetica", 7)
        canvas.drawString(20 * mm, 10 * mm, f"ML Guard compliance evidence · not a conformity declaration · "
                                            f"evidence SHA-256 {sha256[:16]}… · page {doc.page}")
        canvas.restoreState()
    return draw
