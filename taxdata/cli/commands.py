"""The four command-line programs: their flags and ``main(argv)``, behind scripts and entry points.

``python scripts/<name>.py`` and the installed entry points (``taxdata-update``,
``taxdata-enhanced``, ``taxdata-research``, ``taxdata-raw``) call the same ``main`` here; the
in-code worker defaults live in :data:`DEFAULT_WORKERS` and nowhere else.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from taxdata.cli.common import common_options, common_parser, run_main
from taxdata.store.taxfile import DEFAULT_MAX_CHARS
from taxdata.update.options import UpdateOptions

if TYPE_CHECKING:  # each program imports its own options when it runs (the updater, not these)
    from taxdata.generate.options import EnhancedOptions, RawOptions, ResearchOptions

UPDATER, ENHANCED, RAW, RESEARCH = ("tax_data_updater.py", "generate_enhanced_taxation_files.py",
                                    "generate_taxation_files.py", "research_and_format.py")

# In-code worker defaults per program; -w/--max-workers and TAXDATA_MAX_WORKERS override them.
# None: sequential by design (one request at a time, whatever the environment says).
DEFAULT_WORKERS: dict[str, int | None] = {UPDATER: 4, ENHANCED: 3, RESEARCH: 3, RAW: None}

DESCRIPTIONS = {
    UPDATER: "Update the tax dataset: taxation files -> LLM -> validated records -> tax_data.json "
             "+ taxData.js.",
    ENHANCED: 'Write one standard taxation file per country from its Wikipedia "Taxation in X" '
              "article.",
    RAW: "Fetch raw page text per country through the Web Content Extractor, one request at a "
         "time.",
    RESEARCH: "Have the LLM write taxation files from its own knowledge (marked unverified) for "
              "countries without a usable source.",
}


# The pipelines, imported when a program runs: --help and a usage error load none of their
# modules (HTML parsing, the record models, the HTTP clients).
def _update(*args: Any) -> int:
    from taxdata.update import run

    return run.run(*args)


def _enhanced(*args: Any) -> int:
    from taxdata.generate import enhanced

    return enhanced.run(*args)


def _raw(*args: Any) -> int:
    from taxdata.generate import raw

    return raw.run(*args)


def _research(*args: Any) -> int:
    from taxdata.generate import research

    return research.run(*args)


def _prog(script: str, argv: Sequence[str] | None, prog: str | None) -> str:
    """The name in usage and error lines: the program as started (script or entry point);
    in-process calls with an explicit argv use the script's name."""
    if prog:
        return prog
    return Path(sys.argv[0]).name if argv is None and sys.argv and sys.argv[0] else script


def _parser(script: str, argv: Sequence[str] | None, prog: str | None,
            **kwargs) -> argparse.ArgumentParser:
    return common_parser(_prog(script, argv, prog), DESCRIPTIONS[script],
                         default_workers=DEFAULT_WORKERS[script], **kwargs)


def _add_max_chars(parser: argparse.ArgumentParser, split: str) -> None:
    """``--max-chars`` (the updater and the enhanced generator); ``split`` says how a longer
    source is split."""
    parser.add_argument("--max-chars", type=int, default=DEFAULT_MAX_CHARS, metavar="N",
                        help=f"source characters per request; {split} (default %(default)s)")


def update_main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """tax_data_updater.py / taxdata-update."""
    parser = _parser(UPDATER, argv, prog)
    parser.add_argument("--input-dir", metavar="DIR",
                        help="taxation files (default: <data dir>/taxation)")
    parser.add_argument("--output-dir", metavar="DIR",
                        help="where tax_data.json, taxData.js and reports/ go (default: data dir)")
    parser.add_argument("--import-js", metavar="FILE",
                        help="merge the records of a calculator taxData.js into the dataset "
                             "(parsed, never run; each record validated; others kept)")
    parser.add_argument("--import-only", action="store_true",
                        help="with --import-js: import and write the dataset, no LLM calls")
    parser.add_argument("--prune", action="store_true",
                        help="remove the dataset's countries the registry lacks (without it "
                             "they are kept, with a warning); with --import-js also the ones "
                             "the file lacks (listed, reported REMOVED)")
    _add_max_chars(parser, "longer files are split")
    parser.add_argument("--reference", metavar="FILE.csv",
                        help="cross-check against your reference table too (a territory column "
                             "plus VAT / top income-tax rate columns)")
    parser.add_argument("--reference-column", metavar="KEY=NAME,...",
                        help="with --reference: the columns to read where the headers do not say "
                             "(keys: country, vat, top), e.g. 'vat=Standard Rate (%%)'")
    parser.add_argument("--no-list-reference", action="store_true",
                        help="do not fetch Wikipedia's \"List of countries by tax rates\" to "
                             "cross-check against")
    parser.add_argument("--accept-disputed", action="store_true",
                        help="write records whose VAT or top rate disagrees with a reference "
                             "(the dispute stays in their provenance)")
    parser.add_argument("--discover-countries", action="store_true",
                        help="list the sovereign countries of Wikipedia's list page that have a "
                             "taxation article and are not in the registry; no LLM calls")
    parser.add_argument("--write", action="store_true",
                        help="with --discover-countries: add them to the registry file")
    return run_main(_update, parser, argv,
                    default_workers=DEFAULT_WORKERS[UPDATER], options=_update_options)


def _update_options(args: argparse.Namespace) -> UpdateOptions:
    return UpdateOptions(**common_options(args), input_dir=args.input_dir,
                         output_dir=args.output_dir, import_js=args.import_js,
                         import_only=args.import_only, prune=args.prune,
                         max_chars=args.max_chars, reference=args.reference,
                         reference_columns=args.reference_column,
                         list_reference=not args.no_list_reference,
                         accept_disputed=args.accept_disputed,
                         discover_countries=args.discover_countries, write=args.write)


def enhanced_main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """generate_enhanced_taxation_files.py / taxdata-enhanced."""
    parser = _parser(ENHANCED, argv, prog)
    parser.add_argument("--refresh", action="store_true",
                        help="fetch articles again instead of using the cache")
    parser.add_argument("--latest-revision", action="store_true",
                        help="use each article's latest revision, not the newest one that has "
                             "stood TAXDATA_WIKIPEDIA_MIN_AGE hours (24)")
    parser.add_argument("--from-raw", action="store_true",
                        help="use <data dir>/raw/<slug>.txt (taxdata raw) as the source")
    parser.add_argument("--process-existing", action="store_true",
                        help="reformat the extractor service's saved taxation* files instead")
    parser.add_argument("--list-txt-files", action="store_true",
                        help="list the extractor service's taxation* files and exit")
    _add_max_chars(parser, "longer sources are split on section boundaries")
    return run_main(_enhanced, parser, argv,
                    default_workers=DEFAULT_WORKERS[ENHANCED], options=_enhanced_options)


def _enhanced_options(args: argparse.Namespace) -> EnhancedOptions:
    from taxdata.generate.options import EnhancedOptions

    return EnhancedOptions(**common_options(args), refresh=args.refresh,
                           latest_revision=args.latest_revision, from_raw=args.from_raw,
                           process_existing=args.process_existing,
                           list_txt_files=args.list_txt_files, max_chars=args.max_chars)


def raw_main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """generate_taxation_files.py / taxdata-raw."""
    parser = _parser(RAW, argv, prog, llm=False)
    parser.add_argument("--extractor", choices=("service", "builtin"), default="service",
                        help="service: the Web Content Extractor at TAXDATA_EXTRACTOR_URL; "
                             "builtin: extract in-process (default %(default)s)")
    return run_main(_raw, parser, argv,
                    default_workers=DEFAULT_WORKERS[RAW], options=_raw_options)


def _raw_options(args: argparse.Namespace) -> RawOptions:
    from taxdata.generate.options import RawOptions

    return RawOptions(**common_options(args), extractor=args.extractor)


def research_main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """research_and_format.py / taxdata-research."""
    from taxdata.generate.options import RESEARCH_DEFAULT_CHOICE

    parser = _parser(RESEARCH, argv, prog,
                     countries_default=RESEARCH_DEFAULT_CHOICE)
    parser.add_argument("--missing", action="store_true",
                        help="research every registry country that has no taxation file")
    return run_main(_research, parser, argv,
                    default_workers=DEFAULT_WORKERS[RESEARCH], options=_research_options)


def _research_options(args: argparse.Namespace) -> ResearchOptions:
    from taxdata.generate.options import ResearchOptions

    return ResearchOptions(**common_options(args), missing=args.missing)


MAINS: dict[str, Callable[..., int]] = {UPDATER: update_main, ENHANCED: enhanced_main,
                                        RAW: raw_main, RESEARCH: research_main}
