"""Write a generated table into a doc between two HTML comment markers, leaving the rest of the doc as written."""

from __future__ import annotations

from pathlib import Path


def replace_between(doc: Path, start: str, end: str, text: str, template: str | None = None) -> None:
    """Put `text` between `start` and `end` in `doc`. A doc without the markers is refused (a table appended
    somewhere arbitrary would go unseen); `template` is the text of a doc that does not exist yet."""
    current = doc.read_text() if doc.is_file() else template
    if current is None or start not in current:
        raise SystemExit(f"{doc} has no {start} marker to write the table under; add {start} and {end} where it belongs")
    head, _, rest = current.partition(start)
    _, found, tail = rest.partition(end)
    if not found:
        raise SystemExit(f"{doc} has {start} but no {end} after it; add {end} where the table ends")
    doc.write_text(f"{head}{start}\n{text}\n{end}{tail}")
