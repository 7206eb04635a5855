"""The updater's typed options (what tax_data_updater.py's flags say, for Python callers too).

``update.run(UpdateOptions(countries="germany", progress=False), settings)`` does what
``tax_data_updater.py --countries germany --no-progress`` does. Options that cannot work
together are a usage error when they are made, before anything is read or written.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from taxdata.errors import UsageError
from taxdata.options import RunOptions, check_max_chars
from taxdata.store.taxfile import DEFAULT_MAX_CHARS


@dataclass(frozen=True, kw_only=True)
class UpdateOptions(RunOptions):
    """One updater run: where the sources are and the dataset goes, what to import, how to
    cross-check; or, with ``discover_countries``, a registry discovery instead."""

    input_dir: str | Path | None = None  # taxation files (None: <data dir>/taxation)
    output_dir: str | Path | None = None  # tax_data.json, taxData.js, reports/ (None: data dir)
    import_js: str | Path | None = None  # a calculator taxData.js to merge into the dataset
    import_only: bool = False  # with import_js: import and write, no LLM calls
    # Remove the dataset's countries the registry lacks (and, with import_js, the ones the
    # file lacks); without it they are kept, with a warning.
    prune: bool = False
    max_chars: int = DEFAULT_MAX_CHARS  # source characters per request; longer files are split
    reference: str | Path | None = None  # the user's reference table (CSV) to cross-check against
    # Which of its columns hold what, where guessing cannot work: "vat=NAME,top=NAME,country=NAME"
    reference_columns: str | None = None
    list_reference: bool = True  # cross-check against Wikipedia's list of tax rates too
    accept_disputed: bool = False  # write records a reference disputes (VAT or top rate)
    discover_countries: bool = False  # find the registry's missing countries; no LLM calls
    write: bool = False  # with discover_countries: add them to the registry file

    def __post_init__(self) -> None:
        if self.discover_countries:  # a mode of its own: the update flags play no part in it
            return
        if self.write:
            raise UsageError("--write goes with --discover-countries (the updater always "
                             "writes; --dry-run previews)")
        if self.import_only and not self.import_js:
            raise UsageError("--import-only needs --import-js FILE (there is nothing to import)")
        if self.reference_columns and not self.reference:
            raise UsageError("--reference-column needs --reference FILE.csv (it names that "
                             "file's columns)")
        if self.reference_columns:  # only a run given a reference file loads the CSV reader
            from taxdata.references.csvfile import parse_column_spec
            from taxdata.references.table import ReferenceTableError

            try:
                parse_column_spec(self.reference_columns)
            except ReferenceTableError as exc:
                raise UsageError(str(exc)) from None
        check_max_chars(self.max_chars)
