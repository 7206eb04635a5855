"""The real-server benchmark: N FIXTURE countries through both LLM steps against any running server
(``python -m taxdata.bench --server URL``), beside a lean baseline of one plain request per step.

Step ``format`` is the generators' (:class:`~taxdata.generate.formatter.Formatter`: a FIXTURE
article to a taxation file), step ``extract`` the updater's
(:class:`~taxdata.update.extract.Extractor`: that file to a validated, evidence-checked record),
both with their real prompts, re-asks, splitting and client, on ``--workers`` threads. The lean
baseline sends, per country and step, one request: a one-paragraph instruction and the same
source, the schema in the server's own structured-output form for ``extract``; no re-ask.

Step 2 reads the file step 1 wrote; where a weak model's step 1 wrote none, the file the rule-based
stand-in writes from the same article (by code, from the figures it states), so that both steps
are measured for every country.

Per step and side it prints requests, prompt and completion tokens and seconds per country, the
prefix-cache share where the server reports it, how many countries came through, and the
instructions per request (prompt tokens minus the source's). Token figures are the server's usage
where it sends them; a server whose streams carry none (llama-cpp-python) is asked to count with
its own tokenizer (``/extras/tokenize/count``, llama.cpp's ``/tokenize``); failing both, they are
estimated at 4 characters a token, and the report says which.
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import requests

from taxdata.bench.articles import fixture_article, fixture_countries
from taxdata.clients.llm import ChatReply, LLMClient, LLMError
from taxdata.clients.serverinfo import root_url
from taxdata.config import Settings
from taxdata.countries.registry import Country
from taxdata.events import RequestEnded, recording
from taxdata.generate.formatter import FormatError, Formatter
from taxdata.runner import run_tasks
from taxdata.store.taxfile import SECTIONS
from taxdata.testing.responder import taxation_file
from taxdata.update.extract import ExtractionFailed, Extractor

LEAN_FORMAT = ("Rewrite this article about taxation in {name} as a markdown file with the "
               "sections " + ", ".join(SECTIONS) + ". Use only facts from the article.")
LEAN_EXTRACT = "Extract the personal tax facts of {name} from this text as JSON."
GOAL_PROMPT_RATIO, GOAL_REQUESTS = 1.2, 1.1


@dataclass
class Call:
    """One chat: which step and side, the source it carried, what the server counted."""

    step: str
    side: str
    source: str
    prompt: str  # every message's text, for a count when the server gives none
    reask: bool  # it continues a conversation (its prompt holds an earlier reply)
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached_tokens: int | None = None
    counted_by: str = "usage"  # usage | tokenizer | estimate
    text: str = ""
    failed: bool = False


class MeasuredClient(LLMClient):
    """The real client, keeping what each chat sent and got (for the figures)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls: list[Call] = []
        self.phase = ("", "")
        self._calls_lock = threading.Lock()

    def chat(self, messages: Any, **kwargs: Any) -> ChatReply:  # type: ignore[override]
        contents = [str(m.get("content", "")) for m in messages]
        user = next((c for m, c in zip(messages, contents) if m.get("role") == "user"), "")
        if "<<<\n" in user:  # ours: the source between the markers
            source = user.split("<<<\n", 1)[1].rsplit("\n>>>", 1)[0]
        else:  # the lean baseline: the source after the one-paragraph instruction
            source = user.split("\n\n", 1)[-1]
        call = Call(*self.phase, source, "\n".join(contents),
                    any(m.get("role") == "assistant" for m in messages))
        try:
            reply = super().chat(messages, **kwargs)
        except LLMError as exc:
            call.failed, call.text = True, getattr(exc, "text", "")
            with self._calls_lock:
                self.calls.append(call)
            raise
        call.prompt_tokens, call.completion_tokens = reply.prompt_tokens, reply.completion_tokens
        call.cached_tokens, call.text = reply.cached_tokens, reply.text
        with self._calls_lock:
            self.calls.append(call)
        return reply


@dataclass
class Side:
    """One step of one side, per country."""

    requests: float
    prompt_tokens: float
    first_prompt_tokens: float  # of the first asks only (re-asks carry a reply back)
    completion_tokens: float
    seconds: float
    cached_share: float | None
    instructions: float  # prompt tokens per request beyond the source's
    succeeded: int
    countries: int


@dataclass
class ServerBench:
    url: str
    dialect: str
    model: str
    countries: int
    workers: int
    form: str
    context: str
    counted_by: str
    steps: dict[str, dict[str, Side]] = field(default_factory=dict)
    timeouts: int = 0
    closed_by_client: int = 0
    endpoints: list[str] = field(default_factory=list)  # the client's line per endpoint

    def ratio(self, what: str) -> float:
        ours = sum(getattr(s["ours"], what) for s in self.steps.values())
        lean = sum(getattr(s["lean"], what) for s in self.steps.values())
        return ours / lean if lean else float("nan")

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["prompt_ratio"] = self.ratio("prompt_tokens")
        data["first_ask_prompt_ratio"] = self.ratio("first_prompt_tokens")
        data["requests_per_country"] = sum(s["ours"].requests for s in self.steps.values()) / 2
        return data


class _Counter:
    """Token counts for calls whose stream carried no usage: the server's tokenizer, if any."""

    def __init__(self, session: requests.Session, url: str) -> None:
        self.session, self.root = session, root_url(url)
        self.way: Callable[[str], int | None] | None = None
        for way in (self._llama_cpp_python, self._llama_cpp):
            try:
                if way("probe") is not None:
                    self.way = way
                    break
            except (requests.RequestException, ValueError, KeyError, TypeError):
                continue

    def _llama_cpp_python(self, text: str) -> int | None:
        response = self.session.post(self.root + "/extras/tokenize/count", json={"input": text},
                                     timeout=(5, 30))
        return int(response.json()["count"]) if response.status_code == 200 else None

    def _llama_cpp(self, text: str) -> int | None:
        response = self.session.post(self.root + "/tokenize", json={"content": text},
                                     timeout=(5, 30))
        return len(response.json()["tokens"]) if response.status_code == 200 else None

    def count(self, text: str) -> tuple[int, str]:
        if self.way is not None:
            counted = self.way(text)
            if counted is not None:
                return counted, "tokenizer"
        return max(1, len(text) // 4), "estimate"

    def fill(self, call: Call, prompt_text: str) -> None:
        if call.prompt_tokens is None:
            call.prompt_tokens, call.counted_by = self.count(prompt_text)
        if call.completion_tokens is None:
            call.completion_tokens = self.count(call.text)[0] if call.text else 0


def run_server_bench(settings: Settings, countries: int, article_chars: int,
                     say: Callable[[str], None]) -> ServerBench:
    """Both steps, ours then the lean baseline, for ``countries`` FIXTURE countries."""
    client = MeasuredClient.from_settings(settings)
    assert isinstance(client, MeasuredClient)
    formatter = Formatter(client, max_reasks=settings.max_reasks)
    extractor = Extractor(client, max_reasks=settings.max_reasks)
    need = formatter.need().merged(extractor.need())
    model = client.preflight(need=need)
    formatter.max_chars = extractor.max_chars = client.plan_context(need)
    extractor.probe()
    endpoint = client.endpoints[0]
    form = client.forms.current(endpoint.url, endpoint.dialect)
    window = client.window(endpoint)
    context = (f"{window} tokens" if window else "not stated by the server") + (
        f" (num_ctx sent: {client.num_ctx})" if client.num_ctx else "")
    say(f"server {endpoint.url} ({endpoint.dialect.name}), model {model}; structured output "
        f"{form!r}; context {context}; {countries} FIXTURE countries, -w {settings.max_workers}")
    fixtures = {c.slug: c for c in fixture_countries(countries)}
    articles = {slug: fixture_article(c, article_chars) for slug, c in fixtures.items()}
    bench = ServerBench(endpoint.url, endpoint.dialect.name, model, countries,
                        settings.max_workers, form, context, "usage")
    files: dict[str, str] = {}
    with recording() as recorder:
        runs = {}
        runs[("format", "ours")] = _step(client, ("format", "ours"), fixtures, settings, say,
                                         lambda c: _format(formatter, c, articles, files))
        for slug, country in fixtures.items():  # a weak model's step 1 must not hide step 2
            if slug not in files:
                files[slug] = taxation_file(country.name, articles[slug])
        fallback = countries - runs[("format", "ours")][1]
        if fallback:
            say(f"  step 2 reads the code-written file of the {fallback} countr"
                f"{'y' if fallback == 1 else 'ies'} the model's step 1 did not write")
        ok = fixtures
        runs[("extract", "ours")] = _step(client, ("extract", "ours"), ok, settings, say,
                                          lambda c: _extract(extractor, c, files))
        runs[("format", "lean")] = _step(client, ("format", "lean"), fixtures, settings, say,
                                         lambda c: _lean_format(client, c, articles))
        runs[("extract", "lean")] = _step(client, ("extract", "lean"), ok, settings, say,
                                          lambda c: _lean_extract(client, extractor, c, files))
    ended = [e for e in recorder.events if isinstance(e, RequestEnded)]
    bench.timeouts = sum("timeout" in e.reason.lower() for e in ended)
    bench.closed_by_client = sum(e.answer == "cut" for e in ended)
    _figures(bench, client, runs, len(fixtures))
    bench.endpoints = client.endpoint_summary()
    return bench


def _step(client: MeasuredClient, phase: tuple[str, str], countries: dict[str, Country],
          settings: Settings, say: Callable[[str], None],
          work: Callable[[Country], bool]) -> tuple[float, int]:
    client.phase = phase
    started = time.monotonic()
    summary = run_tasks(list(countries), lambda slug: work(countries[slug]),
                        max_workers=settings.max_workers, progress=False,
                        what=f"{phase[0]} ({phase[1]})", clear_stop=True)
    if summary.interrupted:
        raise KeyboardInterrupt
    seconds = time.monotonic() - started
    done = sum(1 for r in summary.results.values() if r.ok and r.value)
    say(f"  {phase[0]:<8} {phase[1]:<5} {done}/{len(countries)} countries came through "
        f"in {seconds:.1f}s")
    return seconds, done


def _format(formatter: Formatter, country: Country, articles: dict[str, str],
            files: dict[str, str]) -> bool:
    try:
        result = formatter.from_source(country, articles[country.slug],
                                       f'FIXTURE article "Taxation in {country.name}"')
    except (LLMError, FormatError):  # the model's doing: counted, not raised
        return False
    files[country.slug] = result.body
    return True


def _extract(extractor: Extractor, country: Country, files: dict[str, str]) -> bool:
    try:
        extractor.extract(country, files[country.slug], check_quotes=True)
    except ExtractionFailed:
        return False
    return True


def _lean_format(client: LLMClient, country: Country, articles: dict[str, str]) -> bool:
    prompt = LEAN_FORMAT.format(name=country.name) + "\n\n" + articles[country.slug]
    try:
        client.chat([{"role": "user", "content": prompt}], label=f"Lean format {country.slug}",
                    max_tokens=2048)
    except LLMError:
        return False
    return True


def _lean_extract(client: LLMClient, extractor: Extractor, country: Country,
                  files: dict[str, str]) -> bool:
    prompt = LEAN_EXTRACT.format(name=country.name) + "\n\n" + files[country.slug]
    try:
        client.chat([{"role": "user", "content": prompt}], schema=extractor.schema,
                    schema_text=extractor.outline, label=f"Lean extract {country.slug}",
                    max_tokens=extractor.reply_tokens)
    except LLMError:
        return False
    return True


def _figures(bench: ServerBench, client: MeasuredClient,
             runs: dict[tuple[str, str], tuple[float, int]], countries: int) -> None:
    counter = _Counter(client.session, client.url)
    ways = set()
    for call in client.calls:
        if call.prompt_tokens is None or call.completion_tokens is None:
            counter.fill(call, call.prompt)
            ways.add(call.counted_by)
    bench.counted_by = "server usage" if not ways else (
        "the server's tokenizer (its streams carry no usage)" if ways == {"tokenizer"}
        else "estimated at 4 characters a token (no usage, no tokenizer)")
    for (step, side), (wall, done) in runs.items():
        calls = [c for c in client.calls if (c.step, c.side) == (step, side)]
        n = max(countries, 1)
        prompt = sum(c.prompt_tokens or 0 for c in calls)
        cached = [c.cached_tokens for c in calls if c.cached_tokens is not None]
        bench.steps.setdefault(step, {})[side] = Side(
            requests=len(calls) / n, prompt_tokens=prompt / n,
            first_prompt_tokens=sum(c.prompt_tokens or 0 for c in calls if not c.reask) / n,
            completion_tokens=sum(c.completion_tokens or 0 for c in calls) / n,
            seconds=wall / n, cached_share=(sum(cached) / prompt) if cached and prompt else None,
            instructions=_instructions(calls, counter), succeeded=done, countries=countries)


def _instructions(calls: list[Call], counter: _Counter) -> float:
    """Prompt tokens per first ask beyond its source's (a re-ask also carries a reply back)."""
    firsts = [c for c in calls if not c.reask and c.prompt_tokens]
    if not firsts:
        return 0.0
    extra = 0.0
    for call in firsts:
        if counter.way is not None:
            source = counter.count(call.source)[0]
        else:  # the share of the prompt's characters that the source is, in its tokens
            source = call.prompt_tokens * len(call.source) / max(len(call.prompt), 1)
        extra += call.prompt_tokens - source
    return extra / len(firsts)


def report(bench: ServerBench) -> str:
    lines = [f"Real-server benchmark: {bench.url} ({bench.dialect} API), model {bench.model}",
             f"  {bench.countries} FIXTURE countries, -w {bench.workers}; structured output "
             f"{bench.form!r}; context {bench.context}",
             f"  token figures: {bench.counted_by}", "",
             f"{'step':<8} {'side':<5} {'req/country':>11} {'prompt tok':>10} "
             f"{'compl. tok':>10} {'s/country':>9} {'cached':>7} {'instr./req':>10} {'ok':>6}"]
    for step, sides in bench.steps.items():
        for side, s in sides.items():
            cached = "n/a" if s.cached_share is None else f"{s.cached_share:.0%}"
            lines.append(f"{step:<8} {side:<5} {s.requests:>11.2f} {s.prompt_tokens:>10,.0f} "
                         f"{s.completion_tokens:>10,.0f} {s.seconds:>9.1f} {cached:>7} "
                         f"{s.instructions:>10,.0f} {s.succeeded:>3}/{s.countries}")
    ratio = bench.ratio("prompt_tokens")
    requests_per_country = sum(s["ours"].requests for s in bench.steps.values()) / 2
    lines += ["",
              f"prompt tokens per country, ours / lean: {ratio:.2f}x (goal <= "
              f"{GOAL_PROMPT_RATIO}x: {'met' if ratio <= GOAL_PROMPT_RATIO else 'missed'}); "
              f"first asks only (no re-asks): {bench.ratio('first_prompt_tokens'):.2f}x",
              f"requests per country and step, ours: {requests_per_country:.2f} (goal <= "
              f"{GOAL_REQUESTS} on clean fixtures: "
              f"{'met' if requests_per_country <= GOAL_REQUESTS else 'missed'})",
              f"timeouts: {bench.timeouts}; replies the client closed (timeout or Ctrl-C): "
              f"{bench.closed_by_client}"]
    lines += [f"LLM {line}" for line in bench.endpoints]
    return "\n".join(lines)
