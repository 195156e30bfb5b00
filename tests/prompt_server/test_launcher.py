"""`serve`: the SGLang command line, engine choice, and messages when something is missing."""
from __future__ import annotations

import subprocess
import sys

import pytest

from newspicgen.cli import build_parser
from prompt_server import launcher
from tests.support import REPO


def parse(*argv):
    return build_parser().parse_args(["serve", *argv])


def test_sglang_command_has_the_tuned_flags():
    command = launcher.sglang_command(model="blacker521/NewsPicGen", host="0.0.0.0", port=30001,
                                      mem_fraction=0.3, context_length=4096, python="python")
    assert command == ["python", "-m", "sglang.launch_server", "--model-path", "blacker521/NewsPicGen",
                       "--host", "0.0.0.0", "--port", "30001", "--dtype", "bfloat16",
                       "--mem-fraction-static", "0.3", "--grammar-backend", "llguidance",
                       "--served-model-name", "newspicgen", "--context-length", "4096"]


def test_sglang_command_adds_api_key_only_when_given():
    base = dict(model="m", host="h", port=1, mem_fraction=0.5, context_length=2048, python="py")
    assert "--api-key" not in launcher.sglang_command(**base)
    command = launcher.sglang_command(api_key="s3cret", served_model_name="pics", **base)
    assert command[-2:] == ["--api-key", "s3cret"]
    assert command[command.index("--served-model-name") + 1] == "pics"


def test_cli_defaults_reach_the_command_line():
    args = parse()
    assert (args.engine, args.model, args.host, args.port) == ("auto", "blacker521/NewsPicGen", "127.0.0.1", 30000)
    assert args.mem_fraction < 0.5  # leaves most of the GPU to Stable Diffusion
    command = launcher.sglang_command(model=args.model, host=args.host, port=args.port,
                                      mem_fraction=args.mem_fraction, context_length=args.context_length)
    assert command[0] == sys.executable


@pytest.mark.parametrize("model, source, expected", [
    ("modelscope:blacker521/NewsPicGen", "auto", ("blacker521/NewsPicGen", "modelscope")),
    ("blacker521/NewsPicGen", "modelscope", ("blacker521/NewsPicGen", "modelscope")),
    ("blacker521/NewsPicGen", "auto", ("blacker521/NewsPicGen", "auto")),
    ("/models/newspicgen", "huggingface", ("/models/newspicgen", "huggingface")),
])
def test_model_source_split(model, source, expected):
    assert launcher.split_model_source(model, source) == expected


def test_modelscope_source_sets_sglang_env():
    assert launcher.sglang_environment("modelscope", {})["SGLANG_USE_MODELSCOPE"] == "true"
    assert "SGLANG_USE_MODELSCOPE" not in launcher.sglang_environment("auto", {})


@pytest.mark.parametrize("has_sglang, has_gpu, expected", [
    (True, True, "sglang"), (True, False, "local"), (False, True, "local"), (False, False, "local")])
def test_auto_picks_sglang_only_with_sglang_and_a_gpu(has_sglang, has_gpu, expected):
    assert launcher.choose_engine("auto", has_sglang=lambda: has_sglang, has_gpu=lambda: has_gpu) == expected


def test_local_is_taken_as_asked_even_with_sglang():
    assert launcher.choose_engine("local", has_sglang=lambda: True, has_gpu=lambda: True) == "local"


def test_sglang_without_sglang_says_to_use_local():
    with pytest.raises(launcher.LaunchError, match="not installed.*--engine local"):
        launcher.choose_engine("sglang", has_sglang=lambda: False, has_gpu=lambda: True)


def test_sglang_without_gpu_says_to_use_local():
    with pytest.raises(launcher.LaunchError, match="CUDA GPU.*--engine local"):
        launcher.choose_engine("sglang", has_sglang=lambda: True, has_gpu=lambda: False)


def test_base_url_shows_a_reachable_host():
    assert launcher.base_url("0.0.0.0", 30000) == "http://127.0.0.1:30000"
    assert launcher.base_url("::1", 8080) == "http://[::1]:8080"


def test_importing_the_launcher_stays_light():
    code = ("import sys, prompt_server.launcher, newspicgen.cli; "
            "heavy = [m for m in ('torch', 'transformers', 'llguidance') if m in sys.modules]; "
            "print(heavy); sys.exit(1 if heavy else 0)")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def run_cli(*argv, timeout=120):
    return subprocess.run([sys.executable, "-m", "prompt_server", "serve", *argv], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.skipif(launcher.sglang_installed(), reason="SGLang is installed here")
def test_cli_engine_sglang_missing_is_one_clear_line():
    result = run_cli("--engine", "sglang")
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "SGLang is not installed" in lines[0] and "--engine local" in lines[0]


def test_cli_missing_local_model_folder_is_one_clear_line(tmp_path):
    # an empty folder is "local", so nothing is downloaded; the error names the model
    result = run_cli("--engine", "local", "--model", str(tmp_path), "--port", "0")
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert f"cannot load model {str(tmp_path)!r}" in result.stderr.strip().splitlines()[-1]


def test_cli_busy_port_is_one_clear_line(tiny_model_dir, local_server_url):
    port = local_server_url.rsplit(":", 1)[1]
    result = run_cli("--engine", "local", "--model", str(tiny_model_dir), "--port", port)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr and "--port" in result.stderr


@pytest.mark.skipif(launcher.sglang_installed(), reason="modelscope may be installed with SGLang")
def test_modelscope_without_package_says_how_to_install():
    pytest.importorskip("torch")
    from prompt_server.engine.model_loader import ModelLoadError, resolve_model

    try:
        import modelscope  # noqa: F401
    except ImportError:
        with pytest.raises(ModelLoadError, match="pip install modelscope"):
            resolve_model("modelscope:blacker521/NewsPicGen")
    else:
        pytest.skip("modelscope is installed here")


def test_wait_until_healthy_reports_a_child_that_died():
    process = subprocess.Popen([sys.executable, "-c", "import sys; sys.exit(3)"])
    process.wait()
    with pytest.raises(launcher.LaunchError, match="exited with code 3"):
        launcher.wait_until_healthy("http://127.0.0.1:9", process, timeout=30)


def test_wait_until_healthy_returns_once_health_answers(local_server_url):
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        launcher.wait_until_healthy(local_server_url, process, timeout=30)
    finally:
        process.kill()
        process.wait()


def test_wait_until_healthy_times_out_with_the_url():
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        with pytest.raises(launcher.LaunchError, match=r"did not answer http://127\.0\.0\.1:9/health"):
            launcher.wait_until_healthy("http://127.0.0.1:9", process, timeout=0.5)
    finally:
        process.kill()
        process.wait()


@pytest.mark.parametrize("argv, needle", [
    (["--mem-fraction", "1.5"], "--mem-fraction 1.5 must be between 0 and 1"),
    (["--max-batch-size", "0"], "--max-batch-size 0 must be at least 1"),
    (["--port", "70000"], "--port 70000"),
])
def test_bad_arguments_are_one_line_errors(argv, needle, capsys):
    assert launcher.run(parse("--engine", "local", *argv)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0]
