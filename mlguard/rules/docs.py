"""Render ``docs/rules.md`` from the catalog: ``python -m mlguard.rules.docs --write``."""
from __future__ import annotations

import argparse
from pathlib import Path

from . import Catalog, catalog

DOC_PATH = Path(__file__).resolve().parents[2] / "docs" / "rules.md"


def render(cat: Catalog) -> str:
    """The Markdown page for every rule, grouped by scanner."""
    out = [
        "# Rules",
        "",
        "Generated from `mlguard/rules/catalog.yaml` by `python -m mlguard.rules.docs --write`; do not edit by hand.",
        "Rule ids are stable. Override a severity or silence a rule in `.ml-guard.yml`:",
        "",
        "```yaml",
        "rules:",
        "  pickle-unknown-global: {severity: low}",
        "  format-unrecognized: {disabled: true}",
        "```",
        "",
    ]
    for scanner in cat.scanners():
        rules = [r for r in cat if r.scanner == scanner]
        out += [f"## {scanner}", "", "| id | severity | title |", "| --- | --- | --- |"]
        out += [f"| [`{r.id}`](#{r.id}) | {r.severity.value} | {r.title} |" for r in rules]
        out.append("")
        for r in rules:
            out += [f"### {r.id}", "", f"**{r.title}** — default severity **{r.severity.value}**"
                    + (f", {r.cwe}" if r.cwe else "") + ".", "", r.description, "", f"*Remediation:* {r.remediation}", ""]
            if r.tags:
                out += ["Tags: " + ", ".join(f"`{t}`" for t in r.tags), ""]
            if r.aliases:
                out += ["Also accepted as: " + ", ".join(f"`{a}`" for a in r.aliases), ""]
    return "\n".join(out).rstrip() + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write", action="store_true", help=f"write {DOC_PATH} instead of printing")
    args = parser.parse_args()
    text = render(catalog())
    if args.write:
        DOC_PATH.write_text(text, encoding="utf-8")
    else:
        print(text, end="")


if __name__ == "__main__":
    main()
