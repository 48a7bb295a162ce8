"""Compliance evidence as one self-contained HTML page; the canonical JSON evidence is embedded in it."""
from __future__ import annotations

from html import escape

from .compliance import canonical


def render_html(data: dict, sha256: str) -> str:
    scan = data["scan"]
    controls = "\n".join(_control(c) for c in data["controls"])
    findings = "\n".join(
        f"<tr><td>{escape(f['severity'])}</td><td>{escape(f['path'])}</td><td>{escape(f['where'])}</td>"
        f"<td>{escape(f['rule_id'])}: {escape(f['message'])}</td></tr>" for f in data["findings"]) or \
        "<tr><td colspan=4>No findings.</td></tr>"
    evidence = canonical(data).decode("utf-8").replace("</", "<\\/")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>ML Guard — {escape(data['title'])}</title>
<style>body{{font-family:sans-serif;max-width:60em;margin:2em auto}}td,th{{border:1px solid #ccc;padding:.2em .4em;
vertical-align:top;text-align:left}}table{{border-collapse:collapse}}.findings{{color:#b00020}}
.observations{{color:#b26a00}}.no-findings{{color:#1b5e20}}.not-assessed{{color:#777}}</style></head><body>
<h1>ML Guard compliance evidence — {escape(data['title'])}</h1>
<p><strong>Verdict: {escape(data['verdict'].upper())}</strong> (fail on {escape(scan['fail_on'])})</p>
<table><tr><th>Scanned</th><td>{escape(scan['root'])}</td></tr>
<tr><th>Files scanned</th><td>{scan['files_scanned']}</td></tr>
<tr><th>Findings</th><td>{escape(', '.join(f'{k} {v}' for k, v in scan['summary'].items()))}</td></tr>
<tr><th>Generated</th><td>{escape(data['generated'])}</td></tr>
<tr><th>Tool</th><td>{escape(data['tool']['name'])} {escape(data['tool']['version'])}</td></tr>
<tr><th>Evidence SHA-256</th><td><code>{sha256}</code></td></tr></table>
<h2>Caveat</h2><p>{escape(data['caveat'])}</p>
<h2>Controls</h2>
{controls}
<h2>Appendix: all findings</h2>
<table><tr><th>Severity</th><th>File</th><th>Where</th><th>Rule / message</th></tr>
{findings}</table>
<script type="application/json" id="evidence">{evidence}</script>
</body></html>
"""


def _control(c: dict) -> str:
    rows = "".join(f"<li>{escape(f['severity'])} {escape(f['path'])} {escape(f['where'])} — "
                   f"{escape(f['rule_id'])}: {escape(f['message'])}</li>" for f in c["findings"])
    return (f"<h3>{escape(c['id'])} — {escape(c['title'])}: "
            f"<span class=\"{c['status'].replace(' ', '-')}\">{escape(c['status'])}</span></h3>"
            f"<p>Supports: {escape(c['claim'])}<br>Cannot show: {escape(c['limits'])}</p>"
            + (f"<ul>{rows}</ul>" if rows else ""))

