"""The README stays true: its --help blocks match the scripts, and CI runs its test command."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from _programs import run_main

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
SCRIPTS = ["tax_data_updater.py", "generate_enhanced_taxation_files.py",
           "generate_taxation_files.py", "research_and_format.py"]
BLOCK = re.compile(r"(<!-- help: (?P<name>\S+) -->\n```\n)(?P<body>.*?)(```\n<!-- /help -->)", re.S)


def help_text(script: str) -> str:
    env = dict(os.environ, COLUMNS="100")  # argparse wraps to the terminal width
    result = run_main(script, ["--help"], env=env, cwd=Path.cwd())
    assert result.returncode == 0, result.stderr
    return result.stdout


# Each script file run as a program, all in one interpreter (runpy, as ``python FILE`` runs it):
# the shells in scripts/ start from a checkout and print the same --help as their main().
_RUN_AS_PROGRAMS = """
import runpy, sys
for path in sys.argv[1:]:
    sys.argv = [path, "--help"]
    try:
        runpy.run_path(path, run_name="__main__")
    except SystemExit as exc:
        print(f"=== exit {exc.code}", flush=True)
"""


def test_scripts_run_as_programs_from_the_checkout():
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["COLUMNS"] = "100"
    result = subprocess.run([sys.executable, "-c", _RUN_AS_PROGRAMS,
                             *(str(ROOT / "scripts" / script) for script in SCRIPTS)],
                            capture_output=True, text=True, env=env, cwd=Path.cwd(), check=True)
    outputs = result.stdout.split("=== exit 0\n")
    assert outputs[-1] == "" and len(outputs) == len(SCRIPTS) + 1, result.stdout
    assert outputs[:-1] == [help_text(script) for script in SCRIPTS]


def test_readme_has_a_help_block_per_script():
    names = [m.group("name") for m in BLOCK.finditer(README.read_text())]
    assert names == SCRIPTS


@pytest.mark.parametrize("script", SCRIPTS)
def test_readme_help_matches_the_script(script):
    text = README.read_text()
    if os.environ.get("UPDATE_README"):
        text = BLOCK.sub(lambda m: m.group(1) + (help_text(m.group("name"))
                                                 if m.group("name") == script else m.group("body"))
                         + m.group(4), text)
        README.write_text(text)
    blocks = {m.group("name"): m.group("body") for m in BLOCK.finditer(text)}
    assert blocks[script] == help_text(script), (
        "README --help block is stale: UPDATE_README=1 python -m pytest tests/test_docs.py")


def test_ci_runs_the_readme_test_command():
    readme_commands = re.findall(r"```bash\n(.*?)\n```", README.read_text(), re.S)
    test_command = next(c for c in readme_commands if "pytest" in c)
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert test_command.strip() in ci_lines


def test_env_example_documents_every_setting():
    from taxdata.config import ENV_VARS

    example = (ROOT / ".env.example").read_text()
    readme = README.read_text()
    for variable in ENV_VARS.values():
        assert re.search(rf"^{variable}=", example, re.M), f"{variable} missing in .env.example"
        assert f"`{variable}`" in readme, f"{variable} missing in the README table"
