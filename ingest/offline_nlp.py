"""Keep unstructured offline: no telemetry on import, no spaCy model download on first use.

unstructured 0.27 classifies text (title vs narrative) with spaCy. `unstructured.nlp.tokenize`
loads `en_core_web_sm` through the lru-cached `_get_nlp()`, and when the model is missing it
downloads a wheel from GitHub and installs it into site-packages — which fails offline and
breaks every text format. There is no setting for this, so we pre-empt the loader: the module's
`_get_nlp` is replaced by one that returns a blank English pipeline with a rule-based
sentencizer (tokens and sentence boundaries, no weights, nothing to download).

Trade-off: a blank pipeline has no part-of-speech tagger, so unstructured's `contains_verb`
is always False. Its only effect is that a one-sentence English paragraph without capitals
is classified as Title or Text rather than NarrativeText; structured formats (DOCX styles,
HTML/Markdown tags) are unaffected.
"""

from __future__ import annotations

from functools import lru_cache
from types import MappingProxyType

# unstructured calls Scarf analytics when imported unless these are set; they must be in the
# environment BEFORE the first `import unstructured`. Only app/settings.py writes the product's
# environment, so it exports these; the extraction child (ingest.extract) inherits them.
# UNSTRUCTURED_DISABLE_NOTICE silences an advertisement it prints to stdout on first use.
OFFLINE_ENV = MappingProxyType(
    {"DO_NOT_TRACK": "true", "SCARF_NO_ANALYTICS": "true", "UNSTRUCTURED_DISABLE_NOTICE": "1"}
)


@lru_cache(maxsize=1)
def _blank_english_pipeline():
    import spacy

    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    return nlp


def install_blank_spacy() -> None:
    """Make unstructured's tokenizer use a local blank pipeline instead of downloading a model."""
    from unstructured.nlp import tokenize

    tokenize._get_nlp = _blank_english_pipeline
