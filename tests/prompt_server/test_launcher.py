"""`serve`: the SGLang command line, engine choice, and messages when something is missing."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from newspicgen.cli import build_parser
from prompt_server import child_processes, launcher, sglang_launch
from prompt_server.sglang_launch import SGLangInstall
from tests.support import REPO


def parse(*argv):
    return build_parser().parse_args(["serve", *argv])


NO_SGLANG = SGLangInstall("python", None, cpu_kernel=False, router=False)
GPU_SGLANG = SGLangInstall("/venvs/sglang/bin/python", "0.5.23", cpu_kernel=False, router=True)
CPU_SGLANG = SGLangInstall("/venvs/sglang/bin/python", "0.5.18", cpu_kernel=True, router=True)


def test_sglang_command_on_cuda_leaves_the_gpu_to_stable_diffusion():
    command = sglang_launch.sglang_command(model="blacker521/NewsPicGen", host="0.0.0.0", port=30001,
                                           device="cuda", mem_fraction=0.3, context_length=4096, python="python")
    assert command == ["python", "-m", "sglang.launch_server", "--model-path", "blacker521/NewsPicGen",
                       "--host", "0.0.0.0", "--port", "30001", "--dtype", "bfloat16",
                       "--grammar-backend", "llguidance", "--served-model-name", "newspicgen",
                       "--context-length", "4096", "--mem-fraction-static", "0.3",
                       "--enable-deterministic-inference"]


def write_config(folder, hidden, heads):
    folder.mkdir(exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"hidden_size": hidden, "num_attention_heads": heads}))
    return str(folder)


def test_sglang_command_on_cpu_runs_the_cpu_engine_with_a_bounded_cache(tmp_path):
    model = write_config(tmp_path / "qwen-shaped", hidden=1536, heads=12)  # head_dim 128: AMX attention
    command = sglang_launch.sglang_command(model=model, host="127.0.0.1", port=31000, device="cpu",
                                           context_length=4096, python="py", max_total_tokens=8192)
    assert command[command.index("--device") + 1] == "cpu"
    assert "--disable-overlap-schedule" in command and "--mem-fraction-static" not in command
    assert command[command.index("--max-total-tokens") + 1] == "8192"
    assert "--attention-backend" not in command


def test_cpu_attention_backend_fits_the_models_head_size(tmp_path):
    assert sglang_launch.cpu_attention_backend(write_config(tmp_path / "h16", 64, 4)) == "torch_native"
    assert sglang_launch.cpu_attention_backend(write_config(tmp_path / "h32", 128, 4)) is None
    assert sglang_launch.cpu_attention_backend("blacker521/NewsPicGen") is None  # not local: SGLang's default
    command = sglang_launch.sglang_command(model=str(tmp_path / "h16"), host="h", port=1, device="cpu",
                                           context_length=2048)
    assert command[command.index("--attention-backend") + 1] == "torch_native"


def test_sglang_command_adds_api_key_and_extra_arguments_last():
    base = dict(model="m", host="h", port=1, device="cuda", mem_fraction=0.5, context_length=2048, python="py")
    assert "--api-key" not in sglang_launch.sglang_command(**base)
    command = sglang_launch.sglang_command(api_key="s3cret", served_model_name="pics",
                                           extra=["--log-level", "debug"], **base)
    assert command[-4:] == ["--api-key", "s3cret", "--log-level", "debug"]
    assert command[command.index("--served-model-name") + 1] == "pics"
    assert "s3cret" not in child_processes.masked(command)


def test_environment_selects_the_cpu_engine_and_modelscope():
    assert sglang_launch.sglang_environment("auto", "cpu", {})["SGLANG_USE_CPU_ENGINE"] == "1"
    assert "SGLANG_USE_CPU_ENGINE" not in sglang_launch.sglang_environment("auto", "cuda", {})
    assert sglang_launch.sglang_environment("modelscope", "cuda", {})["SGLANG_USE_MODELSCOPE"] == "true"
    assert "SGLANG_USE_MODELSCOPE" not in sglang_launch.sglang_environment("auto", "cuda", {})


def test_sglang_python_comes_from_the_flag_then_the_environment_then_this_python():
    assert sglang_launch.sglang_python("/a/python", {"NEWSPICGEN_SGLANG_PYTHON": "/b/python"}) == "/a/python"
    assert sglang_launch.sglang_python(None, {"NEWSPICGEN_SGLANG_PYTHON": "/b/python"}) == "/b/python"
    assert sglang_launch.sglang_python(None, {}) == sys.executable


def test_router_command_fronts_every_worker():
    command = sglang_launch.router_command(python="py", host="127.0.0.1", port=30000,
                                           worker_urls=["http://127.0.0.1:1", "http://127.0.0.1:2"])
    assert command[:3] == ["py", "-m", "sglang_router.launch_router"]
    assert command[command.index("--worker-urls") + 1:] == ["http://127.0.0.1:1", "http://127.0.0.1:2"]
    assert command[command.index("--policy") + 1] == "round_robin"


def test_cli_defaults_reach_the_command_line():
    args = parse()
    assert (args.engine, args.model, args.host, args.port) == ("auto", "blacker521/NewsPicGen", "127.0.0.1", 30000)
    assert (args.device, args.workers, args.sglang_args) == ("auto", 1, [])
    assert args.mem_fraction < 0.5  # leaves most of the GPU to Stable Diffusion


def test_arguments_after_double_dash_go_to_sglang():
    args = parse("--engine", "sglang", "--", "--log-level", "debug")
    assert args.sglang_args == ["--log-level", "debug"]


@pytest.mark.parametrize("model, source, expected", [
    ("modelscope:blacker521/NewsPicGen", "auto", ("blacker521/NewsPicGen", "modelscope")),
    ("blacker521/NewsPicGen", "modelscope", ("blacker521/NewsPicGen", "modelscope")),
    ("blacker521/NewsPicGen", "auto", ("blacker521/NewsPicGen", "auto")),
    ("/models/newspicgen", "huggingface", ("/models/newspicgen", "huggingface")),
])
def test_model_source_split(model, source, expected):
    assert launcher.split_model_source(model, source) == expected


@pytest.mark.parametrize("install, has_gpu, expected", [
    (GPU_SGLANG, True, ("sglang", "cuda")),
    (GPU_SGLANG, False, ("local", "cpu")),    # no CPU kernel: SGLang cannot run here
    (CPU_SGLANG, False, ("sglang", "cpu")),   # SGLang's CPU engine
    (NO_SGLANG, True, ("local", "cuda")),
    (NO_SGLANG, False, ("local", "cpu")),
])
def test_auto_picks_sglang_when_it_can_run_here(install, has_gpu, expected):
    assert launcher.choose_engine("auto", "auto", install, has_gpu=lambda: has_gpu) == expected


def test_explicit_cpu_device_wins_over_a_gpu():
    assert launcher.choose_engine("sglang", "cpu", CPU_SGLANG, has_gpu=lambda: True) == ("sglang", "cpu")


def test_sglang_without_sglang_says_where_to_point():
    with pytest.raises(launcher.LaunchError, match="not installed.*--sglang-python.*--engine local"):
        launcher.choose_engine("sglang", "auto", NO_SGLANG, has_gpu=lambda: True)


def test_sglang_without_gpu_or_cpu_kernel_says_what_to_do():
    with pytest.raises(launcher.LaunchError, match="no CPU kernel.*--engine local"):
        launcher.choose_engine("sglang", "cpu", GPU_SGLANG, has_gpu=lambda: False)


def test_probe_reads_a_real_python(tmp_path):
    found = sglang_launch.probe(sys.executable)
    assert found.python == sys.executable
    assert found.version is None or isinstance(found.version, str)
    missing = sglang_launch.probe(str(tmp_path / "no-python"))
    assert missing == SGLangInstall(str(tmp_path / "no-python"), None, False, False)


def test_base_url_shows_a_reachable_host():
    assert child_processes.base_url("0.0.0.0", 30000) == "http://127.0.0.1:30000"
    assert child_processes.base_url("::1", 8080) == "http://[::1]:8080"


def test_importing_the_launcher_stays_light():
    code = ("import sys, prompt_server.launcher, newspicgen.cli; "
            "heavy = [m for m in ('torch', 'transformers', 'llguidance') if m in sys.modules]; "
            "print(heavy); sys.exit(1 if heavy else 0)")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def run_cli(*argv, timeout=120):
    return subprocess.run([sys.executable, "-m", "prompt_server", "serve", *argv], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)


def test_cli_engine_sglang_missing_is_one_clear_line(tmp_path):
    result = run_cli("--engine", "sglang", "--sglang-python", str(tmp_path / "no-python"))
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
        child_processes.wait_until_healthy("http://127.0.0.1:9", [process], timeout=30)


def test_wait_until_healthy_returns_once_health_answers(local_server_url):
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        child_processes.wait_until_healthy(local_server_url, [process], timeout=30)
    finally:
        process.kill()
        process.wait()


def test_wait_until_healthy_times_out_with_the_url():
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        with pytest.raises(launcher.LaunchError, match=r"did not answer http://127\.0\.0\.1:9/health"):
            child_processes.wait_until_healthy("http://127.0.0.1:9", [process], timeout=0.5)
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


@pytest.mark.parametrize("model", ["/data/models/NewsPicGen", "./models/newspicgen", "~/no/such/folder",
                                   "models/qwen/newspicgen"])
def test_a_mistyped_model_folder_says_the_folder_does_not_exist(model, capsys):
    assert launcher.run(parse("--engine", "local", "--model", model)) == 2
    err = capsys.readouterr().err
    assert f"model folder {model!r} does not exist" in err and "blacker521/NewsPicGen" in err


def test_hub_ids_and_existing_folders_pass_the_model_check(tmp_path):
    for model in ("blacker521/NewsPicGen", "modelscope:blacker521/NewsPicGen", str(tmp_path)):
        launcher.check_model_argument(model)


def test_serve_help_documents_every_option():
    parser = build_parser()
    serve = next(action for action in parser._subparsers._group_actions[0].choices.values()
                 if action.prog.endswith("serve"))
    undocumented = [action.dest for action in serve._actions if action.dest != "help" and not action.help]
    assert undocumented == []
