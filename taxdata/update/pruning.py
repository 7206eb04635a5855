"""Nothing removed without being asked: the dataset's countries the registry lacks.

A run whose registry lacks countries ``tax_data.json`` holds (another registry, a forgotten
``TAXDATA_COUNTRIES``, a country taken out of the registry file) keeps them in ``tax_data.json``
and ``taxData.js`` and says so once; ``--prune`` removes them (REMOVED).
"""

from __future__ import annotations

from taxdata.countries.registry import Registry
from taxdata.log import logger
from taxdata.outcome import Status
from taxdata.store.datasetfile import DATASET_FILE
from taxdata.update.dataset import JS_FILE, DatasetStore
from taxdata.update.outcome import CountryOutcome


def keep_or_prune(store: DatasetStore, registry: Registry, prune: bool
                  ) -> dict[str, CountryOutcome]:
    """Keep (SKIPPED, one warning) or, with ``prune``, remove (REMOVED) the dataset's countries
    that ``registry`` lacks; their outcomes."""
    unknown = [slug for slug in store.slugs() if not registry.has_slug(slug)]
    if not unknown:
        return {}
    noun = "country" if len(unknown) == 1 else "countries"
    shown = ", ".join(unknown[:10]) + (f" and {len(unknown) - 10} more"
                                       if len(unknown) > 10 else "")
    outcomes = {}
    if prune:
        logger.warning("[PRUNE] %d %s not in the country registry %s removed: %s",
                       len(unknown), noun, registry.source, shown)
        for slug in unknown:
            store.remove(slug)
            outcomes[slug] = CountryOutcome(slug, Status.REMOVED,
                                            "--prune: not in the country registry")
        return outcomes
    logger.warning("[KEPT] %d %s of %s not in the country registry %s: kept in %s and %s "
                   "(--prune removes them): %s", len(unknown), noun, DATASET_FILE,
                   registry.source, DATASET_FILE, JS_FILE, shown)
    for slug in unknown:
        outcomes[slug] = CountryOutcome(slug, Status.SKIPPED, "not in the country registry: "
                                        "kept as it is (--prune removes it)")
    return outcomes
