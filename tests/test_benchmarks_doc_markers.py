"""benchmarks/doc_markers.py: a generated table replaces only the text between its markers."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from doc_markers import replace_between  # noqa: E402

START, END = "<!-- t:start -->", "<!-- t:end -->"


def test_replaces_only_between_markers(tmp_path):
    doc = tmp_path / "doc.md"
    doc.write_text(f"# Title\n\nbefore\n{START}\nold table\n{END}\nafter\n")
    replace_between(doc, START, END, "| new |")
    assert doc.read_text() == f"# Title\n\nbefore\n{START}\n| new |\n{END}\nafter\n"
    replace_between(doc, START, END, "| newer |")  # a second run replaces, never appends
    assert doc.read_text().count("| ne") == 1


def test_doc_without_markers_is_refused_and_left_alone(tmp_path):
    doc = tmp_path / "doc.md"
    doc.write_text("# Hand-written\n")
    with pytest.raises(SystemExit, match="no <!-- t:start --> marker"):
        replace_between(doc, START, END, "| x |")
    assert doc.read_text() == "# Hand-written\n"


def test_start_without_end_is_refused(tmp_path):
    doc = tmp_path / "doc.md"
    doc.write_text(f"{START}\nrest of the doc\n")
    with pytest.raises(SystemExit, match="no <!-- t:end -->"):
        replace_between(doc, START, END, "| x |")
    assert doc.read_text() == f"{START}\nrest of the doc\n"


def test_missing_doc_starts_from_the_template(tmp_path):
    doc = tmp_path / "new.md"
    replace_between(doc, START, END, "| x |", template=f"# New\n\n{START}\n{END}\n")
    assert doc.read_text() == f"# New\n\n{START}\n| x |\n{END}\n"


def test_existing_doc_without_markers_is_not_replaced_by_the_template(tmp_path):
    doc = tmp_path / "doc.md"
    doc.write_text("# Hand-written\n")
    with pytest.raises(SystemExit, match="no <!-- t:start --> marker"):
        replace_between(doc, START, END, "| x |", template=f"# New\n\n{START}\n{END}\n")
    assert doc.read_text() == "# Hand-written\n"
