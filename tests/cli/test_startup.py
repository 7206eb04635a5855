"""Start-up: each program imports what it uses when it uses it (counted in a fresh interpreter).

``--help`` of every program loads no HTML parser (bs4, soupsieve, lxml), no pydantic models, no
HTTP client and no pipeline module; the updater never loads the HTML parser unless it parses
HTML (a run without the list page reads none), python-dotenv unless there is a ``.env`` file, or
the CSV reference reader unless it is given a reference file.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from taxdata.testing.llm_server import StandInLLM
from tests._updater import ROOT, put_taxation, reply, script_env

HEAVY = ("bs4", "soupsieve", "lxml", "pydantic", "requests", "urllib3", "tqdm",
         "taxdata.record.models", "taxdata.update.run", "taxdata.clients.llm",
         "taxdata.evidence.grounding")

# Runs a program's main in a fresh interpreter and prints, at exit, the modules it loaded.
_PROBE = """
import atexit, json, sys
atexit.register(lambda: print("MODULES " + json.dumps(sorted(sys.modules)), flush=True))
from {module} import {main} as main
sys.argv[0] = {prog!r}
sys.exit(main({argv!r}))
"""

PROGRAMS = {
    "tax_data_updater.py --help": ("taxdata.cli.commands", "update_main", ["--help"]),
    "generate_enhanced_taxation_files.py --help": ("taxdata.cli.commands", "enhanced_main",
                                                   ["--help"]),
    "generate_taxation_files.py --help": ("taxdata.cli.commands", "raw_main", ["--help"]),
    "research_and_format.py --help": ("taxdata.cli.commands", "research_main", ["--help"]),
    "taxdata --help": ("taxdata.cli.main", "main", ["--help"]),
    "taxdata update --help": ("taxdata.cli.main", "main", ["update", "--help"]),
    "taxdata doctor --help": ("taxdata.cli.main", "main", ["doctor", "--help"]),
    "taxdata run --help": ("taxdata.cli.main", "main", ["run", "--help"]),
}


def loaded_modules(module: str, main: str, argv: list[str], env=None, cwd=ROOT) -> set[str]:
    code = _PROBE.format(module=module, main=main, prog="probe", argv=argv)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=60)
    [line] = [line for line in proc.stdout.splitlines() if line.startswith("MODULES ")]
    return set(json.loads(line.split(" ", 1)[1]))


def _heavy(modules: set[str]) -> list[str]:
    return sorted(name for name in HEAVY if name in modules)


@pytest.mark.parametrize("program", list(PROGRAMS))
def test_help_loads_none_of_the_heavy_modules(program):
    modules = loaded_modules(*PROGRAMS[program])
    assert _heavy(modules) == []
    assert "taxdata.cli.commands" in modules or "taxdata.cli.doctor" in modules or \
        program == "taxdata --help"  # the probe did run the program


def test_an_update_run_without_html_never_imports_the_html_parser(tmp_path):
    data = tmp_path / "data"
    (data / "taxation").mkdir(parents=True)
    put_taxation(data, "germany", generic=True)
    with StandInLLM() as server:
        server.responder = lambda body: reply("germany")
        modules = loaded_modules("taxdata.cli.commands", "update_main",
                                 ["--no-progress", "--no-list-reference", "--countries",
                                  "germany"], env=script_env(data, server.url("proxy")),
                                 cwd=tmp_path)
        assert len([b for b in server.chats if "Germany" in json.dumps(b)]) >= 1  # it ran
    assert "taxdata.update.run" in modules and "pydantic" in modules
    assert [name for name in ("bs4", "soupsieve", "lxml") if name in modules] == []
    # No bar drawn (--no-progress), no CSV reference read: neither tqdm nor the country facts
    # (pycountry, babel, countryinfo) are loaded.
    assert [name for name in ("tqdm", "pycountry", "babel", "countryinfo",
                              "taxdata.countries.facts") if name in modules] == []
    # No .env in the working directory, no --reference file: neither python-dotenv nor the CSV
    # reader is loaded.
    assert [name for name in ("dotenv", "taxdata.references.csvfile") if name in modules] == []


def test_a_dotenv_file_is_still_read_and_a_reference_file_still_loads_the_csv_reader(tmp_path):
    data = tmp_path / "data"
    (data / "taxation").mkdir(parents=True)
    put_taxation(data, "germany", generic=True)
    reference = tmp_path / "reference.csv"  # FIXTURE: a made-up reference row
    reference.write_text("Country,VAT\nGermany,17\n", encoding="utf-8")
    with StandInLLM() as server:
        server.responder = lambda body: reply("germany")
        env = script_env(data, server.url("proxy"))
        # The URL comes from .env only: the run reaching the stand-in proves the file was read.
        (tmp_path / ".env").write_text(f"TAXDATA_LLM_URL={env.pop('TAXDATA_LLM_URL')}\n",
                                       encoding="utf-8")
        modules = loaded_modules("taxdata.cli.commands", "update_main",
                                 ["--no-progress", "--no-list-reference", "--countries",
                                  "germany", "--reference", str(reference),
                                  "--reference-column", "vat=VAT"], env=env, cwd=tmp_path)
        assert len([b for b in server.chats if "Germany" in json.dumps(b)]) >= 1  # it ran
    assert "dotenv" in modules and "taxdata.references.csvfile" in modules
