"""Bad input gets a clear, early error (naming the file, line or property) or a recovery,
and no run leaves a cache file that breaks the next one. One test (or parameter) per kind
of bad input a new user met on ml-100k copies; all on the tiny fixture."""

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from recbole.data import create_dataset

from conftest import SMALL_SASREC
from recbole_usr import utils
from recbole_usr.cli import parse_args, run_command
from recbole_usr.data import text_embedding
from recbole_usr.data.text_embedding import cache_file, file_digest, load_item_text_embeddings
from recbole_usr.quick_start import build_config

ENCODER = "all-MiniLM-L6-v2"


def tiny_config(tiny, model="SASRec", **overrides):
    return build_config(model, tiny.name, [str(tiny.yaml_path)], tiny.config_dict(**overrides))


def embedding_cache_path(tiny):
    digest = file_digest(str(tiny.dataset_dir / f"{tiny.name}.item"))
    return cache_file(str(tiny.cache_dir), tiny.name, ["title", "brand"], ENCODER, digest)


def warnings_of(caplog):
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def forbid_encoding(monkeypatch):
    def no_encoding(*args, **kwargs):
        raise AssertionError("cache hit expected: nothing should be encoded")

    monkeypatch.setattr(text_embedding, "encode_texts", no_encoding)


@pytest.fixture
def tiny_built(tiny_dataset):
    config = tiny_config(tiny_dataset)
    return config, create_dataset(config)


# --- text-embedding cache: interrupted writes ------------------------------------------------


@pytest.mark.parametrize("interruption", [KeyboardInterrupt(), OSError(28, "No space left on device"),
                                          OSError(27, "File too large")])
def test_interrupted_cache_write_leaves_nothing_and_next_run_works(tiny_built, tiny_dataset, shared_encoder,
                                                                   monkeypatch, caplog, interruption):
    config, dataset = tiny_built
    path = embedding_cache_path(tiny_dataset)
    real_savez = np.savez

    def savez_cut_short(file, **arrays):
        file.write(b"PK\x03\x04 partial zip")  # what a full disk or Ctrl-C leaves behind
        raise interruption

    monkeypatch.setattr(text_embedding.np, "savez", savez_cut_short)
    if isinstance(interruption, KeyboardInterrupt):
        with pytest.raises(KeyboardInterrupt):
            load_item_text_embeddings(config, dataset)
    else:  # a cache that cannot be written costs the next run an encoding, not this run
        with caplog.at_level(logging.WARNING):
            assert load_item_text_embeddings(config, dataset).shape == (13, 384)
        assert any("could not write the cache" in m and path in m for m in warnings_of(caplog))
    assert not os.path.exists(path)
    assert os.listdir(tiny_dataset.cache_dir) == []  # no temporary file left either

    monkeypatch.setattr(text_embedding.np, "savez", real_savez)
    first = load_item_text_embeddings(config, dataset)
    forbid_encoding(monkeypatch)
    assert torch.equal(load_item_text_embeddings(config, dataset), first)  # the next run reads it


# --- text-embedding cache: bad files at the cache path ---------------------------------------


def rewrite_cache(path, change):
    """Rewrite a valid cache with ``change(tokens, embeddings, meta)`` applied."""
    with np.load(path) as cached:
        tokens, embeddings, meta = list(cached["item_tokens"]), cached["embeddings"].copy(), json.loads(str(cached["meta"]))
    tokens, embeddings, meta = change(tokens, embeddings, meta)
    with open(path, "wb") as f:
        np.savez(f, item_tokens=np.array(tokens), embeddings=embeddings, meta=np.array(json.dumps(meta)))


def with_nan_row(tokens, embeddings, meta):
    embeddings[2] = np.nan
    return tokens, embeddings, meta


def narrower(tokens, embeddings, meta):
    return tokens, np.ascontiguousarray(embeddings[:, :5]), meta  # the file still says 384-d


def other_items(tokens, embeddings, meta):
    return [f"x{token}" for token in tokens], embeddings, meta


def float64(tokens, embeddings, meta):
    return tokens, embeddings.astype(np.float64), meta


def other_encoder(tokens, embeddings, meta):
    return tokens, embeddings, {**meta, "encoder": "sentence-t5-base"}


def without_meta(path):  # the format before this check existed
    with np.load(path) as cached:
        tokens, embeddings = cached["item_tokens"], cached["embeddings"]
    with open(path, "wb") as f:
        np.savez(f, item_tokens=tokens, embeddings=embeddings)


def truncate_to_half(path):  # a copy or a write cut short
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)


BAD_CACHES = {
    "truncated": truncate_to_half,
    "zero bytes": lambda path: Path(path).write_bytes(b""),
    "random bytes": lambda path: Path(path).write_bytes(np.random.RandomState(0).bytes(4096)),
    "NaN rows": lambda path: rewrite_cache(path, with_nan_row),
    "wrong width": lambda path: rewrite_cache(path, narrower),
    "other items": lambda path: rewrite_cache(path, other_items),
    "float64": lambda path: rewrite_cache(path, float64),
    "other encoder": lambda path: rewrite_cache(path, other_encoder),
    "no meta": without_meta,
}
BAD_CACHE_REASONS = {
    "truncated": "unreadable", "zero bytes": "unreadable", "random bytes": "unreadable",
    "NaN rows": "NaN", "wrong width": "5-d", "other items": "another item list", "float64": "float64",
    "other encoder": "sentence-t5-base", "no meta": "unreadable",
}


@pytest.mark.parametrize("damage", list(BAD_CACHES))
def test_bad_cache_is_named_and_rebuilt(tiny_built, tiny_dataset, shared_encoder, monkeypatch, caplog, damage):
    config, dataset = tiny_built
    path = embedding_cache_path(tiny_dataset)
    good = load_item_text_embeddings(config, dataset)
    BAD_CACHES[damage](path)

    with caplog.at_level(logging.WARNING):
        rebuilt = load_item_text_embeddings(config, dataset)
    torch.testing.assert_close(rebuilt, good, atol=1e-5, rtol=0)
    messages = [m for m in warnings_of(caplog) if path in m]
    assert len(messages) == 1 and BAD_CACHE_REASONS[damage] in messages[0], warnings_of(caplog)
    assert len(shared_encoder) == 2  # encoded again once

    forbid_encoding(monkeypatch)  # the rebuilt file is good for the next run
    assert torch.equal(load_item_text_embeddings(config, dataset), rebuilt)


def test_encoder_output_with_nan_is_an_error_and_not_cached(tiny_built, tiny_dataset, monkeypatch):
    config, dataset = tiny_built
    monkeypatch.setattr(text_embedding, "encode_texts",
                        lambda texts, *args, **kwargs: np.full((len(texts), 4), np.nan, dtype=np.float32))
    with pytest.raises(ValueError, match="all-MiniLM-L6-v2.*NaN.*nothing was cached"):
        load_item_text_embeddings(config, dataset)
    assert not os.path.exists(embedding_cache_path(tiny_dataset))


# --- SentencePiece model cache ----------------------------------------------------------------


SENTENCES = ["\u4e00\u4e01", "\u4e02\u4e01", "\u4e00\u4e03"]


def test_bad_sentencepiece_file_is_named_and_retrained(tmp_path, caplog):
    from recbole_usr.model.item_representations.sentencepiece import train_sentencepiece

    tmp_path = tmp_path / "spm"

    first = train_sentencepiece(SENTENCES, 10, cache_dir=str(tmp_path))
    (path,) = [str(p) for p in tmp_path.iterdir()]
    for damage in (b"", b"not a model", Path(path).read_bytes()[:40]):
        with open(path, "wb") as f:
            f.write(damage)
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            again = train_sentencepiece(SENTENCES, 10, cache_dir=str(tmp_path))
        assert [again.encode(s) for s in SENTENCES] == [first.encode(s) for s in SENTENCES]
        assert any(path in m and "unreadable" in m for m in warnings_of(caplog)), warnings_of(caplog)
    assert os.listdir(tmp_path) == [os.path.basename(path)]


def test_interrupted_sentencepiece_training_leaves_nothing(tmp_path, monkeypatch):
    import sentencepiece as spm

    from recbole_usr.model.item_representations.sentencepiece import train_sentencepiece

    tmp_path = tmp_path / "spm"

    real_train = spm.SentencePieceTrainer.train

    def train_cut_short(*args, model_prefix, **kwargs):
        Path(model_prefix + ".model").write_bytes(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(spm.SentencePieceTrainer, "train", train_cut_short)
    with pytest.raises(KeyboardInterrupt):
        train_sentencepiece(SENTENCES, 10, cache_dir=str(tmp_path))
    assert os.listdir(tmp_path) == []
    monkeypatch.setattr(spm.SentencePieceTrainer, "train", real_train)
    assert train_sentencepiece(SENTENCES, 10, cache_dir=str(tmp_path)).get_piece_size() > 3


def test_model_for_other_semantic_ids_is_retrained(tmp_path, caplog):
    from recbole_usr.model.item_representations.sentencepiece import train_sentencepiece

    tmp_path = tmp_path / "spm"

    train_sentencepiece(SENTENCES, 10, cache_dir=str(tmp_path))
    (path,) = [str(p) for p in tmp_path.iterdir()]
    other = train_sentencepiece(["\u4e10\u4e11", "\u4e12\u4e11"], 10, cache_dir=str(tmp_path / "other"))
    shutil.copyfile(tmp_path / "other" / os.listdir(tmp_path / "other")[0], path)
    with caplog.at_level(logging.WARNING):
        processor = train_sentencepiece(SENTENCES, 10, cache_dir=str(tmp_path))
    assert processor.unk_id() not in sum((processor.encode(s) for s in SENTENCES), [])
    assert any(path in m and "other semantic IDs" in m for m in warnings_of(caplog))
    assert other.get_piece_size() > 0


# --- .inter / .item files ----------------------------------------------------------------------


def edit_inter(tiny, edit):
    path = tiny.dataset_dir / f"{tiny.name}.inter"
    lines = path.read_text().splitlines()
    path.write_text("".join(line + "\n" for line in edit(lines)))
    return str(path)


def replace_line(number, text):
    def edit(lines):
        lines[number - 1] = text
        return lines
    return edit


@pytest.mark.parametrize(
    "line",
    ["u00\ti02\t1.0\tx\ty\tz", "u00\ti02"],  # a 6-field row (was read as user 1? item 2...), a short row (timestamp NaN)
    ids=["too many fields", "too few fields"],
)
def test_row_with_wrong_field_count_is_an_error_naming_file_line_and_row(tiny_dataset, line):
    path = edit_inter(tiny_dataset, replace_line(4, line))
    with pytest.raises(ValueError) as error:
        tiny_config(tiny_dataset)
    message = str(error.value)
    assert path in message and "line 4" in message and repr(line) in message
    assert "drop_malformed_rows" in message


def test_drop_malformed_rows_drops_them_with_a_count(tiny_dataset, tmp_path, caplog):
    edit_inter(tiny_dataset, lambda lines: lines[:3] + ["u00\ti02\t1.0\tx\ty\tz", "u00"] + lines[3:])
    with caplog.at_level(logging.WARNING):
        config = tiny_config(tiny_dataset, drop_malformed_rows=True, checkpoint_dir=str(tmp_path / "saved"))
    assert any("2 of 182 rows" in m for m in warnings_of(caplog)), warnings_of(caplog)
    assert config["data_path"].startswith(str(tmp_path / "saved"))
    dataset = create_dataset(config)
    assert len(dataset.inter_feat) == 180  # exactly the well-formed rows, none reinterpreted
    assert not dataset.inter_feat["timestamp"].isna().any()


@pytest.mark.parametrize(
    "header, expected",
    [
        ("uid:token\titem:token\tts:float", r"no column \['user_id', 'item_id', 'timestamp'\]"),
        ("u00\ti01\t0.0", "no header line"),
        ("user_id\titem_id\ttimestamp", "no header line"),
        ("user_id:token\titem_id:tokn\ttimestamp:float", "bad columns: \\['item_id:tokn'\\]"),
    ],
    ids=["wrong names", "no header (a data row)", "names without types", "unknown type"],
)
def test_bad_header_is_an_error_naming_the_file(tiny_dataset, header, expected):
    path = edit_inter(tiny_dataset, replace_line(1, header))
    with pytest.raises(ValueError, match=expected) as error:
        tiny_config(tiny_dataset)
    assert path in str(error.value)


@pytest.mark.parametrize("content, expected", [("", "is empty"), ("user_id:token\titem_id:token\ttimestamp:float\n", "no rows")])
def test_empty_inter_file_is_an_error(tiny_dataset, content, expected):
    path = tiny_dataset.dataset_dir / f"{tiny_dataset.name}.inter"
    path.write_text(content)
    with pytest.raises(ValueError, match=expected):
        tiny_config(tiny_dataset)


def test_malformed_item_row_is_an_error(tiny_dataset):
    path = tiny_dataset.dataset_dir / f"{tiny_dataset.name}.item"
    path.write_text(path.read_text() + "i50\tToo\tMany\tFields\n")
    with pytest.raises(ValueError, match=r"\.item: 1 of 13 rows.*line 14"):
        tiny_config(tiny_dataset)


# --- properties ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "flag, expected",
    [
        ("--id_dim=-1", "'id_dim' must be an integer >= 0, got -1"),
        ("--id_dim=abc", "'id_dim' must be an integer >= 0, got 'abc'"),
        ("--rq_codebook_size=1", "'rq_codebook_size' must be an integer >= 2, got 1"),
        ("--rq_levels=0", "'rq_levels' must be an integer > 0"),
        ("--rq_distances=['cosine', 'euclidean']", "'rq_distances' must be .* 3 .*rq_levels=3"),
        ("--rq_distances=[cosine, manhattan, euclidean]", "'rq_distances' must be .*manhattan"),
        ("--hidden_dropout_prob=1.5", "'hidden_dropout_prob' must be a number in \\[0, 1\\)"),
        ("--use_semantic=yes", "'use_semantic' must be True or False"),
        ("--rq_unique_last_level=1.5", "'rq_unique_last_level' must be True or False"),
        ("--rq_rec_codeword_grad=[True, 0, False]", "'rq_rec_codeword_grad' must be True, False or one of them per level"),
        ("--rq_rec_codeword_grad=[]", "'rq_rec_codeword_grad' must be True, False or one of them per level"),
        ("--rq_kmeans_points_per_centroid=-5", "'rq_kmeans_points_per_centroid' must be an integer >= 0"),
        ("--item_repr=ngrams", "'item_repr' must be one of"),
    ],
)
def test_bad_property_value_names_the_property_and_range(tiny_dataset, flag, expected):
    _, _, overrides = parse_args([flag])
    with pytest.raises(ValueError, match=expected):
        tiny_config(tiny_dataset, "UnifiedSASRec", **overrides)


@pytest.mark.parametrize("flag, expected", [("--text_fields=title", ["title"]),
                                            ("--text_fields=[title, brand]", ["title", "brand"]),
                                            ("--rq_distances=[cosine,cosine,euclidean]", None)])
def test_names_given_without_quotes_become_lists(tiny_dataset, flag, expected):
    _, _, overrides = parse_args([flag])
    config = tiny_config(tiny_dataset, "UnifiedSASRec", **overrides)
    if expected is None:
        assert config["rq_distances"] == ["cosine", "cosine", "euclidean"]
    else:
        assert config["text_fields"] == expected


def test_single_text_field_reads_that_column(tiny_dataset):
    from recbole_usr.data.item_text import item_texts

    config = tiny_config(tiny_dataset, text_fields="title")
    texts = item_texts(config["data_path"], config["dataset"], config["text_fields"])
    assert texts["i01"] == "title: Foo & Bar"
    assert item_texts(config["data_path"], config["dataset"], "title") == texts  # a bare name, called directly


def test_property_of_another_model_is_reported(tiny_dataset, caplog):
    with pytest.raises(ValueError, match=r"not used by UnifiedSASRec: 'embedding_size' \(a property of"):
        tiny_config(tiny_dataset, "UnifiedSASRec", embedding_size=16)
    with caplog.at_level(logging.WARNING):
        tiny_config(tiny_dataset, "UnifiedSASRec", embedding_size=16, strict_properties=False)
    assert any("'embedding_size'" in m and "Ignored" in m for m in warnings_of(caplog))
    tiny_config(tiny_dataset, "GRU4Rec", embedding_size=16)  # GRU4Rec's own property: fine


def test_tokenizer_properties_are_used_by_the_tokenize_command_whatever_the_model(tiny_dataset):
    from recbole_usr.tokenize import TOKENIZER_PROPERTIES

    with pytest.raises(ValueError, match="not used by SASRec: 'rq_levels'"):
        tiny_config(tiny_dataset, rq_levels=2)
    config = build_config("SASRec", tiny_dataset.name, [str(tiny_dataset.yaml_path)],
                          tiny_dataset.config_dict(rq_levels=2), used_properties=TOKENIZER_PROPERTIES)
    assert config["rq_levels"] == 2


def test_model_name_in_other_case_is_found_and_a_typo_gets_a_suggestion(caplog):
    from recbole_usr.model.sequential_recommender.unified_sasrec import UnifiedSASRec

    with caplog.at_level(logging.WARNING):
        assert utils.get_model("unifiedsasrec") is UnifiedSASRec
    assert any("taken as 'UnifiedSASRec'" in m for m in warnings_of(caplog))
    with pytest.raises(ValueError, match="Unknown model 'UnifedSASrec'.*Did you mean 'UnifiedSASRec'"):
        utils.get_model("UnifedSASrec")


def test_degenerate_semantic_ids_are_a_warning():
    from recbole_usr.quantization import codebook_statistics, degenerate_code_warnings

    same = codebook_statistics(torch.zeros(10, 3, dtype=torch.long), 4)
    assert "all 10 items share one semantic ID" in degenerate_code_warnings(same, 0.5)[0]
    half = codebook_statistics(torch.tensor([[0], [0], [1], [2]]), 4)  # coverage 0.5
    assert degenerate_code_warnings(half, 0.5) == []
    assert "unique coverage 0.5000 is below min_unique_coverage=0.6" in degenerate_code_warnings(half, 0.6)[0]


# --- results file -----------------------------------------------------------------------------


def test_unwritable_results_file_fails_before_training(tiny_dataset, monkeypatch):
    from recbole_usr import quick_start

    monkeypatch.setattr(quick_start, "run", lambda *a, **k: pytest.fail("trained despite a bad --results_file"))
    with pytest.raises(FileNotFoundError, match="no/such/dir"):
        run_command(["--model=SASRec", f"--dataset={tiny_dataset.name}", "--results_file=no/such/dir/out.json"])


def test_results_go_beside_the_checkpoint_if_the_file_fails_at_the_end(tmp_path, monkeypatch):
    result = {"model": "SASRec", "test_result": {"ndcg@10": 0.5}, "model_file": str(tmp_path / "SASRec-x.pth")}
    target = tmp_path / "out.json"
    real_dump = utils.dump_results

    def disk_full_for_target(path, data):
        if path == str(target):
            raise OSError(28, "No space left on device")
        real_dump(path, data)

    monkeypatch.setattr(utils, "dump_results", disk_full_for_target)
    fallback = utils.results_fallback_path(result)
    with pytest.raises(OSError, match=f"the results are in {fallback}"):
        utils.write_results(str(target), result, fallback)
    assert json.loads(Path(fallback).read_text()) == result and not target.exists()


# --- whole runs -------------------------------------------------------------------------------


def test_collapsed_semantic_ids_are_a_warning_in_the_log_and_the_results(tiny_dataset, shared_encoder, tmp_path,
                                                                          caplog):
    results_file = tmp_path / "results.json"
    settings = {"epochs": 1, "id_dim": 8, "semantic_dim": 8, "n_heads": 1, "inner_size": 16, "n_layers": 1,
                "rq_hidden_sizes": [16], "rq_levels": 1, "rq_codebook_size": 2, "rq_distances": "euclidean",
                "rq_pretrain_epochs": 1, "show_progress": False, "checkpoint_dir": str(tmp_path / "saved")}
    argv = ["--model=UnifiedSASRec", f"--dataset={tiny_dataset.name}", f"--config_files={tiny_dataset.yaml_path}",
            f"--data_path={tiny_dataset.data_path}", f"--results_file={results_file}"]
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with caplog.at_level(logging.WARNING):
            run_command(argv + [f"--{key}={value}" for key, value in settings.items()])
    finally:
        torch.set_num_threads(previous)
    written = json.loads(results_file.read_text())
    assert written["warnings"] and "below min_unique_coverage=0.5" in written["warnings"][0]
    assert any("below min_unique_coverage" in m for m in warnings_of(caplog))


def test_unified_sasrec_built_the_recbole_way_finds_the_plugin_yamls(tiny_dataset, shared_encoder, monkeypatch):
    from recbole.config import Config
    from recbole.utils import get_model

    monkeypatch.setattr(sys, "argv", sys.argv[:1])
    config = Config(model="UnifiedSASRec", dataset=tiny_dataset.name, config_file_list=[str(tiny_dataset.yaml_path)],
                    config_dict={"data_path": str(tiny_dataset.data_path), "rq_pretrain_epochs": 1,
                                 "rq_codebook_size": 4, "show_progress": False})
    assert (config["id_dim"], config["semantic_dim"], config["rq_levels"]) == (8, 64, 3)  # UnifiedSASRec.yaml
    assert config["metrics"] == ["Recall", "MRR", "NDCG", "Hit"]  # the plugin's overall.yaml
    assert config["rq_codebook_size"] == 4  # config_dict still wins
    dataset = create_dataset(config)
    model = get_model("UnifiedSASRec")(config, dataset)
    assert model.item_repr.dim == 72


def console_env(checkout_root):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(checkout_root), os.environ.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS="1")
    return env


def run_script(name, args, env, cwd):
    script = shutil.which(name)
    if script is None:
        pytest.skip(f"console script {name} is not installed (pip install -e .)")
    return subprocess.run([script, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=300)


def test_console_scripts_exit_zero_on_success_and_non_zero_on_failure(tiny_dataset, shared_encoder, tmp_path,
                                                                      checkout_root):
    env, cwd = console_env(checkout_root), str(tmp_path)
    # the tokenizer reads the text-embedding cache built here (no encoder load in the subprocess)
    load_item_text_embeddings(*(lambda c: (c, create_dataset(c)))(tiny_config(tiny_dataset)))
    common = [f"--dataset={tiny_dataset.name}", f"--config_files={tiny_dataset.yaml_path}",
              f"--data_path={tiny_dataset.data_path}"]
    train = run_script("run_recbole_usr", ["--model=SASRec", *common, f"--checkpoint_dir={tmp_path / 'saved'}",
                                           f"--results_file={tmp_path / 'train.json'}",
                                           *[f"--{k}={v}" for k, v in SMALL_SASREC.items()]], env, cwd)
    assert train.returncode == 0, train.stderr[-3000:]
    assert "'test_result'" not in train.stderr  # the result dict is not the exit status
    model_file = json.loads((tmp_path / "train.json").read_text())["model_file"]

    evaluate = run_script("recbole_usr_evaluate", [f"--model_file={model_file}"], env, cwd)
    assert evaluate.returncode == 0, evaluate.stderr[-3000:]

    tokenize = run_script("recbole_usr_tokenize", [*common, f"--tokenizer_output_dir={tmp_path / 'tok'}",
                                                   "--semantic_dim=8", "--rq_hidden_sizes=[16]", "--rq_codebook_size=4",
                                                   "--tokenizer_epochs=1", "--tokenizer_kmeans_iters=2",
                                                   "--tokenizer_schemes=['hybrid']"], env, cwd)
    assert tokenize.returncode == 0, tokenize.stderr[-3000:]
    assert (tmp_path / "tok" / "semantic_ids.tsv").is_file()

    failed = run_script("run_recbole_usr", ["--model=NoSuchModel", *common], env, cwd)
    assert failed.returncode != 0 and "Unknown model 'NoSuchModel'" in failed.stderr
