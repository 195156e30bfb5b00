"""The model download against a real HTTP server on loopback serving the Hugging Face (HF_ENDPOINT)
and ModelScope (MODELSCOPE_DOMAIN) layouts: progress, resume, free disk, the ModelScope fallback."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from prompt_server.setup.download import (
    DISK_MARGIN_BYTES,
    DownloadError,
    Unreachable,
    download_model,
    model_folder,
)
from tests.support.loopback import free_port
from tests.support.model_hub import ModelHub

REPO_ID = "someone/tiny-model"
BIG = 3 * 1024 * 1024 + 17  # spans several 1 MiB chunks


@pytest.fixture
def model_files(tmp_path) -> Path:
    folder = tmp_path / "upstream"
    (folder / "sub").mkdir(parents=True)
    (folder / "config.json").write_text('{"model_type": "qwen2"}', encoding="utf-8")
    (folder / "model.safetensors").write_bytes(os.urandom(BIG))
    (folder / "sub" / "notes.txt").write_text("nested files keep their folder", encoding="utf-8")
    return folder


@pytest.fixture
def hub(model_files):
    with ModelHub(REPO_ID, model_files) as server:
        yield server


def hf_env(hub) -> dict:
    return {"HF_ENDPOINT": hub.url}


def same_tree(a: Path, b: Path) -> bool:
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    return files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file()) and all(
        (a / f).read_bytes() == (b / f).read_bytes() for f in files)


def test_download_from_hf_endpoint_reports_bytes_rate_and_eta(hub, model_files, tmp_path):
    hub.delay_s = 0.25  # loopback is too fast to measure a rate over otherwise
    seen = []
    got = download_model(REPO_ID, tmp_path / "models", environ=hf_env(hub), report=seen.append)
    assert got.source == "Hugging Face" and got.note is None
    assert got.folder == model_folder(tmp_path / "models", "Hugging Face", REPO_ID)
    assert same_tree(model_files, got.folder)
    total = sum(p.stat().st_size for p in model_files.rglob("*") if p.is_file())
    assert all(p.total == total for p in seen)
    done = [p.done for p in seen]
    assert done == sorted(done) and done[-1] == total
    assert any(p.rate for p in seen), "a rate once a few chunks have arrived"
    text = seen[-1].to_dict()["text"]
    assert "model:" in text and "MB" in text and "(100 %)" in text
    assert not list(got.folder.rglob("*.part"))


def test_an_interrupted_download_resumes_with_a_range_request(hub, model_files, tmp_path):
    hub.cut_after, hub.cuts_left = 1_500_000, 1
    with pytest.raises(Unreachable) as failed:
        download_model(REPO_ID, tmp_path / "models", environ=hf_env(hub), retries=0)
    assert "resumes" in failed.value.fix
    folder = model_folder(tmp_path / "models", "Hugging Face", REPO_ID)
    part = folder / "model.safetensors.part"
    assert part.stat().st_size == 1_500_000, "the bytes received are kept"

    got = download_model(REPO_ID, tmp_path / "models", environ=hf_env(hub), retries=0)
    assert hub.file_requests("model.safetensors")[-1]["range"] == "bytes=1500000-"
    assert same_tree(model_files, got.folder)
    assert [r["path"] for r in hub.requests].count("config.json") == 1, "finished files are not fetched again"


def test_a_dropped_connection_is_retried_from_where_it_stopped(hub, model_files, tmp_path):
    hub.cut_after, hub.cuts_left = 1_000_000, 2
    lines = []
    got = download_model(REPO_ID, tmp_path / "models", environ=hf_env(hub), log=lines.append)
    ranges = [r["range"] for r in hub.file_requests("model.safetensors")]
    assert ranges == [None, "bytes=1000000-", "bytes=2000000-"]
    assert same_tree(model_files, got.folder)
    assert sum("attempt" in line for line in lines) == 2


def test_a_full_disk_is_refused_before_the_first_byte_mocked(hub, tmp_path):
    """The disk's free space is a fault on demand: shutil.disk_usage is replaced."""
    def nearly_full(path):
        return (10 ** 12, 10 ** 12 - 1_000_000, 1_000_000)

    with pytest.raises(DownloadError) as refused:
        download_model(REPO_ID, tmp_path / "models", environ=hf_env(hub), disk_usage=nearly_full)
    assert "not enough free disk" in refused.value.cause and "1.0 MB free" in refused.value.cause
    assert "another folder" in refused.value.fix
    assert hub.requests == [], "nothing was downloaded"


def test_the_disk_check_counts_only_what_is_still_missing_mocked(hub, model_files, tmp_path):
    download_model(REPO_ID, tmp_path / "models", environ=hf_env(hub))
    enough_for_nothing_more = lambda path: (10 ** 12, 0, DISK_MARGIN_BYTES + 1)  # noqa: E731
    got = download_model(REPO_ID, tmp_path / "models", environ=hf_env(hub), disk_usage=enough_for_nothing_more)
    assert same_tree(model_files, got.folder)


def test_modelscope_is_used_when_hugging_face_is_unreachable_and_says_so(hub, model_files, tmp_path):
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    lines = []
    got = download_model(REPO_ID, tmp_path / "models", environ={"HF_ENDPOINT": dead, "MODELSCOPE_DOMAIN": hub.url},
                         log=lines.append)
    assert got.source == "ModelScope"
    assert got.note and "Hugging Face" in got.note and "unreachable" in got.note and "ModelScope" in got.note
    assert any("ModelScope instead" in line for line in lines)
    assert same_tree(model_files, got.folder)


def test_modelscope_prefix_goes_to_modelscope_directly(hub, model_files, tmp_path):
    got = download_model(REPO_ID, tmp_path / "models", source="modelscope",
                         environ={"HF_ENDPOINT": "http://127.0.0.1:9", "MODELSCOPE_DOMAIN": hub.url})
    assert got.source == "ModelScope" and got.note is None and same_tree(model_files, got.folder)


def test_an_unknown_model_is_named_and_not_looked_for_elsewhere(hub, tmp_path):
    with pytest.raises(DownloadError) as failed:
        download_model("someone/typo", tmp_path / "models", environ={"HF_ENDPOINT": hub.url,
                                                                      "MODELSCOPE_DOMAIN": hub.url})
    assert not isinstance(failed.value, Unreachable)
    assert "'someone/typo'" in failed.value.cause and "HTTP 404" in failed.value.cause


def test_both_sources_unreachable_names_both(tmp_path):
    dead = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(Unreachable) as failed:
        download_model(REPO_ID, tmp_path / "models", environ={"HF_ENDPOINT": dead, "MODELSCOPE_DOMAIN": dead})
    assert "Hugging Face" in failed.value.cause and "ModelScope" in failed.value.cause
    assert "local folder" in failed.value.fix or "folder" in failed.value.fix
