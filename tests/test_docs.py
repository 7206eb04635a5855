"""The documentation stays true: docs/cli.md's --help blocks are the commands' own, the README is
short and CI runs its test command, every setting is documented, the links resolve, and the top
level of the repository is the one the design has."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from _programs import run_main

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
CLI_DOC = DOCS / "cli.md"
# The scripts in scripts/ and the subcommand each one is.
SCRIPTS = {"tax_data_updater.py": "update", "generate_enhanced_taxation_files.py": "generate",
           "generate_taxation_files.py": "raw", "research_and_format.py": "research"}
COMMANDS = ["taxdata", "taxdata doctor", "taxdata run", "taxdata generate", "taxdata research",
            "taxdata update", "taxdata raw", "taxdata demo"]
BLOCK = re.compile(r"(<!-- help: (?P<name>[^>]+?) -->\n```\n)(?P<body>.*?)(```\n<!-- /help -->)",
                   re.S)
# Pages other changes write (issues 14 and 15); linked already, present once they are merged.
ARRIVING = {"grounding.md", "references.md", "llm-servers.md"}
TOP_LEVEL = {"scripts", "taxdata", "tests", "data", "docs", ".ci", "pyproject.toml", "README.md",
             ".env.example", ".gitignore"}


def run_help(program: str, args: list[str]) -> str:
    env = dict(os.environ, COLUMNS="100")  # argparse wraps to the terminal width
    result = run_main(program, [*args, "--help"], env=env, cwd=Path.cwd())
    assert result.returncode == 0, result.stderr
    return result.stdout


def command_help(command: str) -> str:
    """``taxdata update --help`` (in this process)."""
    return run_help("taxdata", command.split()[1:])


def refreshing() -> bool:
    return bool(os.environ.get("UPDATE_DOCS") or os.environ.get("UPDATE_README"))


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
    assert outputs[:-1] == [run_help(script, []) for script in SCRIPTS]


@pytest.mark.parametrize("script", SCRIPTS)
def test_each_script_takes_the_flags_of_its_command(script):
    # Everything after the usage lines is the same: description, options, defaults.
    ours = run_help(script, []).split("\n\n", 1)[1]
    assert ours == command_help(f"taxdata {SCRIPTS[script]}").split("\n\n", 1)[1]


def test_cli_doc_has_a_help_block_per_command():
    assert [m.group("name") for m in BLOCK.finditer(CLI_DOC.read_text())] == COMMANDS


@pytest.mark.parametrize("command", COMMANDS)
def test_cli_doc_help_matches_the_command(command):
    text = CLI_DOC.read_text()
    if refreshing():
        text = BLOCK.sub(lambda m: m.group(1) + (command_help(command)
                                                 if m.group("name") == command
                                                 else m.group("body")) + m.group(4), text)
        CLI_DOC.write_text(text)
    blocks = {m.group("name"): m.group("body") for m in BLOCK.finditer(text)}
    assert blocks[command] == command_help(command), (
        "docs/cli.md --help block is stale: UPDATE_DOCS=1 python -m pytest tests/test_docs.py")


def test_the_readme_is_short_and_has_no_help_dumps():
    text = README.read_text()
    assert len(text.splitlines()) <= 250
    assert "<!-- help:" not in text and "usage: " not in text
    for section in ("## Quick start", "## Try it without a model", "## The pipeline",
                    "## The commands", "## Exit codes", "## Where the rest is"):
        assert section in text
    # the one line an Ollama user needs, in the quick start
    quick = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    assert "TAXDATA_LLM_URL=http://localhost:11434" in quick
    assert "`TAXDATA_LLM_URL=http://localhost:5001/chat` is an Ollama-style proxy" in quick


def test_ci_runs_the_readme_test_command():
    readme_commands = re.findall(r"```bash\n(.*?)\n```", README.read_text(), re.S)
    test_command = next(c for c in readme_commands if "pytest" in c)
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert test_command.strip() in ci_lines


def test_env_example_and_the_configuration_page_document_every_setting():
    from taxdata.config import ENV_VARS

    example = (ROOT / ".env.example").read_text()
    configuration = (DOCS / "configuration.md").read_text()
    for variable in ENV_VARS.values():
        assert re.search(rf"^{variable}=", example, re.M), f"{variable} missing in .env.example"
        assert f"`{variable}`" in configuration, f"{variable} missing in docs/configuration.md"


def test_links_between_the_pages_resolve():
    pages = [README, ROOT / "data" / "README.md", *sorted(DOCS.glob("*.md"))]
    for page in pages:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if re.match(r"[a-z]+://", target):
                continue
            path = (page.parent / target).resolve()
            assert path.exists() or path.name in ARRIVING, f"{page.name}: {target}"


@pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(),
                    reason="not a git checkout")
def test_the_top_level_is_the_design_and_data_keeps_only_its_readme():
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.split()
    assert {path.split("/")[0] for path in tracked} <= TOP_LEVEL
    assert [path for path in tracked if path.startswith("data/")] == ["data/README.md"]
    ignored = subprocess.run(["git", "check-ignore", "data/tax_data.json", "data/taxation/x.md",
                              "data/reports/update-x.html"], cwd=ROOT, capture_output=True,
                             text=True)
    assert len(ignored.stdout.split()) == 3
