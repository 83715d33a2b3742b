"""textvae-train under hostile input (issue 13): unsafe checkpoints, absurd optimiser settings, non-finite
training, unwritable output folders, and exports that are killed midway or raced by a second run. Each
user mistake is one line ``textvae-train: error: ...`` with exit code 2 and no traceback."""

import http.server
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from safetensors.torch import load_file

from textvae import export as export_module
from textvae.data.records import DataError, write_jsonl
from textvae.data.synthetic import generate_sentences
from textvae.data.tokenizers import WordTokenizer
from textvae.export import ExportBusyError, export_lock, load_export, save_export
from textvae.guards import NonFiniteError
from textvae.lightning import TextDataModule, TextVAESystem
from textvae.models import SentenceVAE
from tools import train

ROOT = Path(__file__).resolve().parents[1]

TINY_RECIPE = """\
seed_everything: 0
trainer:
  max_steps: 3
  accelerator: cpu
  devices: 1
  logger: false
  enable_progress_bar: false
  enable_model_summary: false
  enable_checkpointing: false
  num_sanity_val_steps: 0
model:
  model:
    class_path: textvae.models.SentenceVAE
    init_args: {embed_dim: 8, hidden_dim: 16, latent_dim: 4}
data:
  batch_size: 16
"""


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("tiny")
    write_jsonl(folder / "sentences.jsonl", generate_sentences(64, seed=1))
    (folder / "tiny.yaml").write_text(TINY_RECIPE, encoding="utf-8")
    return {"data": folder / "sentences.jsonl", "recipe": folder / "tiny.yaml"}


def fit_args(tiny, tmp_path, *extra: str) -> list[str]:
    return ["fit", "--config", str(tiny["recipe"]), "--data.train", str(tiny["data"]),
            "--data.cache_dir", str(tmp_path / "cache"), "--trainer.default_root_dir", str(tmp_path / "run"),
            "--export", str(tmp_path / "export"), *extra]


def run_train(args: list[str], capsys) -> tuple[int, str]:
    """textvae-train in-process: its exit code and stderr."""
    try:
        train.main(args)
        code = 0
    except SystemExit as exit_info:
        code = exit_info.code
    return code, capsys.readouterr().err


def the_error(code: int, err: str) -> str:
    """The one error line of a refused run (exit code 2, no traceback)."""
    assert code == 2, err[-2000:]
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("textvae-train: error: ")]
    assert len(errors) == 1, err[-2000:]
    return errors[0]


@pytest.fixture
def no_training(monkeypatch):
    """Fail the test if a training step runs: the refusals must come before training starts."""
    def refuse(*args, **kwargs):
        raise AssertionError("training started")
    monkeypatch.setattr(TextVAESystem, "training_step", refuse)


def subprocess_env() -> dict[str, str]:
    path = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}


# --- checkpoints --------------------------------------------------------------------------------------------


class _RunsCode:
    """Unpickling this creates the marker file: what a crafted checkpoint does."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def malicious_checkpoint(path: Path, marker: Path, *, zip_format: bool) -> Path:
    payload = {"state_dict": {}, "hyper_parameters": {}, "trap": _RunsCode(marker)}
    if zip_format:
        torch.save(payload, path)
    else:
        with open(path, "wb") as f:
            pickle.dump(payload, f)
    return path


@pytest.mark.parametrize("zip_format", [True, False], ids=["torch.save", "raw-pickle"])
def test_a_local_checkpoint_that_would_run_code_is_refused_in_one_line(tiny, tmp_path, capsys, zip_format,
                                                                      no_training):
    marker = tmp_path / "code-ran"
    checkpoint = malicious_checkpoint(tmp_path / "evil.ckpt", marker, zip_format=zip_format)
    code, err = run_train(fit_args(tiny, tmp_path, "--ckpt_path", str(checkpoint)), capsys)
    line = the_error(code, err)
    assert "evil.ckpt" in line and "refused" in line
    assert not marker.exists()
    with pytest.raises(pickle.UnpicklingError):  # the file really is a working exploit without the check
        torch.load(checkpoint, weights_only=True)
    if zip_format:
        torch.load(checkpoint, weights_only=False)
        assert marker.exists()


@pytest.mark.parametrize("subcommand", ["fit", "validate"])
def test_a_checkpoint_url_is_refused_without_fetching_it(tiny, tmp_path, capsys, subcommand, no_training):
    marker = tmp_path / "code-ran"
    malicious_checkpoint(tmp_path / "evil.ckpt", marker, zip_format=True)
    requests: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(tmp_path), **kwargs)

        def log_message(self, *args):
            requests.append(self.path)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/evil.ckpt"
        args = fit_args(tiny, tmp_path, "--ckpt_path", url)
        args[0] = subcommand
        if subcommand == "validate":
            args += ["--data.valid", str(tiny["data"])]
        code, err = run_train(args, capsys)
    finally:
        server.shutdown()
        server.server_close()
    line = the_error(code, err)
    assert url in line and "download it first" in line
    assert requests == [] and not marker.exists()


def test_a_checkpoint_written_by_textvae_train_still_resumes(tiny, tmp_path, capsys, monkeypatch):
    code, err = run_train(fit_args(tiny, tmp_path, "--trainer.enable_checkpointing", "true",
                                   "--trainer.max_steps", "2"), capsys)
    assert code == 0, err[-2000:]
    checkpoint = next((tmp_path / "run").rglob("*.ckpt"))
    restored = []
    load = TextVAESystem.on_load_checkpoint
    monkeypatch.setattr(TextVAESystem, "on_load_checkpoint", lambda self, c: (restored.append(c["global_step"]),
                                                                              load(self, c)))
    code, err = run_train(fit_args(tiny, tmp_path, "--trainer.max_steps", "3", "--ckpt_path", str(checkpoint)),
                          capsys)
    assert code == 0, err[-2000:]
    assert restored == [2]
    assert load_export(tmp_path / "export").model is not None


def test_a_launch_of_more_processes_than_the_trainer_runs_is_refused(tiny, tmp_path, capsys, monkeypatch,
                                                                    no_training):
    # torchrun --nproc-per-node 2 with the recipe's devices: 1 would train two unrelated models side by side
    monkeypatch.setenv("WORLD_SIZE", "2")
    line = the_error(*run_train(fit_args(tiny, tmp_path), capsys))
    assert "started 2 processes" in line and "runs 1" in line and "--trainer.devices" in line


def test_unsafe_checkpoint_loading_cannot_be_switched_on(tiny, tmp_path, capsys, no_training):
    line = the_error(*run_train(fit_args(tiny, tmp_path, "--weights_only", "false"), capsys))
    assert "weights_only" in line


# --- optimiser settings and non-finite training -------------------------------------------------------------


@pytest.mark.parametrize("flag, value", [("--model.lr", "-1"), ("--model.lr", "0"), ("--model.weight_decay", "-0.1"),
                                         ("--model.grad_clip_norm", "0")])
def test_an_optimiser_setting_no_run_can_train_with_is_one_line(tiny, tmp_path, capsys, flag, value, no_training):
    line = the_error(*run_train(fit_args(tiny, tmp_path, flag, value), capsys))
    assert flag.removeprefix("--") in line and value in line
    assert not (tmp_path / "export").exists()


@pytest.mark.parametrize("flag, value", [("--data.batch_size", "-3"), ("--data.batch_size", "0"),
                                         ("--data.eval_batch_size", "0"), ("--data.max_len", "0"),
                                         ("--data.num_workers", "-1"), ("--data.min_count", "0")])
def test_a_data_setting_no_run_can_train_with_is_one_line(tiny, tmp_path, capsys, flag, value, no_training):
    line = the_error(*run_train(fit_args(tiny, tmp_path, flag, value), capsys))
    assert flag.removeprefix("--") in line and value in line
    assert not (tmp_path / "export").exists()


@pytest.mark.parametrize("lr", [float("nan"), float("inf"), -1.0])
def test_the_system_refuses_a_learning_rate_that_is_not_finite_and_positive(lr):
    with pytest.raises(ValueError, match="model.lr"):
        TextVAESystem(SentenceVAE(vocab_size=10, embed_dim=4, hidden_dim=4, latent_dim=2), lr=lr)


@pytest.mark.parametrize("aggressive", [False, True], ids=["automatic", "aggressive"])
def test_an_absurd_learning_rate_stops_at_the_first_nonfinite_loss_and_exports_nothing(tiny, tmp_path, capsys,
                                                                                        aggressive):
    extra = ["--model.lr", "1e6", "--trainer.max_steps", "20"]
    if aggressive:  # manual optimisation: the inner encoder loop is guarded too
        extra += ["--model.aggressive", "true"]
    line = the_error(*run_train(fit_args(tiny, tmp_path, *extra), capsys))
    assert "non-finite" in line and "at step " in line
    assert any(f"{term} = " in line for term in ("reconstruction", "kl", "aux")), line
    assert "1e+06" in line  # says which setting to lower
    assert not (tmp_path / "export").exists()
    assert not list(tmp_path.glob("export*"))  # no lock file or staging folder left behind either


def test_nonfinite_weights_after_the_last_step_are_not_exported(tiny, tmp_path, capsys, monkeypatch):
    def poison(self):  # a last step with a finite loss that sent a weight to inf
        with torch.no_grad():
            next(self.parameters())[0] = float("inf")
    monkeypatch.setattr(TextVAESystem, "on_train_end", poison, raising=False)
    line = the_error(*run_train(fit_args(tiny, tmp_path), capsys))
    assert "trained weights hold non-finite values" in line
    assert not list(tmp_path.glob("export*"))


class _PoisonGradient(pl.Callback):
    """A finite loss whose gradient is NaN (as an overflow in the backward pass gives)."""

    def on_after_backward(self, trainer, pl_module):
        if trainer.global_step == 1:
            next(p for p in pl_module.parameters() if p.grad is not None).grad[0] = float("nan")


def test_a_nonfinite_gradient_stops_training_before_the_step(tiny, tmp_path):
    data = TextDataModule(train=str(tiny["data"]), batch_size=16, cache_dir=str(tmp_path / "cache"))
    system = TextVAESystem(SentenceVAE(vocab_size=data.vocab_size, embed_dim=8, hidden_dim=16, latent_dim=4))
    trainer = pl.Trainer(accelerator="cpu", max_steps=4, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, callbacks=[_PoisonGradient()],
                         default_root_dir=str(tmp_path))
    with pytest.raises(NonFiniteError, match=r"gradient became non-finite at step 1 .*model\.") as error:
        trainer.fit(system, datamodule=data)
    assert "\n" not in str(error.value)
    assert all(torch.isfinite(p).all() for p in system.parameters())  # the NaN never reached the weights


DDP_SCRIPT = """\
import os, sys
from pathlib import Path
import pytorch_lightning as pl
import torch
from textvae.guards import NonFiniteError
from textvae.lightning import TextDataModule, TextVAESystem
from textvae.models import SentenceVAE
from textvae.training_objectives import ELBO

class NaNOnRank1(ELBO):
    calls = 0
    def __call__(self, model, batch, *, beta, svi=None):
        terms = super().__call__(model, batch, beta=beta, svi=svi)
        self.calls += 1
        if os.environ.get("LOCAL_RANK", "0") == "1" and self.calls >= 3:  # the third batch, on rank 1 only
            nan = torch.tensor(float("nan"))
            terms = terms._replace(loss=terms.loss * nan,
                                   metrics=terms.metrics | {"reconstruction": terms.metrics["reconstruction"] * nan})
        return terms

data, out = sys.argv[1:3]
pl.seed_everything(0, verbose=False)
module = TextDataModule(train=data, batch_size=8, cache_dir=str(Path(out) / "cache"))
system = TextVAESystem(SentenceVAE(vocab_size=module.vocab_size, embed_dim=8, hidden_dim=16, latent_dim=4),
                       objective=NaNOnRank1())
trainer = pl.Trainer(accelerator="cpu", devices=2, strategy="ddp", max_steps=6, logger=False,
                     enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                     num_sanity_val_steps=0, use_distributed_sampler=False)
try:
    trainer.fit(system, datamodule=module)
except NonFiniteError as err:
    print(f"rank {trainer.global_rank} stopped: {err}", flush=True)
    sys.exit(3)
print(f"rank {trainer.global_rank} finished", flush=True)
"""


def test_a_nonfinite_loss_on_one_ddp_rank_stops_every_rank_without_hanging(tiny, tmp_path):
    script = tmp_path / "ddp_nan.py"
    script.write_text(DDP_SCRIPT, encoding="utf-8")
    result = subprocess.run([sys.executable, str(script), str(tiny["data"]), str(tmp_path)], capture_output=True,
                            text=True, timeout=240, env=subprocess_env(), cwd=tmp_path)
    assert result.returncode == 3, result.stderr[-3000:]
    assert "rank 1 stopped: the training loss became non-finite on process 1 at step 2" in result.stdout
    assert "reconstruction = nan" in result.stdout
    assert "rank 0 stopped: the training loss became non-finite on another process at step 2" in result.stdout
    assert "finished" not in result.stdout


# --- output folders -----------------------------------------------------------------------------------------


@pytest.fixture
def unwritable():
    """Make folders unwritable for this process: mode 0555, or as root (who ignores modes) immutable."""
    frozen: list[Path] = []

    def freeze(folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        if os.geteuid() != 0:
            folder.chmod(0o555)
        elif subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode != 0:
            pytest.skip("running as root without chattr +i: cannot make a folder unwritable")
        frozen.append(folder)
        return folder

    yield freeze
    for folder in frozen:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(folder)], check=True)
        folder.chmod(0o755)


def test_an_unwritable_runs_folder_is_one_line_before_training(tiny, tmp_path, capsys, unwritable, no_training):
    runs = unwritable(tmp_path / "runs")
    args = fit_args(tiny, tmp_path, "--trainer.default_root_dir", str(runs / "quickstart"))
    line = the_error(*run_train(args, capsys))
    assert "the run folder" in line and str(runs) in line and "--trainer.default_root_dir" in line


def test_a_runs_path_that_is_a_file_is_one_line_before_training(tiny, tmp_path, capsys, no_training):
    (tmp_path / "runs").write_text("not a folder")
    args = fit_args(tiny, tmp_path, "--trainer.default_root_dir", str(tmp_path / "runs" / "quickstart"))
    line = the_error(*run_train(args, capsys))
    assert f"{tmp_path / 'runs'} is a file, not a folder" in line


def test_an_unwritable_logger_folder_is_one_line_before_training(tiny, tmp_path, capsys, unwritable, no_training):
    logs = unwritable(tmp_path / "logs")
    logger = '{"class_path": "pytorch_lightning.loggers.CSVLogger", "init_args": {"save_dir": "%s"}}' % (logs / "x")
    line = the_error(*run_train(fit_args(tiny, tmp_path, "--trainer.logger", logger), capsys))
    assert "CSVLogger folder" in line and str(logs) in line


def test_an_unwritable_data_folder_asks_for_a_cache_dir(tiny, tmp_path, capsys, unwritable, no_training):
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.jsonl").write_bytes(tiny["data"].read_bytes())
    unwritable(data)
    args = fit_args(tiny, tmp_path, "--data.train", str(data / "train.jsonl"))
    cache = args.index("--data.cache_dir")
    del args[cache:cache + 2]  # the default: .cache beside the data
    line = the_error(*run_train(args, capsys))
    assert str(data / ".cache") in line and "--data.cache_dir" in line


@pytest.mark.parametrize("case", ["unwritable parent", "parent is a file", "export is a file", "a run folder"])
def test_an_export_target_that_cannot_take_the_export_is_one_line_before_training(tiny, tmp_path, capsys, unwritable,
                                                                                  no_training, case):
    if case == "unwritable parent":
        target, says = unwritable(tmp_path / "exports") / "model", "cannot write in"
    elif case == "parent is a file":
        (tmp_path / "exports").write_text("")
        target, says = tmp_path / "exports" / "model", "is a file, not a folder"
    elif case == "export is a file":
        target, says = tmp_path / "model", "is a file, not an export folder"
        target.write_text("")
    else:  # replacing it would delete the logs
        target, says = tmp_path / "runs", "holds 'logs', which is not part of a model export"
        (target / "logs").mkdir(parents=True)
    line = the_error(*run_train(fit_args(tiny, tmp_path, "--export", str(target)), capsys))
    assert line.startswith(f"textvae-train: error: --export {target}: ") and says in line
    if case == "a run folder":
        assert sorted(p.name for p in target.iterdir()) == ["logs"]


# --- the export: all or nothing, normal permissions, one writer ---------------------------------------------


def tiny_model(seed: int, words: str) -> tuple[SentenceVAE, WordTokenizer]:
    tokenizer = WordTokenizer.train([words])
    torch.manual_seed(seed)
    return SentenceVAE(vocab_size=tokenizer.vocab_size, embed_dim=8, hidden_dim=8, latent_dim=2), tokenizer


def assert_is_export(folder: Path, model: SentenceVAE, tokenizer: WordTokenizer) -> None:
    loaded = load_export(folder)
    assert loaded.tokenizer.tokens == tokenizer.tokens
    for name, value in model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[name], value), name


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.parent.iterdir() if p.name != folder.name)


KILLED_EXPORT = """\
import sys, time
from pathlib import Path
import torch
from textvae.data.tokenizers import WordTokenizer
from textvae.export import save_export
from textvae.models import SentenceVAE

target, marker = sys.argv[1:3]
tokenizer = WordTokenizer.train(["x y z w v"])
model = SentenceVAE(vocab_size=tokenizer.vocab_size, embed_dim=8, hidden_dim=8, latent_dim=2)
save = tokenizer.save
def save_and_stall(folder):  # config.json and the weights are written: stall, to be killed here
    save(folder)
    Path(marker).touch()
    time.sleep(600)
tokenizer.save = save_and_stall
save_export(target, model, tokenizer)
"""


def test_a_kill_during_the_export_leaves_the_previous_export_whole(tmp_path):
    target = tmp_path / "exports" / "model"
    model, tokenizer = tiny_model(0, "a b c")
    save_export(target, model, tokenizer)
    script, marker = tmp_path / "killed_export.py", tmp_path / "stalled"
    script.write_text(KILLED_EXPORT, encoding="utf-8")
    process = subprocess.Popen([sys.executable, str(script), str(target), str(marker)], env=subprocess_env())
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert process.poll() is None and time.monotonic() < deadline, "the export never got going"
            time.sleep(0.05)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert_is_export(target, model, tokenizer)  # the previous run's export, not a mix
    assert sorted(p.name for p in target.iterdir()) == ["config.json", "model.safetensors", "tokenizer.json"]
    # what the killed process left beside it (its half-written folder) goes with the next export
    assert any(name.startswith("model.tmp-") for name in leftovers(target))
    second, second_tokenizer = tiny_model(1, "d e f")
    save_export(target, second, second_tokenizer)
    assert_is_export(target, second, second_tokenizer)
    assert leftovers(target) == []


@pytest.mark.parametrize("atomic_exchange", [True, False], ids=["renameat2", "two-renames"])
def test_an_export_that_fails_midway_leaves_the_previous_one_and_no_stray_files(tmp_path, monkeypatch,
                                                                               atomic_exchange):
    if not atomic_exchange:  # a file system without RENAME_EXCHANGE
        monkeypatch.setattr(export_module, "_exchange", lambda a, b: False)
    target = tmp_path / "model"
    first, first_tokenizer = tiny_model(0, "a b c")
    save_export(target, first, first_tokenizer)
    second, second_tokenizer = tiny_model(1, "d e f")
    second_tokenizer.save = lambda folder: (_ for _ in ()).throw(OSError(28, "No space left on device"))
    with pytest.raises(OSError, match="No space"):
        save_export(target, second, second_tokenizer)
    assert_is_export(target, first, first_tokenizer)
    assert leftovers(target) == []
    second, second_tokenizer = tiny_model(1, "d e f")
    save_export(target, second, second_tokenizer)  # a complete one replaces it
    assert_is_export(target, second, second_tokenizer)
    assert leftovers(target) == []


def test_an_export_never_replaces_a_folder_holding_anything_else(tmp_path):
    model, tokenizer = tiny_model(0, "a b c")
    save_export(tmp_path / "model", model, tokenizer)
    (tmp_path / "model" / "notes.txt").write_text("mine")
    (tmp_path / "model.tmp-backup").mkdir()  # only a killed export's own leftovers (NAME.tmp-PID) are removed
    with pytest.raises(DataError, match="holds 'notes.txt'"):
        save_export(tmp_path / "model", *tiny_model(1, "d e f"))
    assert_is_export(tmp_path / "model", model, tokenizer)
    assert (tmp_path / "model" / "notes.txt").read_text() == "mine"
    (tmp_path / "model" / "notes.txt").unlink()
    save_export(tmp_path / "model", model, tokenizer)
    assert (tmp_path / "model.tmp-backup").is_dir()


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664)], ids=["022", "027", "002"])
def test_export_files_get_the_permissions_the_umask_gives(tmp_path, umask, mode):
    model, tokenizer = tiny_model(0, "a b c")
    previous = os.umask(umask)
    try:
        save_export(tmp_path / "model", model, tokenizer)
    finally:
        os.umask(previous)
    for path in (tmp_path / "model").iterdir():
        assert path.stat().st_mode & 0o777 == mode, path.name
    assert (tmp_path / "model").stat().st_mode & 0o777 == 0o777 & ~umask


HOLD_LOCK = """\
import sys, time
from textvae.export import export_lock
with export_lock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(600)
"""


@pytest.fixture
def lock_held_elsewhere(tmp_path):
    """Another process holding an export folder's lock, as a training run does until it has exported."""
    processes = []

    def hold(target: Path) -> subprocess.Popen:
        process = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(target)], stdout=subprocess.PIPE, text=True,
                                   env=subprocess_env())
        processes.append(process)
        assert process.stdout.readline().strip() == "held"
        return process

    yield hold
    for process in processes:
        process.kill()
        process.wait()


def test_a_second_run_exporting_to_a_folder_in_use_is_refused_at_its_start(tiny, tmp_path, capsys, no_training,
                                                                           lock_held_elsewhere):
    target = tmp_path / "export"
    model, tokenizer = tiny_model(0, "a b c")
    save_export(target, model, tokenizer)
    holder = lock_held_elsewhere(target)
    line = the_error(*run_train(fit_args(tiny, tmp_path), capsys))
    assert str(target) in line and f"pid {holder.pid}" in line
    assert_is_export(target, model, tokenizer)
    with pytest.raises(ExportBusyError):  # any writer, not only textvae-train
        save_export(target, *tiny_model(1, "d e f"))


def test_the_export_lock_is_released_and_removed_after_a_run(tiny, tmp_path, capsys):
    code, err = run_train(fit_args(tiny, tmp_path), capsys)
    assert code == 0, err[-2000:]
    assert leftovers(tmp_path / "export") == ["cache", "run"]
    with export_lock(tmp_path / "export"):  # free again
        pass
    weights = load_file(tmp_path / "export" / "model.safetensors")
    assert all(torch.isfinite(t).all() for t in weights.values())
