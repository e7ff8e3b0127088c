"""A machine that cannot reach the hub loads hub weights from its cache at once, or says why not."""

from __future__ import annotations

import socket
import time

import pytest
import timm
import torch
from huggingface_hub import constants
from safetensors.torch import save_file

from edgedistill.config import TeacherConfig
from edgedistill.errors import EdgedistillError
from edgedistill.models.hub_reach import resolves
from edgedistill.models.teacher import create_teacher

NAME = "vit_tiny_patch16_224.augreg_in21k_ft_in1k"
LOOKUPS: list[str] = []


@pytest.fixture
def no_dns(monkeypatch, tmp_path):
    """No host name resolves; LOOKUPS lists the lookups made."""
    def fail(host, *args, **kwargs):
        LOOKUPS.append(host)
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    LOOKUPS.clear()

    monkeypatch.setattr(socket, "getaddrinfo", fail)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    for variable in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(variable, raising=False)
    return tmp_path / "hub"


def test_cached_hub_weights_load_without_a_minute_of_retries(no_dns):
    reference = timm.create_model("vit_tiny_patch16_224", depth=1)
    snapshot = no_dns / f"models--timm--{NAME}" / "snapshots" / ("a" * 40)
    snapshot.mkdir(parents=True)
    save_file(reference.state_dict(), str(snapshot / "model.safetensors"))
    (no_dns / f"models--timm--{NAME}" / "refs").mkdir()
    (no_dns / f"models--timm--{NAME}" / "refs" / "main").write_text("a" * 40)

    teacher = create_teacher(TeacherConfig(name=NAME, model_args={"depth": 1}))
    assert LOOKUPS == ["huggingface.co"]  # one probe; huggingface_hub's five retries per request took about a minute
    assert torch.equal(teacher.model.blocks[0].attn.qkv.weight, reference.blocks[0].attn.qkv.weight)
    assert constants.HF_HUB_OFFLINE is False  # only for that creation


def test_uncached_hub_weights_offline_are_a_one_line_error_naming_the_cache(no_dns):
    with pytest.raises(EdgedistillError, match="huggingface.co does not resolve .* not in the local hub cache") as error:
        create_teacher(TeacherConfig(name=NAME, model_args={"depth": 1}))
    assert "teacher.checkpoint" in error.value.fix and LOOKUPS == ["huggingface.co"]
    assert constants.HF_HUB_OFFLINE is False


def test_a_slow_resolver_is_not_taken_for_being_offline(monkeypatch):
    monkeypatch.setattr(socket, "getaddrinfo", lambda *args, **kwargs: time.sleep(5))
    started = time.monotonic()
    assert resolves("huggingface.co", timeout_s=0.2) is True and time.monotonic() - started < 2
