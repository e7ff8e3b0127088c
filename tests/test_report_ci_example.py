"""The example GitHub Actions workflow stays in step with the report command's flags."""

from pathlib import Path

import yaml

WORKFLOW = Path(__file__).resolve().parents[1] / "examples" / "ci" / "edgedistill.yml"


def test_workflow_builds_reports_gates_and_uploads():
    doc = yaml.safe_load(WORKFLOW.read_text())
    steps = doc["jobs"]["build-x86-cpu"]["steps"]
    uses = [s.get("uses", "") for s in steps]
    runs = "\n".join(s.get("run", "") for s in steps)
    assert "actions/checkout@v4" in uses
    setup = next(s for s in steps if s.get("uses", "").startswith("actions/setup-python"))
    assert setup["with"]["python-version"] == "3.11"
    assert "pip install ." in runs
    assert "edgedistill build --target x86-cpu --out runs/ci" in runs
    report = next(line for line in runs.splitlines() if line.strip().startswith("edgedistill report"))
    assert report.split()[2] == "runs/ci"  # the folder the build step wrote
    for flag in ("--max-latency-ms 20", "--min-cosine 0.98", "--max-size-mb 50"):
        assert flag in report
    assert "--gate-" not in runs
    assert report.rstrip().endswith('>> "$GITHUB_STEP_SUMMARY"')
    uploads = [s for s in steps if s.get("uses") == "actions/upload-artifact@v4"]
    assert {u["with"]["path"] for u in uploads} == {"runs/ci/", "runs/ci/report/"}
    assert all(u.get("if") == "always()" for u in uploads)  # kept even when a gate fails


def test_workflow_keeps_its_build_folder_apart_from_setuptools_build():
    """`pip install .` leaves build/lib and build/bdist.* in the checkout: an --out or upload path under
    build/ would carry the package's files into the artifact."""
    steps = yaml.safe_load(WORKFLOW.read_text())["jobs"]["build-x86-cpu"]["steps"]
    words = " ".join(s.get("run", "") for s in steps).split()
    outs = [words[i + 1] for i, w in enumerate(words) if w == "--out"]
    paths = outs + [s["with"]["path"] for s in steps if s.get("uses") == "actions/upload-artifact@v4"]
    assert outs and paths
    assert not [p for p in paths if p.rstrip("/") == "build" or p.startswith("build/")]
