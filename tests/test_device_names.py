from edgedistill.device_names import device_family, devices_listed


def test_family_reads_numbered_and_auto_devices():
    assert [device_family(d) for d in ("GPU.1", "gpu", "AUTO:GPU,CPU", "DLA", " npu ")] == ["GPU", "GPU", "AUTO", "DLA", "NPU"]


def test_auto_lists_its_devices_as_written():
    assert devices_listed("AUTO:GPU.1, CPU") == ["GPU.1", "CPU"]
    assert devices_listed("AUTO") == [] and devices_listed("AUTO:") == []
