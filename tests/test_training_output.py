"""Readable training output: losses by name, the training-curve PNG, no FutureWarnings from RecBole."""

import logging
import re
import warnings

import pytest

from conftest import SMALL_SASREC, make_tiny_dataset, prepare_tiny
from recbole_usr.cli import run_command
from test_tiger import SMALL_TIGER
from test_unified_sasrec import SMALL_UNIFIED

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ANSI_COLOR = re.compile(r"\x1b\[[0-9;]*m")  # RecBole's set_color


class RecordList(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.records = []

    def emit(self, record):
        self.records.append(record)


PANDAS_CHAINED_ASSIGNMENT = "A value is trying to be set on a copy of a DataFrame or Series through chained assignment"


@pytest.fixture(scope="module")
def cli_runs(tmp_path_factory, sentence_encoder):
    """``cli_run(model)``: one 1-epoch ``run_recbole_usr`` run on the tiny dataset with
    ``--results_file``, every warning recorded: ``(result, results file, INFO log text without
    colours, warnings)``."""
    from recbole_usr.data import text_embedding

    root = tmp_path_factory.mktemp("training_output")
    tiny = make_tiny_dataset(root)
    done = {}

    def cli_run(model):
        if model not in done:
            results_file = root / model / "out.json"
            results_file.parent.mkdir()
            settings = {"SASRec": SMALL_SASREC, "UnifiedSASRec": SMALL_UNIFIED}[model]
            argv = [f"--model={model}", f"--dataset={tiny.name}", f"--config_files={tiny.yaml_path}",
                    f"--data_path={tiny.data_path}", f"--checkpoint_dir={root / 'saved'}",
                    f"--results_file={results_file}"] + [f"--{key}={value}" for key, value in settings.items()]
            # under pytest RecBole's logging.basicConfig is a no-op (pytest's handlers are on
            # the root logger already): collect the root logger's records at INFO here
            records, root_logger = RecordList(), logging.getLogger()
            with pytest.MonkeyPatch.context() as patch, warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                patch.chdir(results_file.parent)
                patch.setattr(text_embedding, "load_sentence_encoder", lambda name, device="cpu": sentence_encoder)
                level = root_logger.level
                root_logger.setLevel(logging.INFO)  # setLevel, not the attribute: loggers cache isEnabledFor
                root_logger.addHandler(records)
                try:
                    result = run_command(argv)
                finally:
                    root_logger.removeHandler(records)
                    root_logger.setLevel(level)
            log = "\n".join(ANSI_COLOR.sub("", record.getMessage()) for record in records.records)
            done[model] = (result, results_file, log, list(caught))
        return done[model]

    return cli_run


def epoch_lines(log):
    return [line for line in log.splitlines() if "epoch 0 training" in line]


def test_plugin_losses_are_logged_and_recorded_by_name(cli_runs):
    result, _, log, _ = cli_runs("UnifiedSASRec")
    (line,) = epoch_lines(log)
    for name in ("rec_loss: ", "rq_loss: ", "recon_loss: "):
        assert name in line
    assert "train_loss" not in line
    assert list(result["train_losses"]) == ["rec_loss", "rq_loss", "recon_loss"]
    assert all(len(values) == 1 for values in result["train_losses"].values())
    # per-epoch records behind the plot: one validation and one codebook row (2 levels) per epoch
    assert result["valid_results"][0]["ndcg@10"] == pytest.approx(result["valid_scores"][0])
    assert result["valid_epochs"] == [0]
    assert len(result["codebook_activation"]) == 1 and len(result["codebook_activation"][0]) == 2


def test_recbole_models_keep_recboles_loss_log(cli_runs):
    result, _, log, _ = cli_runs("SASRec")
    (line,) = epoch_lines(log)
    assert "train loss: " in line and "rec_loss" not in line
    assert list(result["train_losses"]) == ["train_loss"]
    assert result["codebook_activation"] == []


def test_tiger_loss_is_logged_by_name(tiny_dataset, shared_encoder):
    from recbole_usr.model.sequential_recommender.tiger import TIGER, TIGERTrainer

    config, _, train_data, *_ = prepare_tiny(tiny_dataset, "TIGER", SMALL_TIGER)
    trainer = TIGERTrainer(config, TIGER(config, train_data._dataset))
    assert ANSI_COLOR.sub("", trainer._generate_train_loss_output(0, 0.0, 1.0, 2.5)).endswith(", rec_loss: 2.5000]")


@pytest.mark.parametrize("model, panels", [
    ("UnifiedSASRec", ["validation NDCG@10", "training losses", "codebook activation", "code churn"]),
    ("SASRec", ["validation NDCG@10", "training losses"]),
])
def test_png_beside_the_results_file(cli_runs, model, panels):
    result, results_file, _, _ = cli_runs(model)
    png = results_file.with_suffix(".png")
    assert result["plot"] == {"path": str(png), "panels": panels}
    assert png.read_bytes()[:8] == PNG_MAGIC
    assert sorted(path.name for path in results_file.parent.glob("*.png")) == ["out.png"]


def test_no_png_without_a_results_file(tiny_dataset, tmp_path):
    argv = [f"--model=SASRec", f"--dataset={tiny_dataset.name}", f"--config_files={tiny_dataset.yaml_path}",
            f"--data_path={tiny_dataset.data_path}", f"--checkpoint_dir={tmp_path / 'saved'}"]
    result = run_command(argv + [f"--{key}={value}" for key, value in SMALL_SASREC.items()])
    assert "plot" not in result
    assert not list(tmp_path.rglob("*.png"))


def skip_unless_recbole_itself_warns(tiny_dataset):
    """RecBole's own ``create_dataset``, called outside the plugin's run path, warns on the tiny
    dataset (so a silent plugin run proves the filter works, and that it stays inside)."""
    from recbole.data import create_dataset as recbole_create_dataset

    config, *_ = prepare_tiny(tiny_dataset, "SASRec", SMALL_SASREC)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        recbole_create_dataset(config)
    if not any(PANDAS_CHAINED_ASSIGNMENT in str(w.message) for w in caught):
        pytest.skip("this pandas does not emit RecBole's chained-assignment FutureWarning")


def pandas_future_warnings(caught):
    return [w for w in caught if issubclass(w.category, FutureWarning)
            and ("pandas" in str(w.message) or "/recbole/data/" in w.filename)]


def test_no_pandas_future_warning_from_a_run_and_the_filter_stays_inside(cli_runs, tiny_dataset):
    skip_unless_recbole_itself_warns(tiny_dataset)
    for model in ("SASRec", "UnifiedSASRec"):
        _, _, _, caught = cli_runs(model)
        assert pandas_future_warnings(caught) == []


def test_no_grad_scaler_future_warning_from_training(cli_runs):
    """RecBole's trainer builds a GradScaler with torch's deprecated spelling every epoch; the
    run path silences exactly that warning (torch here does emit it: checked first)."""
    import torch

    with warnings.catch_warnings(record=True) as direct:
        warnings.simplefilter("always")
        torch.cuda.amp.GradScaler(enabled=False)
    if not any("GradScaler" in str(w.message) for w in direct):
        pytest.skip("this torch does not deprecate torch.cuda.amp.GradScaler")
    for model in ("SASRec", "UnifiedSASRec"):
        _, _, _, caught = cli_runs(model)
        assert [w for w in caught if "GradScaler" in str(w.message)] == []


def test_activation_panel_draws_health_before_reseeding_when_a_run_reseeded():
    from recbole_usr.training_plot import training_panels

    plain = {"codebook_activation": [[1.0, 0.5], [1.0, 0.25]]}
    reseeded = {**plain, "codebook_activation": [[1.0, 1.0], [1.0, 1.0]],
                "codebook_natural_activation": [[1.0, 0.5], [0.9, 0.25]]}
    (title, _, lines), = training_panels(plain)
    assert title == "codebook activation" and lines["level 2"] == ([0, 1], [0.5, 0.25])
    (title, _, lines), = training_panels(reseeded)
    assert title == "codebook activation, before re-seeding"
    assert lines["level 1"] == ([0, 1], [1.0, 0.9]) and lines["level 2"] == ([0, 1], [0.5, 0.25])


def test_learned_lookup_mix_gets_its_own_panel_per_level():
    from recbole_usr.training_plot import training_panels

    result = {"codebook_activation": [[1.0, 1.0], [1.0, 0.9]], "codebook_cosine_weight": [[0.5, 0.5], [0.6, 0.3]]}
    (activation_title, *_), (title, _, lines) = training_panels(result)
    assert activation_title == "codebook activation" and title == "learned lookup mix"
    assert lines == {"level 1": ([0, 1], [0.5, 0.6]), "level 2": ([0, 1], [0.5, 0.3])}
    assert len(training_panels({**result, "codebook_cosine_weight": []})) == 1


def test_code_churn_gets_a_panel_per_level_after_activation():
    from recbole_usr.training_plot import training_panels

    result = {"codebook_activation": [[1.0, 1.0], [1.0, 0.9]], "code_churn_by_level": [[0.1, 0.9], [0.0, 0.8]]}
    titles = [title for title, *_ in training_panels(result)]
    assert titles == ["codebook activation", "code churn"]
    assert training_panels(result)[1][2] == {"level 1": ([0, 1], [0.1, 0.0]), "level 2": ([0, 1], [0.9, 0.8])}
