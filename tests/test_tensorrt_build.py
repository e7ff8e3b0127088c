"""build_engine and compile_bundle.

TensorRT cannot be installed on the machines that run these tests, so most tests drive the
builder through `FakeTRT`, a stand-in `tensorrt` module that mimics the documented Python API
(Builder, OnnxParser, IBuilderConfig, optimisation profiles, timing caches) and records every
call. Its parser turns the real exported ONNX nodes into layers, so the FP32 pins are checked
against real node names. The tests marked `tensorrt` build and run real engines and skip
cleanly where TensorRT is not importable.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import types

import numpy as np
import onnx
import pytest

from edgedistill.backends import trt_build
from edgedistill.backends.trt_build import build_engine
from edgedistill.backends.trt_bundle import compile_bundle, write_bundle
from edgedistill.backends.trt_env import CudaDevice
from edgedistill.backends.trt_tag import check_engine_tag, engine_tag, save_tagged_cache, sidecar_path
from edgedistill.errors import EdgedistillError
from edgedistill.targets import load_target

from tests.test_tensorrt_models import IMG, TOKEN_HEAD_LN, TokenHeadNet, export_tiny, quantize_qdq

DEVICE = CudaDevice("Orin", "8.7")
LAYER_TYPES = {
    "LayerNormalization": "NORMALIZATION", "Softmax": "SOFTMAX", "ReduceMean": "REDUCE", "Sqrt": "UNARY",
    "Sub": "ELEMENTWISE", "Pow": "ELEMENTWISE", "Add": "ELEMENTWISE", "Div": "ELEMENTWISE", "Mul": "ELEMENTWISE",
    "Conv": "CONVOLUTION", "MatMul": "MATRIX_MULTIPLY", "Shape": "SHAPE", "Constant": "CONSTANT",
}


class _Names:
    def __init__(self, *names):
        for name in names:
            setattr(self, name, name)


class FakeTensor:
    def __init__(self, dtype):
        self.dtype = dtype


class FakeLayer:
    def __init__(self, name, type_, dtype):
        self.name, self.type, self.precision = name, type_, None
        self.outputs = [FakeTensor(dtype)]
        self.output_types = {}

    @property
    def num_outputs(self):
        return len(self.outputs)

    def get_output(self, index):
        return self.outputs[index]

    def set_output_type(self, index, dtype):
        self.output_types[index] = dtype


class FakeNetwork:
    def __init__(self, flags):
        self.flags, self.layers = flags, []

    @property
    def num_layers(self):
        return len(self.layers)

    def get_layer(self, index):
        return self.layers[index]


class FakeTimingCache:
    def __init__(self, data):
        self.data = bytes(data)

    def serialize(self):
        return self.data + b"+tuned"


class FakeConfig:
    def __init__(self):
        self.flags, self.pools, self.profiles = [], {}, []
        self.default_device_type = "GPU"
        self.DLA_core = -1
        self.cache = None

    def set_flag(self, flag):
        self.flags.append(flag)

    def set_memory_pool_limit(self, pool, size):
        self.pools[pool] = size

    def add_optimization_profile(self, profile):
        self.profiles.append(profile)

    def create_timing_cache(self, data):
        return FakeTimingCache(data)

    def set_timing_cache(self, cache, ignore_mismatch):
        self.cache, self.ignore_mismatch = cache, ignore_mismatch
        return True

    def get_timing_cache(self):
        return self.cache


class FakeProfile:
    def __init__(self):
        self.shapes = {}

    def set_shape(self, name, low, opt, high):
        self.shapes[name] = (tuple(low), tuple(opt), tuple(high))


def make_fake_trt(version="10.3.0.30", *, weak_typing=True, dla_cores=2, parse_ok=True, build_ok=True):
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    trt.float32, trt.float16, trt.int64 = "float32", "float16", "int64"
    trt.LayerType = _Names(*sorted(set(LAYER_TYPES.values()) | {"SHUFFLE"}))
    flags = ["GPU_FALLBACK"] + (["FP16", "INT8", "OBEY_PRECISION_CONSTRAINTS", "PREFER_PRECISION_CONSTRAINTS"] if weak_typing else [])
    trt.BuilderFlag = _Names(*flags)
    trt.MemoryPoolType = _Names("WORKSPACE")
    trt.DeviceType = _Names("GPU", "DLA")
    trt.NetworkDefinitionCreationFlag = types.SimpleNamespace(EXPLICIT_BATCH=0)
    trt.builders = []

    class Logger:
        WARNING = "warning"

        def __init__(self, severity):
            self.severity = severity

    class Builder:
        num_DLA_cores = dla_cores

        def __init__(self, logger):
            self.network = self.config = None
            trt.builders.append(self)

        def create_network(self, flags=0):
            self.network = FakeNetwork(flags)
            return self.network

        def create_builder_config(self):
            self.config = FakeConfig()
            return self.config

        def create_optimization_profile(self):
            return FakeProfile()

        def build_serialized_network(self, network, config):
            return b"ENGINE:" + ",".join(sorted(config.flags)).encode() if build_ok else None

    class OnnxParser:
        def __init__(self, network, logger):
            self.network, self.num_errors = network, 0 if parse_ok else 1

        def parse_from_file(self, path):
            if not parse_ok:
                return False
            for node in onnx.load(path).graph.node:
                dtype = trt.int64 if node.op_type == "Shape" else trt.float32
                self.network.layers.append(FakeLayer(node.name, LAYER_TYPES.get(node.op_type, "SHUFFLE"), dtype))
            return True

        def get_error(self, index):
            return "In node 3 (importLayerNormalization): UNSUPPORTED_NODE"

    trt.Logger, trt.Builder, trt.OnnxParser = Logger, Builder, OnnxParser
    return trt


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("build")
    fp = export_tiny(root / "model.onnx")
    return {"fp": fp, "opset16": export_tiny(root / "model16.onnx", opset=16), "qdq": quantize_qdq(fp, root / "model.qdq.onnx"),
            "token_head16": export_tiny(root / "token_head16.onnx", opset=16, net=TokenHeadNet)}


@pytest.fixture
def fake(monkeypatch):
    """Install a fake TensorRT 10.3 and an Orin GPU; returns a function to swap in another fake."""
    def install(**kwargs):
        trt = make_fake_trt(**kwargs)
        monkeypatch.setitem(sys.modules, "tensorrt", trt)
        return trt

    monkeypatch.setattr(trt_build, "cuda_device", lambda: DEVICE)
    monkeypatch.setattr("edgedistill.backends.trt_tag.current_tag", lambda: engine_tag(sys.modules["tensorrt"].__version__, DEVICE.name, DEVICE.compute_capability))
    return install


def pinned(network):
    return {layer.name for layer in network.layers if layer.precision == "float32"}


def test_fp16_build_on_jetson_orin(fake, models, tmp_path):
    trt = fake()
    out = build_engine(models["fp"], tmp_path / "e" / "fp16.engine", precision="fp16", target=load_target("jetson-orin"),
                       timing_cache=tmp_path / "e" / "timing.cache")
    (builder,) = trt.builders
    config, network = builder.config, builder.network
    assert network.flags == 0  # TensorRT 10: explicit batch is the only mode
    assert config.pools == {"WORKSPACE": 2048 << 20}
    assert sorted(config.flags) == ["FP16", "OBEY_PRECISION_CONSTRAINTS"]
    assert config.default_device_type == "GPU"
    (profile,) = config.profiles
    assert profile.shapes == {"input": ((1, 3, IMG, IMG), (1, 3, IMG, IMG), (8, 3, IMG, IMG))}
    assert pinned(network) == {"/norm/LayerNormalization", "/Softmax"}
    norm = next(layer for layer in network.layers if layer.name == "/norm/LayerNormalization")
    assert norm.output_types == {0: "float32"}
    assert config.ignore_mismatch is False
    assert out.read_bytes() == b"ENGINE:FP16,OBEY_PRECISION_CONSTRAINTS"
    check_engine_tag(out, engine_tag("10.3.0.30", "Orin", "8.7"))
    build = json.loads(sidecar_path(out).read_text())["build"]
    assert build["precision"] == "fp16" and build["fp32_layers"] == 2 and build["input"]["profile"][2] == [8, 3, IMG, IMG]
    assert (tmp_path / "e" / "timing.cache").read_bytes() == b"+tuned"
    assert [p.name for p in (tmp_path / "e").iterdir() if p.name.startswith(".")] == []


def test_decomposed_layernorm_is_pinned_by_scope_on_trt85(fake, models, tmp_path):
    trt = fake(version="8.5.2.2")
    build_engine(models["opset16"], tmp_path / "fp16.engine", precision="fp16", target=load_target("jetson-orin-jp5"))
    network = trt.builders[0].network
    assert network.flags == 1  # 1 << EXPLICIT_BATCH, which TensorRT 8.x still needs
    assert pinned(network) == {"/norm/ReduceMean", "/norm/Sub", "/norm/Pow", "/norm/ReduceMean_1", "/norm/Add", "/norm/Sqrt",
                               "/norm/Div", "/norm/Mul", "/norm/Add_1", "/Softmax"}


def test_decomposed_token_head_layernorm_is_pinned_by_structure_on_trt85(fake, models, tmp_path):
    trt = fake(version="8.5.2.2")
    out = build_engine(models["token_head16"], tmp_path / "fp16.engine", precision="fp16",
                       target=load_target("jetson-orin-jp5"))
    # No "norm" in /token_head/token_head.0/..., and the look-alike Sub/Pow/Div outside the head stay fp16.
    assert pinned(trt.builders[0].network) == TOKEN_HEAD_LN | {"/Softmax"}
    assert json.loads(sidecar_path(out).read_text())["build"]["fp32_layers"] == len(TOKEN_HEAD_LN) + 1


def test_layernorm_op_on_trt85_fails_before_building(fake, models, tmp_path):
    trt = fake(version="8.5.2.2")
    with pytest.raises(EdgedistillError, match="LayerNormalization") as caught:
        build_engine(models["fp"], tmp_path / "fp16.engine", precision="fp16", target=load_target("jetson-orin-jp5"))
    assert "export.opset=16" in caught.value.fix and trt.builders == [] and not (tmp_path / "fp16.engine").exists()


def test_int8_qdq_on_dla(fake, models, tmp_path):
    trt = fake()
    target = load_target("jetson-orin-dla")
    build_engine(models["qdq"], tmp_path / "int8.engine", precision="int8", target=target)
    config = trt.builders[0].config
    assert set(config.flags) == {"INT8", "FP16", "OBEY_PRECISION_CONSTRAINTS", "GPU_FALLBACK"}
    assert config.default_device_type == "DLA" and config.DLA_core == 0
    assert config.profiles[0].shapes["input"] == ((1, 3, IMG, IMG),) * 3


def test_fp32_on_a_dla_target_builds_for_the_gpu_and_records_no_dla_core(fake, models, tmp_path):
    trt = fake()
    out = build_engine(models["fp"], tmp_path / "fp32.engine", precision="fp32", target=dataclasses.replace(load_target("jetson-orin-dla"), batch_max=8))
    config = trt.builders[0].config
    assert config.default_device_type == "GPU" and config.DLA_core == -1 and "GPU_FALLBACK" not in config.flags
    assert config.profiles[0].shapes["input"][2][0] == 8  # the GPU takes the target's batch range
    assert json.loads(sidecar_path(out).read_text())["build"]["dla_core"] is None  # so the runner sets no DLA core


def test_dla_core_the_device_lacks(fake, models, tmp_path):
    fake(dla_cores=0)
    with pytest.raises(EdgedistillError, match="DLA core 0 but this device has 0 DLA cores"):
        build_engine(models["qdq"], tmp_path / "int8.engine", precision="int8", target=load_target("jetson-orin-dla"))


def test_fp32_build_pins_nothing_and_sets_no_flags(fake, models, tmp_path):
    trt = fake()
    build_engine(models["fp"], tmp_path / "fp32.engine", precision="fp32", target=load_target("nvidia-gpu"))
    builder = trt.builders[0]
    assert builder.config.flags == [] and pinned(builder.network) == set()
    assert builder.config.pools == {"WORKSPACE": 4096 << 20}


def test_layernorm_fp32_can_be_turned_off(fake, models, tmp_path):
    trt = fake()
    build_engine(models["fp"], tmp_path / "fp16.engine", precision="fp16", target=load_target("jetson-orin"), layernorm_fp32=False)
    assert trt.builders[0].config.flags == ["FP16"] and pinned(trt.builders[0].network) == set()


def test_static_batch_model_gets_no_profile(fake, models, tmp_path):
    trt = fake()
    static = export_tiny(tmp_path / "static.onnx", dynamic_batch=False)
    out = build_engine(static, tmp_path / "fp16.engine", precision="fp16", target=load_target("jetson-orin"))
    assert trt.builders[0].config.profiles == []
    assert json.loads(sidecar_path(out).read_text())["build"]["input"]["static_shape"] == [1, 3, IMG, IMG]


def test_foreign_timing_cache_is_not_reused(fake, models, tmp_path):
    cache = save_tagged_cache(tmp_path / "timing.cache", b"from-10.7", engine_tag("10.7.0.23", "Orin", "8.7"))
    fake()
    build_engine(models["fp"], tmp_path / "fp16.engine", precision="fp16", target=load_target("jetson-orin"), timing_cache=cache)
    assert cache.read_bytes() == b"+tuned"  # started empty, not from the 10.7 tactics
    record = json.loads(sidecar_path(cache).read_text())
    assert record["tag"]["tensorrt"] == "10.3.0.30"
    fake()
    build_engine(models["fp"], tmp_path / "fp16b.engine", precision="fp16", target=load_target("jetson-orin"), timing_cache=cache)
    assert cache.read_bytes() == b"+tuned+tuned"  # its own cache is reused


def test_strongly_typed_trt11(fake, models, tmp_path):
    fake(version="11.2.0.1", weak_typing=False)
    with pytest.raises(EdgedistillError, match="strongly typed") as caught:
        build_engine(models["fp"], tmp_path / "fp16.engine", precision="fp16", target=load_target("nvidia-gpu"))
    assert "AutoCast" in caught.value.fix
    trt = fake(version="11.2.0.1", weak_typing=False)
    build_engine(models["qdq"], tmp_path / "int8.engine", precision="int8", target=load_target("nvidia-gpu"))
    assert trt.builders[0].config.flags == [] and pinned(trt.builders[0].network) == set()


def test_parse_and_build_failures_leave_no_engine(fake, models, tmp_path):
    fake(parse_ok=False)
    with pytest.raises(EdgedistillError, match="could not parse model.onnx: In node 3"):
        build_engine(models["fp"], tmp_path / "fp16.engine", precision="fp16", target=load_target("jetson-orin"))
    fake(build_ok=False)
    with pytest.raises(EdgedistillError, match="failed to build"):
        build_engine(models["fp"], tmp_path / "fp16.engine", precision="fp16", target=load_target("jetson-orin"))
    assert list(tmp_path.iterdir()) == []


def test_no_gpu_or_unknown_precision(fake, models, tmp_path, monkeypatch):
    fake()
    with pytest.raises(EdgedistillError, match="precision 'int4'"):
        build_engine(models["fp"], tmp_path / "x.engine", precision="int4", target=load_target("jetson-orin"))
    monkeypatch.setattr(trt_build, "cuda_device", lambda: None)
    with pytest.raises(EdgedistillError, match="no CUDA device"):
        build_engine(models["fp"], tmp_path / "x.engine", precision="fp16", target=load_target("jetson-orin"))


def test_compile_bundle_builds_tags_and_records(fake, models, tmp_path):
    trt = fake()
    bundle = write_bundle(tmp_path, {"fp16": models["fp"], "int8": models["qdq"]}, load_target("jetson-orin"))
    engines = compile_bundle(bundle)
    assert engines == [bundle / "engines" / "fp16.engine", bundle / "engines" / "int8.engine"]
    assert len(trt.builders) == 2
    for engine in engines:
        check_engine_tag(engine, engine_tag("10.3.0.30", "Orin", "8.7"))
    compiled = json.loads((bundle / "bundle.json").read_text())["compiled"]
    assert compiled["tensorrt"] == "10.3.0.30"
    assert [e["engine"] for e in compiled["engines"]] == ["engines/fp16.engine", "engines/int8.engine"]
    assert compiled["findings"] == {"fp16": [], "int8": []}
    assert (bundle / "engines" / "timing.cache").is_file() and sidecar_path(bundle / "engines" / "timing.cache").is_file()


def test_compile_bundle_rechecks_with_the_installed_version(fake, models, tmp_path):
    fake(version="8.5.2.2")  # the device turned out to be on JetPack 5.1
    bundle = write_bundle(tmp_path, {"fp16": models["fp"]}, load_target("jetson-orin"))
    with pytest.raises(EdgedistillError, match="fp16 model: LayerNormalization .* needs TensorRT >= 8.6; the target has TensorRT 8.5"):
        compile_bundle(bundle)


@pytest.mark.tensorrt
def test_real_engine_matches_onnxruntime(models, tmp_path):
    pytest.importorskip("tensorrt")
    from edgedistill.backends.tensorrt_backend import TensorRTBackend

    backend = TensorRTBackend()
    ok, reason = backend.availability()
    if not ok:
        pytest.skip(reason)
    import onnxruntime as ort

    batch = np.random.default_rng(0).standard_normal((2, 3, IMG, IMG), dtype=np.float32)
    expected = ort.InferenceSession(str(models["fp"]), providers=["CPUExecutionProvider"]).run(None, {"input": batch})[0]
    for precision, tol in (("fp32", 1e-3), ("fp16", 3e-2)):
        engine = backend.compile(models["fp"], tmp_path / f"{precision}.engine", precision=precision, target=load_target("nvidia-gpu"),
                                 timing_cache=tmp_path / "timing.cache")
        with backend.runner(engine) as runner:
            got = runner.infer({"input": batch})["output"]
            assert runner.last_inference_time() > 0 and runner.runtime_settings()["precision"] == precision
        np.testing.assert_allclose(got, expected, atol=tol, rtol=tol)


def test_engines_are_built_only_on_the_target_and_join_the_build_folder_there(fake, models, tmp_path, monkeypatch):
    """The Jetson flow: the host writes a pending bundle (never engines for its own GPU, though it has
    TensorRT); `edgedistill compile BUNDLE` on the device records the engines in the build's manifest,
    so `edgedistill bench BUILD` there times them."""
    import shutil

    from edgedistill.artifacts import Artifact, Manifest
    from edgedistill.backends import compile_stage, tensorrt_backend
    from edgedistill.cli import main
    from edgedistill.targets import TargetProfile

    fake()
    monkeypatch.setattr(tensorrt_backend, "cuda_device", lambda: DEVICE)  # TensorRT and a GPU on the host too
    build = tmp_path / "build"
    build.mkdir()
    shutil.copy(models["fp"], build / "model.onnx")
    onnx = Artifact.record(build, build / "model.onnx", kind="onnx", name="onnx-fp32", precision="fp32", backend="onnxruntime")
    target = dataclasses.replace(load_target("jetson-orin"), precisions=["fp16"])
    monkeypatch.setattr(TargetProfile, "runs_on_this_host", lambda self: (False, "this host is x86_64, not aarch64"))
    records = compile_stage._tensorrt({"onnx": onnx}, build, target)
    assert [(r.name, r.status) for r in records] == [("tensorrt-bundle", "pending")]  # no engine for the host's GPU
    manifest = Manifest(build)
    for record in [onnx, *records]:
        manifest.add(record)
    manifest.record_stage("compile", "key", ["tensorrt-bundle"])
    manifest.save()

    assert main(["compile", str(build / "trt_bundle")]) == 0  # on the device
    manifest = Manifest.load(build)
    found = manifest.artifacts()
    assert found["tensorrt-fp16"].kind == "trt-engine" and found["tensorrt-fp16"].is_intact(build)
    assert found["tensorrt-bundle"].status == "ready" and found["tensorrt-bundle"].is_intact(build)  # hashed after the build
    assert set(manifest.data["stages"]["compile"]["outputs"]) == {"tensorrt-bundle", "tensorrt-fp16"}


def test_engines_that_build_engines_sh_left_are_adopted_once(fake, models, tmp_path, monkeypatch):
    import shutil

    from edgedistill.artifacts import Artifact, Manifest
    from edgedistill.backends import compile_stage
    from edgedistill.targets import TargetProfile

    fake()
    build = tmp_path / "build"
    build.mkdir()
    shutil.copy(models["fp"], build / "model.onnx")
    onnx = Artifact.record(build, build / "model.onnx", kind="onnx", name="onnx-fp32", precision="fp32", backend="onnxruntime")
    monkeypatch.setattr(TargetProfile, "runs_on_this_host", lambda self: (False, "not the device"))
    target = dataclasses.replace(load_target("jetson-orin"), precisions=["fp16"])
    manifest = Manifest(build)
    for record in [onnx, *compile_stage._tensorrt({"onnx": onnx}, build, target)]:
        manifest.add(record)
    assert compile_stage.adopt_engines(manifest) == []  # nothing built yet
    (build / "trt_bundle" / "engines" / "fp16.engine").write_bytes(b"what trtexec wrote")
    assert compile_stage.adopt_engines(manifest) == ["tensorrt-bundle", "tensorrt-fp16"]
    assert manifest.artifacts()["tensorrt-fp16"].is_intact(build) and manifest.artifacts()["tensorrt-bundle"].status == "ready"
    assert compile_stage.adopt_engines(manifest) == []  # recorded as they are: not again
    (build / "trt_bundle" / "engines" / "fp16.engine.json").write_text("{}")  # the tag build_engines.sh asks for, written since
    assert compile_stage.adopt_engines(manifest) == ["tensorrt-bundle", "tensorrt-fp16"]  # else the build reads changed for good
    assert manifest.changed_artifacts() == []


def test_best_sets_int8_only_where_qdq_nodes_carry_the_scales(fake, models, tmp_path):
    # INT8 with neither Q/DQ scales nor a calibrator fails TensorRT's build; trtexec's line leaves it out too
    trt = fake()
    build_engine(models["fp"], tmp_path / "fp.engine", precision="best", target=load_target("nvidia-gpu"), layernorm_fp32=False)
    build_engine(models["qdq"], tmp_path / "qdq.engine", precision="best", target=load_target("nvidia-gpu"), layernorm_fp32=False)
    assert [sorted(b.config.flags) for b in trt.builders] == [["FP16"], ["FP16", "INT8"]]
