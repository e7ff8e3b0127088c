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
    assert "edgedistill build --target x86-cpu --out build" in runs
    report = next(line for line in runs.splitlines() if line.strip().startswith("edgedistill report"))
    for flag in ("--max-latency-ms 20", "--min-cosine 0.98", "--max-size-mb 50"):
        assert flag in report
    assert "--gate-" not in runs
    assert report.rstrip().endswith('>> "$GITHUB_STEP_SUMMARY"')
    uploads = [s for s in steps if s.get("uses") == "actions/upload-artifact@v4"]
    assert {u["with"]["path"] for u in uploads} == {"build/", "build/report/"}
    assert all(u.get("if") == "always()" for u in uploads)  # kept even when a gate fails
