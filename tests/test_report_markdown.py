"""report.md / $GITHUB_STEP_SUMMARY structure."""

import json
import re
from pathlib import Path

from edgedistill.report import make_report, merge_reports, render_markdown

DATA = Path(__file__).parent / "data"
COLUMNS = ["artifact", "backend", "precision", "status", "p50 ms", "p90 ms", "p99 ms", "img/s (1 sync request)", "size MB",
           "cosine vs fp32", "top-1 vs fp32", "top-1 vs teacher"]


def load(name: str) -> dict:
    return json.loads((DATA / f"report_{name}_bench.json").read_text())


def cells(line: str) -> list[str]:
    """Cells of a markdown table row, split on unescaped pipes."""
    return [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]


def tables(md: str) -> list[list[list[str]]]:
    out, current = [], None
    for line in md.splitlines():
        if line.startswith("|"):
            if current is None:
                current = []
                out.append(current)
            current.append(cells(line))
        else:
            current = None
    return out


def test_structure_of_a_single_report():
    md = render_markdown(make_report(load("sample")))
    lines = md.splitlines()
    assert lines[0] == r"# edgedistill report: vit\_tiny\_patch16\_224 on x86-cpu"
    assert "## Target x86-cpu (CPU)" in lines
    assert "## Remaining steps" in lines
    # Host line: CPU, cores and versions.
    host = next(line for line in lines if line.startswith("- ci-runner-7"))
    assert "Platinum 8488C" in host and "2 logical / 1 physical cores" in host and "onnxruntime 1.22.0" in host
    [table] = tables(md)
    header, sep, *rows = table
    # The pending TensorRT row is on the GPU, the others on the CPU: a device column says so.
    assert header[1:] == COLUMNS[:3] + ["device"] + COLUMNS[3:]
    assert all(set(c) <= set(":-") for c in sep) and len(sep) == len(header)
    assert len(rows) == 5 and all(len(r) == len(header) for r in rows)
    selected = [r for r in rows if r[0] == "★"]
    assert len(selected) == 1 and selected[0][1] == "**onnxruntime-int8**"
    assert "- Selected: **onnxruntime-int8**: fastest measured artifact" in md
    pending = next(r for r in rows if "tensorrt" in r[1])
    assert pending[4:7] == ["GPU", "pending", "—"] and rows[0][4] == "CPU"
    assert "- [ ] tensorrt-fp16: TensorRT is not installed" in md
    assert "Notes:" in md  # long notes live under the table, not in it


def test_estimated_rows_are_marked_clearly():
    md = render_markdown(make_report(load("estimated")))
    [table] = tables(md)
    rows = table[2:]
    assert [r[4] for r in rows] == ["estimated", "estimated"]
    assert rows[0][5] == "≈1.90" and rows[0][8] == "≈526.3"
    assert "Estimated rows are not measurements" in md
    assert "- Selected: **none**" in md
    assert "- [ ] tensorrt-fp16: latency is estimated; run `edgedistill bench` on the device" in md


def test_comparison_has_one_table_per_target_with_build_and_host():
    md = render_markdown(merge_reports([load("sample"), load("estimated"), load("jetson")]))
    x86, jetson = tables(md)
    assert x86[0][1:4] == ["artifact", "build", "host"]
    assert jetson[0][-1] == "estimate (error)"
    assert jetson[2][3] == "orin-agx-01" and jetson[2][6] == "measured"
    assert "Selected for runs/jetson@orin-agx-01: **tensorrt-int8**" in md
    assert "runs/jetson@ci-runner-7: **none**" not in md  # the device's measurement covers that target


def test_strings_are_escaped_so_tables_keep_their_shape():
    bench = load("sample")
    bench["artifacts"][0]["name"] = "evil|name<script>x</script>"
    bench["artifacts"][0]["notes"] = "a | b <img src=x>"
    md = render_markdown(make_report(bench))
    assert "<script>" not in md and "<img" not in md
    [table] = tables(md)
    assert all(len(r) == len(table[0]) for r in table)
    assert r"evil\|name&lt;script>x&lt;/script>" in md


def test_no_remaining_steps_says_so():
    md = render_markdown(make_report(load("jetson")))
    assert "None: every artifact was built and measured here." in md


def test_rows_of_two_batch_sizes_say_their_batch():
    at_eight = load("sample")
    at_eight["host"]["hostname"] = "host-b"
    for a in at_eight["artifacts"]:
        a["batch"] = 8
    [x86] = tables(render_markdown(merge_reports([load("sample"), at_eight])))
    header, _, *rows = x86
    assert "batch" in header and "batch" not in tables(render_markdown(load("sample")))[0][0]
    batch = {(r[1].strip("*"), r[3]): r[header.index("batch")] for r in rows}
    assert batch[("onnxruntime-int8", "ci-runner-7")] == "1" and batch[("onnxruntime-int8", "host-b")] == "8"


def test_a_figure_just_under_its_budget_is_not_rounded_up_to_it():
    bench = load("sample")
    int8 = next(a for a in bench["artifacts"] if a["name"] == "openvino-int8")
    int8["fidelity"].update(cosine_vs_fp32=0.97996, top1_agreement_vs_fp32=0.98996)
    [table] = tables(render_markdown(make_report(bench)))
    header, _, *rows = table
    cell = dict(zip(header, next(r for r in rows if r[1] == "openvino-int8")))
    assert cell["cosine vs fp32"] == "0.9799" and cell["top-1 vs fp32"] == "98.9%"  # never 0.9800 / 99.0%
    assert dict(zip(header, rows[0]))["cosine vs fp32"] == "1.0000"
    from edgedistill.report.content import fidelity_num

    assert fidelity_num(1e25) == f"{1e25:.4f}"  # a damaged file: shown, not a Decimal InvalidOperation traceback


def test_units_are_named_as_the_figures_are_computed():
    md = render_markdown(make_report(load("sample")))
    assert "23.4 GiB RAM" in md  # memory_gb is total / 2**30


def test_a_description_that_names_its_toolchain_is_not_followed_by_it_again():
    from edgedistill.report.content import target_text

    orin = {"description": "NVIDIA Jetson AGX Orin 64GB, JetPack 6.1 with TensorRT 10.3", "tensorrt_version": "10.3", "jetpack": "6.1", "dla_core": None}
    assert target_text(orin) == orin["description"]  # it read "...; TensorRT 10.3, JetPack 6.1"
    assert target_text({**orin, "dla_core": 0}) == orin["description"] + "; DLA core 0"


def test_a_build_report_names_the_folder_it_is_written_into_not_where_bench_ran(tmp_path):
    """A build folder copied (or restored from a cache) keeps bench.json, and its build.dir, from before."""
    from edgedistill.report.render_markdown import md as escape
    from edgedistill.report_stage import write_build_report

    copy = tmp_path / "x86"
    (copy / "bench").mkdir(parents=True)
    bench = load("sample")
    bench["build"]["dir"] = "build"  # benched in build/, then copied to x86/
    (copy / "bench" / "bench.json").write_text(json.dumps(bench))
    report = write_build_report(copy, copy / "bench" / "bench.json", [])
    assert report["build"]["dir"] == "build" and report["build"]["folder"] == str(copy)  # where measured stays on record
    md = (copy / "report" / "report.md").read_text()
    assert f"- build {escape(str(copy))}, target x86-cpu" in md and "build build" not in md
    html = (copy / "report" / "report.html").read_text()
    assert f"build {str(copy)}, target" in html and "build build" not in html
