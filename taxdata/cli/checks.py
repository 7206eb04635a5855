"""The checks of ``taxdata doctor``: is this set-up ready for a run? Every setting and where it
came from, then one line per check with a mark and the fix.

Each check is a small function ``check_x(setup) -> Iterator[Check]`` in :data:`CHECKS`, run in
order; a check may leave what it found on the :class:`Setup` for the ones after it (the LLM
checks share the resolved servers and the client). Adding a check is adding a function to the
list. Exit code: 0 when every check passes, 1 when one fails, 2 when the settings themselves
cannot be read (as any program would stop on them).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import requests

from taxdata import __version__
from taxdata.clients.address import Address, no_answer, resolve
from taxdata.clients.context import source_chars
from taxdata.clients.http import make_session
from taxdata.clients.llm import DIALECTS, Endpoint, LLMClient, LLMError, model_listed
from taxdata.clients.wikipedia import WikipediaClient
from taxdata.config import DEFAULT_USER_AGENT, ENV_VARS, Settings, load_settings
from taxdata.countries.registry import load_registry
from taxdata.errors import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    PreflightError,
    TaxdataError,
    first_line,
)
from taxdata.log import setup_logging
from taxdata.record.schema import extraction_json_schema
from taxdata.store.datadir import DataDir
from taxdata.store.taxfile import DEFAULT_MAX_CHARS
from taxdata.update.extract import Extractor


@dataclass(frozen=True)
class Check:
    """One checked thing: passed or not, what was found, and the fix (or a note)."""

    ok: bool
    found: str
    hint: str = ""


@dataclass
class Setup:
    """What the checks look at, and what earlier checks found for later ones."""

    settings: Settings
    sources: dict[str, str]
    session: requests.Session = field(default_factory=make_session)
    addresses: list[Address] = field(default_factory=list)  # the servers that resolved
    client: LLMClient | None = None  # over those servers, once they answered
    models: dict[str, list[str]] = field(default_factory=dict)  # chat URL -> models listed


def _failed(message: str) -> Check:
    """A failed check from an error message written as ``what - fix``."""
    found, _, hint = message.partition(" - ")
    return Check(False, found, hint)


def check_llm_address(setup: Setup) -> Iterator[Check]:
    """Each server of TAXDATA_LLM_URL: which API it speaks, its chat URL."""
    settings = setup.settings
    for url in settings.llm_urls:
        try:
            address = resolve(url, settings.llm_api, session=setup.session,
                              timeout=settings.connect_timeout)
        except TaxdataError as exc:
            yield _failed(first_line(exc))
            continue
        setup.addresses.append(address)
        yield Check(True, f"LLM server {address.describe()}")


def check_llm_models(setup: Setup) -> Iterator[Check]:
    """Each resolved server answers its model list, and has the model."""
    settings = setup.settings
    endpoints = [Endpoint(a.chat_url, DIALECTS[a.dialect]) for a in setup.addresses]
    if not endpoints:
        return
    client = LLMClient(endpoints, model=settings.model, api_key=settings.api_key,
                       timeout=settings.timeout, connect_timeout=settings.connect_timeout,
                       session=setup.session, idle_timeout=settings.idle_timeout,
                       deadline=settings.request_deadline,
                       max_reply_bytes=settings.max_reply_bytes,
                       num_ctx=settings.num_ctx or None)
    for endpoint in endpoints:
        started = time.monotonic()
        try:
            names = client.list_models(endpoint, timeout=settings.connect_timeout)
        except requests.RequestException as exc:
            yield _failed(no_answer(endpoint.url, exc, endpoint.models_url, endpoint.dialect.name,
                                    settings.connect_timeout))
            continue
        except LLMError as exc:
            yield Check(False, f"LLM server at {endpoint.url}: GET {endpoint.models_url} gave "
                               f"{first_line(exc)}", "check TAXDATA_LLM_URL, TAXDATA_LLM_API "
                               "and TAXDATA_API_KEY")
            continue
        setup.models[endpoint.url] = names
        seconds = time.monotonic() - started
        if not names:
            yield Check(False, f"LLM server at {endpoint.url} lists no models",
                        _pull_hint(endpoint, "a model, e.g. qwen2.5:7b"))
            continue
        yield Check(True, f"LLM server at {endpoint.url} answers: {len(names)} model"
                          f"{'' if len(names) == 1 else 's'} listed in {seconds:.2f}s")
        yield _model_check(settings.model, endpoint, names)
    if len(setup.models) == len(endpoints):
        if not client.model:  # what a run would use: the first model the server lists
            client.model = setup.models[endpoints[0].url][0]
        setup.client = client


def check_llm_context(setup: Setup) -> Iterator[Check]:
    """Each server's context size against what an update request needs (instructions, a source
    part of --max-chars, the reply cap): the run's num_ctx, or how small sources are split."""
    client = setup.client
    if client is None:
        return
    need = Extractor(client, DEFAULT_MAX_CHARS).need()
    wanted = f"~{need.tokens:,} tokens for a {need.source_chars:,}-character source part"
    try:
        for endpoint in client.endpoints:
            client.context_size(endpoint)
        client.plan_context(need)  # the run's num_ctx, as its preflight would fix it
    except (LLMError, requests.RequestException) as exc:
        yield Check(False, f"context size: not found ({first_line(exc)})",
                    "set TAXDATA_NUM_CTX to the server's context size")
        return
    except PreflightError:
        pass  # said per server below
    for endpoint in client.endpoints:
        window = client.window(endpoint)
        try:
            fits = source_chars(window, need, endpoint.url)
        except PreflightError as exc:
            yield Check(False, f"context at {endpoint.url}: {first_line(exc)}")
            continue
        if window is None:
            yield Check(True, f"context at {endpoint.url}: the server does not say its size; a "
                              f"run needs {wanted}",
                        "set TAXDATA_NUM_CTX to it (else the first request that overflows "
                        "tells the run, which then splits the source smaller)")
        elif fits < need.source_chars:
            yield Check(True, f"context at {endpoint.url}: {window:,} tokens, less than "
                              f"{wanted}: sources go in parts of {fits:,} characters",
                        "more requests per country; a larger context sends fewer")
        else:
            yield Check(True, f"context at {endpoint.url}: {window:,} tokens hold {wanted}")


def check_llm_forms(setup: Setup) -> Iterator[Check]:
    """Which structured-output form each server takes for the updater's schema (one tiny request
    per form tried, as a run's preflight does)."""
    client = setup.client
    if client is None:
        return
    schema = extraction_json_schema()
    for endpoint in client.endpoints:
        try:
            form = client.probe_form(endpoint, schema)
        except (LLMError, requests.RequestException) as exc:
            yield Check(False, f"structured output at {endpoint.url}: the probe failed "
                               f"({first_line(exc)})", "check the server's log")
            continue
        if form == "none":
            yield Check(True, f"structured output at {endpoint.url}: no form accepted; the "
                              "schema goes in the prompt",
                        "replies are validated either way; a server that takes a JSON schema "
                        "(Ollama's format, llama.cpp's json_schema) gives fewer invalid replies")
        else:
            yield Check(True, f"structured output at {endpoint.url}: {form!r} accepted")


def _pull_hint(endpoint: Endpoint, model: str) -> str:
    if endpoint.dialect.name in ("ollama", "proxy"):
        return f"pull it (ollama pull {model})"
    return "load a model into the server"


def _model_check(model: str, endpoint: Endpoint, names: list[str]) -> Check:
    shown = ", ".join(names[:8]) + (f", ... ({len(names)} in all)" if len(names) > 8 else "")
    if not model:
        return Check(True, f"no model set: runs use {names[0]!r}, the first the server lists",
                     "set TAXDATA_MODEL (or --model) to choose one of: " + shown)
    if model_listed(model, names):
        return Check(True, f"model {model!r} is at {endpoint.url}")
    return Check(False, f"model {model!r} not at {endpoint.url} (available: {shown})",
                 f"{_pull_hint(endpoint, model)}, or set TAXDATA_MODEL to one listed")


def check_registry(setup: Setup) -> Iterator[Check]:
    """The country registry loads (the bundled one, or TAXDATA_COUNTRIES / the data dir's)."""
    settings = setup.settings
    try:
        registry = load_registry(settings.countries_file, data_dir=settings.data_dir)
    except TaxdataError as exc:
        yield _failed(first_line(exc))
        return
    yield Check(True, f"country registry: {len(registry)} countries ({registry.source})")


def check_wikipedia(setup: Setup) -> Iterator[Check]:
    """The MediaWiki API answers (the generator's sources, the updater's list reference)."""
    settings = setup.settings
    try:
        client = WikipediaClient(settings.wikipedia_api, settings.user_agent)
        client.check(settings.connect_timeout)
    except ValueError as exc:  # a User-Agent without contact details
        yield Check(False, f"TAXDATA_USER_AGENT: {exc}", "name yourself with a URL or e-mail")
        return
    except TaxdataError as exc:
        yield _failed(first_line(exc))
        return
    note = ("Wikimedia asks every client to name its operator: set TAXDATA_USER_AGENT, e.g. "
            "'taxdata/0.1 (https://example.org/you; you@example.org)'"
            if settings.user_agent == DEFAULT_USER_AGENT else "")
    yield Check(True, f"Wikipedia answers at {settings.wikipedia_api}", note)


def check_data_dir(setup: Setup) -> Iterator[Check]:
    """The data directory takes a real write, and no run holds it."""
    data = DataDir(setup.settings.data_dir)
    try:
        data.check_writable()
        data.acquire_run_lock("taxdata doctor")  # taken and given back at once: not in use
        data.release_run_lock()
    except TaxdataError as exc:
        yield _failed(first_line(exc))
        return
    taxation = data.path("taxation")
    files = len(list(taxation.glob("*.md"))) if taxation.is_dir() else 0
    dataset = "tax_data.json there" if data.path("tax_data.json").is_file() else \
        "no tax_data.json yet"
    yield Check(True, f"data directory {data.root}: writable, not in use ({files} taxation "
                      f"file{'' if files == 1 else 's'}, {dataset})")


# The checks, in order (later ones may use what earlier ones found on the Setup).
CHECKS: list[Callable[[Setup], Iterator[Check]]] = [
    check_llm_address, check_llm_models, check_llm_context, check_llm_forms, check_wikipedia,
    check_registry, check_data_dir]


_UNSET = {"model": "(none: the server's first)", "log_file": "(none)",
          "countries_file": "(none: <data dir>/countries.json if there, else the bundled one)"}


def _shown(name: str, value: object) -> str:
    if name == "api_key":
        return "(set, not shown)" if value else "(not set)"
    if value in (None, ""):
        return _UNSET.get(name, "(none)")
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def _source(name: str, value: object, sources: dict[str, str]) -> str:
    source = sources.get(name, "default")
    if name == "llm_api" and source == "default":  # "auto" on load: the URL said, or asked
        return ("default auto: asked of the server" if value == "auto"
                else "default auto: from the URL")
    return source


def print_settings(settings: Settings, sources: dict[str, str], out) -> None:
    print("Settings (a flag wins over the environment, the environment over .env, .env over "
          "the default):", file=out)
    width = max(map(len, ENV_VARS.values()))
    for name, env in ENV_VARS.items():
        value = getattr(settings, name)
        print(f"  {env:<{width}}  {_shown(name, value):<36}  {_source(name, value, sources)}",
              file=out)


def run_checks(setup: Setup, out, *, quiet: bool = False,
               checks: Sequence[Callable[[Setup], Iterator[Check]]] = CHECKS) -> int:
    """Run ``checks``, one line each; the exit code (0: all passed)."""
    good, bad = _marks(out)
    results = []
    for check in checks:
        for result in check(setup):
            results.append(result)
            if quiet and result.ok:
                continue
            line = f"  {good if result.ok else bad} {result.found}"
            print(line + (f" - {result.hint}" if result.hint else ""), file=out)
    failed = sum(not r.ok for r in results)
    print(f"\n{failed} of {len(results)} checks failed." if failed
          else f"\nAll {len(results)} checks passed.", file=out)
    return EXIT_FAILED if failed else EXIT_OK


def _marks(out) -> tuple[str, str]:
    """✔ and ✘, or words where the terminal cannot show them."""
    try:
        "\u2714\u2718".encode(getattr(out, "encoding", None) or "utf-8")
    except (UnicodeEncodeError, LookupError):
        return "OK  ", "FAIL"
    return "\u2714", "\u2718"


def run(args: argparse.Namespace, prog: str) -> int:
    """The checks of ``taxdata doctor`` with its parsed flags (see :mod:`taxdata.cli.doctor`)."""
    sources: dict[str, str] = {}
    out = sys.stdout
    print(f"{prog} (taxdata {__version__}, in {Path.cwd()})\n", file=out)
    try:
        settings = load_settings({"llm_url": args.llm_url, "llm_api": args.llm_api,
                                  "model": args.model, "data_dir": args.data_dir},
                                 defaults={"max_workers": 4}, sources=sources)
    except (TaxdataError, UnicodeDecodeError) as exc:
        print(f"  {_marks(out)[1]} settings: {exc}", file=out)
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    setup_logging("DEBUG" if args.verbose else "WARNING")
    if not args.quiet:
        print_settings(settings, sources, out)
    print("\nChecks:", file=out)
    setup = Setup(settings, sources)
    if settings.api_key:  # the servers' questions need it too
        setup.session.headers["Authorization"] = f"Bearer {settings.api_key}"
    with setup.session:
        return run_checks(setup, out, quiet=args.quiet)
