"""benchmarks/seeds.py: the runs of several seeds (names, commands, which are trained) and mean ± sd of their figures."""

import importlib
import statistics
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def seeds():
    """The module as the benchmark scripts import it (they run with benchmarks/ first on the path)."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        yield importlib.import_module("seeds")
    finally:
        sys.path.remove(str(BENCHMARKS))


def test_seed_zero_is_the_recipe_run_and_later_seeds_their_own_folders(seeds, tmp_path):
    runs = seeds.seed_runs("yelp10k_lm", 3, runs=tmp_path)
    assert [run.folder for run in runs] == [tmp_path / "yelp10k_lm", tmp_path / "yelp10k_lm_seed1",
                                            tmp_path / "yelp10k_lm_seed2"]
    assert runs[2].export == tmp_path / "yelp10k_lm_seed2" / "export"
    assert runs[2].command() == ["textvae-train", "fit", "--config", "recipes/yelp10k_lm.yaml", "--seed_everything",
                                 "2", "--run", str(tmp_path / "yelp10k_lm_seed2")]
    varied = seeds.seed_runs("yelp10k_m2", 2, runs="runs", name="yelp10k_m2_500",
                             overrides=["--data.train", "data/yelp10k/train.500.jsonl"])
    assert varied[1].folder == Path("runs/yelp10k_m2_500_seed1")
    assert varied[1].command()[-3:] == ["runs/yelp10k_m2_500_seed1", "--data.train", "data/yelp10k/train.500.jsonl"]
    assert varied[1].command()[3] == "recipes/yelp10k_m2.yaml"
    with pytest.raises(ValueError):
        seeds.seed_runs("yelp10k_lm", 0)


def _fake_export(folder: Path) -> None:
    (folder / "export").mkdir(parents=True)
    (folder / "export" / "config.json").write_text("{}", encoding="utf-8")


def test_only_the_runs_without_an_export_are_trained_in_seed_order(seeds, tmp_path, capsys):
    runs = seeds.seed_runs("yelp10k_lm", 4, runs=tmp_path)
    _fake_export(runs[0].folder)  # seed 0: the committed run, reused
    _fake_export(runs[2].folder)  # seed 2: trained before the benchmark was interrupted
    (runs[3].folder / "logs").mkdir(parents=True)  # seed 3: a run folder without an export is trained again
    trained = []

    def train(command):
        trained.append(command)
        _fake_export(Path(command[command.index("--run") + 1]))

    assert seeds.train_missing(runs, train=train) == [run.export for run in runs]
    assert trained == [runs[1].command(), runs[3].command()]
    printed = capsys.readouterr().out
    assert "textvae-train fit --config recipes/yelp10k_lm.yaml --seed_everything 1 --run" in printed
    assert seeds.train_missing(runs, train=train) == [run.export for run in runs]  # resumed: nothing left to train
    assert len(trained) == 2


def test_a_training_that_writes_no_export_stops_the_benchmark(seeds, tmp_path):
    with pytest.raises(RuntimeError, match="wrote no export"):
        seeds.train_missing(seeds.seed_runs("yelp10k_lm", 1, runs=tmp_path), train=lambda command: None)


def test_a_training_that_fails_stops_the_benchmark_in_one_line(seeds, tmp_path):
    """The default trainer runs the command; a failure (e.g. another process training into the same run) ends the
    benchmark with one line naming the command, not a traceback."""
    with pytest.raises(SystemExit, match=r"^error: false --run .* exited with status 1; the benchmark stops here$"):
        seeds._train(["false", "--run", str(tmp_path)])
    seeds._train(["true"])  # a success returns


def test_mean_and_sample_standard_deviation_by_hand(seeds):
    values = [41.59, 41.71, 41.50]
    result = seeds.mean_sd(values)
    # mean 41.60; deviations -0.01, 0.11, -0.10; sum of squares 0.0222 over n - 1 = 2
    assert result.mean == pytest.approx(41.60)
    assert result.sd == pytest.approx(0.0111**0.5) == pytest.approx(statistics.stdev(values))
    assert result.n == 3
    assert seeds.mean_sd([2.5]) == (2.5, None, 1)


def test_aggregate_keeps_the_rows_shape(seeds):
    rows = [{"iw_nll": 41.0, "kl": None, "bleu": [1.0, 2.0], "svi": {"gap": 0.5}, "model": "SentenceVAE",
             "decoding": "greedy", "ppl": 60.0, "train_sentences_per_s": 300.0},
            {"iw_nll": 43.0, "kl": None, "bleu": [3.0, 2.0], "svi": {"gap": 1.5}, "model": "SentenceVAE",
             "decoding": "sample", "ppl": None}]
    row = seeds.aggregate(rows)
    assert row["iw_nll"] == (42.0, statistics.stdev([41.0, 43.0]), 2)
    assert row["bleu"] == [(2.0, statistics.stdev([1.0, 3.0]), 2), (2.0, 0.0, 2)]
    assert row["svi"]["gap"].mean == 1.0
    assert row["kl"] is None and row["model"] == "SentenceVAE"
    assert row["decoding"] is None and row["ppl"] is None  # they differ, or mix a number and None
    assert "train_sentences_per_s" not in row  # measured for one seed only
    assert seeds.to_json(row)["iw_nll"] == {"mean": 42.0, "sd": statistics.stdev([41.0, 43.0]), "seeds": 2}


def test_cells(seeds):
    assert seeds.cell(seeds.MeanSD(41.594, 0.1234, 3)) == "41.59 ± 0.12"
    assert seeds.cell(seeds.MeanSD(1012.6, 35.2, 3), ",.0f") == "1,013 ± 35"
    assert seeds.cell(seeds.MeanSD(41.594, None, 1)) == "41.59"
    assert seeds.cell(41.594) == "41.59"
