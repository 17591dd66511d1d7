"""The semantic-ID artifact: one fit, thread- and RNG-independent, cached, saved in
checkpoints, refused when the item text changed, fitted on warm items only."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from conftest import CHECKOUT_ROOT, fake_text_embeddings, prepare_tiny
from recbole_usr import semantic_id_artifact as artifacts
from recbole_usr.model.item_representations import sentencepiece as spm_module
from recbole_usr.model.item_representations.sentencepiece import code_strings
from recbole_usr.model.sequential_recommender.unified_sasrec import UnifiedSASRec
from recbole_usr.quick_start import load_data_and_model, run
from recbole_usr.trainer import SemanticIDTrainer

SETTINGS = {"semantic_dim": 8, "rq_hidden_sizes": [32], "rq_levels": 3, "rq_codebook_size": 8,
            "rq_distances": ["cosine", "cosine", "euclidean"], "rq_pretrain_epochs": 4,
            "rq_pretrain_batch_size": 32, "seed": 7}

SMALL = {
    "n_layers": 1, "n_heads": 2, "inner_size": 32, "id_dim": 8, "semantic_dim": 16, "rq_hidden_sizes": [32],
    "rq_levels": 2, "rq_distances": ["cosine", "euclidean"], "rq_codebook_size": 4, "rq_pretrain_epochs": 3,
    "train_batch_size": 16, "eval_batch_size": 64, "show_progress": False, "state": "WARNING", "epochs": 2,
}


def synthetic_text(n_items=200, dim=16, seed=0):
    generator = torch.Generator().manual_seed(seed)
    text = torch.randn(n_items + 1, dim, generator=generator)
    text[0] = 0
    return text


def subprocess_env():
    env = dict(os.environ, PYTHONPATH=str(CHECKOUT_ROOT))
    env.pop("OMP_NUM_THREADS", None)  # the thread count is set by the child itself
    return env


def test_same_codes_at_one_and_two_threads(tmp_path):
    script = textwrap.dedent(f"""
        import sys, torch
        threads = int(sys.argv[1])
        torch.set_num_threads(threads)
        from recbole_usr.semantic_id_artifact import fit_semantic_ids
        generator = torch.Generator().manual_seed(0)
        text = torch.randn(301, 24, generator=generator)
        text[0] = 0
        artifact = fit_semantic_ids({SETTINGS!r}, text, torch.arange(1, 301))
        assert torch.get_num_threads() == threads, "the caller's thread count was not restored"
        torch.save(artifact.codes, sys.argv[2])
    """)
    codes = []
    for threads in (1, 2):
        out = tmp_path / f"codes{threads}.pt"
        subprocess.run([sys.executable, "-c", script, str(threads), str(out)], check=True, env=subprocess_env(),
                       cwd=tmp_path)
        codes.append(torch.load(out))
    assert codes[0].shape == (301, 3) and torch.equal(codes[0], codes[1])
    assert codes[0][1:].unique(dim=0).shape[0] > 1  # real codes, not a collapsed table


def test_fit_neither_reads_nor_moves_the_global_rng():
    text = synthetic_text()
    fits = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        expected_next = torch.rand(3)
        torch.manual_seed(seed)
        fits.append(artifacts.fit_semantic_ids(SETTINGS, text, torch.arange(1, 201)))
        assert torch.equal(torch.rand(3), expected_next)
    assert torch.equal(fits[0].codes, fits[1].codes)
    other_seed = artifacts.fit_semantic_ids({**SETTINGS, "seed": 8}, text, torch.arange(1, 201))
    assert not torch.equal(fits[0].codes, other_seed.codes)  # the seed property does drive the fit


def test_paper_faithful_fit_has_random_init_and_no_restarts():
    text = synthetic_text()
    plain = artifacts.fit_semantic_ids({**SETTINGS, "rq_kmeans_init": False, "rq_restart_unused": False}, text,
                                       torch.arange(1, 201))
    default = artifacts.fit_semantic_ids(SETTINGS, text, torch.arange(1, 201))
    assert not any("restarted" in epoch for epoch in plain.history)
    assert any("restarted" in epoch for epoch in default.history)
    assert not bool(plain.tokenizer_state["initialized"]) and bool(default.tokenizer_state["initialized"])


def test_disk_cache_is_reused_keyed_and_checked(tmp_path, monkeypatch, caplog):
    text, items = synthetic_text(), torch.arange(1, 201)
    first = artifacts.load_or_fit_semantic_ids(SETTINGS, text, items, str(tmp_path), "Syn")
    [path] = tmp_path.glob("Syn.semantic-ids.*.pt")

    def no_fit(*args, **kwargs):
        raise AssertionError("refitted although the cache holds this artifact")

    monkeypatch.setattr(artifacts, "fit_semantic_ids", no_fit)
    again = artifacts.load_or_fit_semantic_ids(SETTINGS, text, items, str(tmp_path), "Syn")
    assert torch.equal(again.codes, first.codes) and again.text_digest == first.text_digest
    # another fit set, other settings and other text are other cache entries
    with pytest.raises(AssertionError, match="refitted"):
        artifacts.load_or_fit_semantic_ids(SETTINGS, text, items[:150], str(tmp_path), "Syn")
    with pytest.raises(AssertionError, match="refitted"):
        artifacts.load_or_fit_semantic_ids({**SETTINGS, "rq_pretrain_epochs": 5}, text, items, str(tmp_path), "Syn")
    # a damaged file is reported with its path and rebuilt
    path.write_bytes(path.read_bytes()[:100])
    monkeypatch.undo()
    rebuilt = artifacts.load_or_fit_semantic_ids(SETTINGS, text, items, str(tmp_path), "Syn")
    assert torch.equal(rebuilt.codes, first.codes)
    assert any(str(path) in record.getMessage() for record in caplog.records)
    assert not list(tmp_path.glob(".*.tmp"))  # written through a temporary file, renamed


def test_reload_in_a_fresh_process_at_another_thread_count_is_exact_and_fits_nothing(
        shared_encoder, tiny_dataset, tmp_path):
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = run("UnifiedSASRec", tiny_dataset.name, [str(tiny_dataset.yaml_path)],
                     tiny_dataset.config_dict(**SMALL, checkpoint_dir=str(tmp_path / "saved")))
    finally:
        torch.set_num_threads(previous)
    for cached in tiny_dataset.cache_dir.glob("*.semantic-ids.*.pt"):
        cached.unlink()  # the reload must take the codes from the checkpoint, not from this cache
    script = textwrap.dedent(f"""
        import json, sys, torch
        torch.set_num_threads(2)
        import recbole_usr.semantic_id_artifact as artifacts
        import recbole_usr.quantization.rq_tokenizer as rq
        def refuse(*args, **kwargs):
            raise AssertionError("a tokenizer fit ran during the reload")
        artifacts.fit_semantic_ids = refuse
        rq.fit_tokenizer = refuse
        rq.RQTokenizer.init_codebooks = refuse
        from recbole_usr.quick_start import load_data_and_model
        from recbole_usr.trainer import SemanticIDTrainer
        config, model, _, _, _, test_data = load_data_and_model({result["model_file"]!r})
        metrics = SemanticIDTrainer(config, model).evaluate(test_data, load_best_model=False)
        print("METRICS" + json.dumps({{k: float(v) for k, v in metrics.items()}}))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=subprocess_env(),
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(line for line in done.stdout.splitlines() if line.startswith("METRICS"))
    assert json.loads(line[len("METRICS"):]) == {k: float(v) for k, v in result["test_result"].items()}


def test_reload_with_changed_item_text_is_refused(shared_encoder, tiny_dataset, tmp_path):
    result = run("UnifiedSASRec", tiny_dataset.name, [str(tiny_dataset.yaml_path)],
                 tiny_dataset.config_dict(**{**SMALL, "epochs": 1}, checkpoint_dir=str(tmp_path / "saved")))
    item_file = tiny_dataset.dataset_dir / f"{tiny_dataset.name}.item"
    item_file.write_text(item_file.read_text(encoding="utf-8").replace("Night Cream", "Day Cream"), encoding="utf-8")
    # i11 and i12 have no text: they get the mean embedding of the others, which moved with i06
    with pytest.raises(ValueError, match=r"item text of 'UsrTiny' no longer matches this checkpoint "
                                         r"\(3 item\(s\) encode differently: i06, i11, i12\)"):
        load_data_and_model(result["model_file"])
    # RecBole's own loaders build the model first, then load the checkpoint into it: refused too
    from recbole_usr.compat import load_checkpoint

    checkpoint = load_checkpoint(result["model_file"])
    config, _, train_data, _, _ = prepare_tiny(tiny_dataset, "UnifiedSASRec", {**SMALL, "epochs": 1})
    model = UnifiedSASRec(config, train_data._dataset)  # built from the edited text
    with pytest.raises(ValueError, match="no longer matches this checkpoint"):
        model.load_other_parameter(checkpoint["other_parameter"])


def test_same_text_encoded_with_other_float_bits_passes_and_a_changed_item_is_named():
    text = synthetic_text(n_items=50, dim=24)
    stored = artifacts.text_fingerprint(text)
    rounding = text + 1e-6 * torch.randn(text.shape, generator=torch.Generator().manual_seed(1))
    rounding[0] = 0
    assert artifacts.tensor_digest(rounding) != stored["text_digest"]
    artifacts.check_same_text("Toy", stored, artifacts.text_fingerprint(rounding))  # accepted
    edited = rounding.clone()
    edited[17] = 0.98 * edited[17] + 0.2 * text[3]  # item 17's text changed a little
    with pytest.raises(ValueError, match=r"1 item\(s\) encode differently: internal id 17\)"):
        artifacts.check_same_text("Toy", stored, artifacts.text_fingerprint(edited))
    with pytest.raises(ValueError, match=r"1 item\(s\) encode differently: item-17\)"):
        artifacts.check_same_text("Toy", stored, artifacts.text_fingerprint(edited),
                                  item_tokens=lambda ids: [f"item-{index}" for index in ids])
    with pytest.raises(ValueError, match="50 items then, 49 now"):
        artifacts.check_same_text("Toy", stored, artifacts.text_fingerprint(text[:-1]))
    older = {"text_digest": stored["text_digest"]}  # a checkpoint written before sketches
    artifacts.check_same_text("Toy", older, artifacts.text_fingerprint(text))
    with pytest.raises(ValueError, match="predates text sketches"):
        artifacts.check_same_text("Toy", older, artifacts.text_fingerprint(rounding))


def test_checkpoint_reloads_where_the_encoder_gives_other_float_bits(shared_encoder, tiny_dataset, tmp_path,
                                                                     monkeypatch):
    result = run("UnifiedSASRec", tiny_dataset.name, [str(tiny_dataset.yaml_path)],
                 tiny_dataset.config_dict(**{**SMALL, "epochs": 1}, checkpoint_dir=str(tmp_path / "saved")))
    real_load = artifacts.load_item_text_embeddings

    def other_machine(config, dataset):
        text = real_load(config, dataset)
        noise = 1e-6 * text.abs().max() * torch.randn(text.shape, generator=torch.Generator().manual_seed(0))
        noise[0] = 0  # the padding row stays zeros
        return text + noise

    monkeypatch.setattr(artifacts, "load_item_text_embeddings", other_machine)
    _, model, _, _, _, _ = load_data_and_model(result["model_file"])
    stored = torch.load(result["model_file"], weights_only=False)["other_parameter"]["semantic_ids"]
    assert torch.equal(model.semantic_ids["codes"], stored["codes"])  # the checkpoint's codes, not refitted


@pytest.fixture
def distinct_text(monkeypatch):
    """A 12-d 'text embedding' per item, distinct per item and keyed by its raw token."""
    load = fake_text_embeddings(spread=1.0, offset=2.0)
    monkeypatch.setattr(artifacts, "load_item_text_embeddings", load)
    from recbole_usr.model.item_representations import unified

    monkeypatch.setattr(unified, "load_item_text_embeddings", load)
    return load


@pytest.mark.parametrize("item_repr", ["unified", "spm"])
def test_cold_split_fits_on_warm_items_only(distinct_text, tiny_dataset, tmp_path, monkeypatch, item_repr):
    seen_text, seen_strings = [], []
    real_fit, real_spm = artifacts.fit_tokenizer, spm_module.train_sentencepiece

    def spy_fit(tokenizer, x, *args, **kwargs):
        seen_text.append(x.clone())
        return real_fit(tokenizer, x, *args, **kwargs)

    def spy_spm(sentences, *args, **kwargs):
        seen_strings.append(list(sentences))
        return real_spm(seen_strings[-1], *args, **kwargs)

    monkeypatch.setattr(artifacts, "fit_tokenizer", spy_fit)
    monkeypatch.setattr(spm_module, "train_sentencepiece", spy_spm)
    settings = {**SMALL, "item_repr": item_repr, "hidden_size": 24, "cold_item_ratio": 0.25,
                "spm_vocab_size": 12, "spm_cache_dir": str(tmp_path / "spm")}
    config, dataset, train_data, _, _ = prepare_tiny(tiny_dataset, "UnifiedSASRec", settings)
    train_dataset = train_data._dataset
    artifacts.prepare_semantic_ids(config, train_dataset)
    model = UnifiedSASRec(config, train_dataset)

    cold = torch.as_tensor(train_dataset.cold_items, dtype=torch.long)
    text = distinct_text(config, train_dataset)
    warm = [i for i in range(1, train_dataset.item_num) if i not in set(cold.tolist())]
    assert len(cold) == 3 and len(seen_text) == 1
    fitted = seen_text[0]
    assert fitted.shape[0] == len(warm)
    for item in cold.tolist():  # no held-out item's text reached the fit (k-means runs inside it)
        assert not (fitted == text[item]).all(dim=1).any()
    codes = model.item_repr.codes
    assert codes[cold].shape == (3, 2)  # held-out items still get codes, from the frozen tokenizer
    if item_repr == "spm":
        assert seen_strings == [code_strings(codes[warm], 4)]
        assert (model.item_repr.row_index[cold] >= 0).any(dim=1).all()


def test_evaluation_uses_the_codes_of_the_last_training_epoch(shared_encoder, tiny_dataset):
    settings = {**SMALL, "rq_loss_weight": 5.0, "recon_loss_weight": 5.0, "learning_rate": 0.05}
    config, _, train_data, valid_data, _ = prepare_tiny(tiny_dataset, "UnifiedSASRec", settings)
    model = UnifiedSASRec(config, train_data._dataset)
    trainer = SemanticIDTrainer(config, model)
    representation = model.item_repr
    moved = False
    for epoch in range(3):
        trainer._train_epoch(train_data, epoch)
        trained_with = representation.codes.clone()
        moved = moved or not torch.equal(representation.tokenizer.encode(representation.text_embeddings[1:]),
                                         trained_with[1:])
        trainer.evaluate(valid_data, load_best_model=False)
        assert torch.equal(representation.codes, trained_with)
        table, _ = representation()
        expected = representation.tokenizer.embed_codes(trained_with[1:])
        assert torch.allclose(table[1:, representation.id_dim:], expected)
    assert moved  # the tokenizer moved during training: re-encoding at evaluation would differ
    assert len(trainer.code_churn) == 3 and all(0.0 <= c <= 1.0 for c in trainer.code_churn)
    assert trainer.codebook_history[-1]["code_churn"] == trainer.code_churn[-1]


def test_code_churn_counts_each_level_the_refresh_changed(shared_encoder, tiny_dataset):
    config, _, train_data, _, _ = prepare_tiny(tiny_dataset, "UnifiedSASRec", SMALL)
    representation = UnifiedSASRec(config, train_data._dataset).item_repr
    codes = representation.current_codes()
    n_items, size = codes.shape[0], representation.tokenizer.codebook_size
    stale = codes.clone()
    stale[:4, 0] = (stale[:4, 0] + 1) % size  # 4 items differ at level 1 only
    stale[2:7, -1] = (stale[2:7, -1] + 1) % size  # 5 at the last level, 2 of them also at level 1
    representation.codes[1:] = stale
    churn = representation.refresh_codes()
    assert torch.equal(representation.codes[1:], codes)
    assert churn == pytest.approx(7 / n_items)  # items 0-6 changed somewhere
    expected = [4 / n_items] + [0.0] * (codes.shape[1] - 2) + [5 / n_items]
    assert representation.code_churn_by_level == pytest.approx(expected)
    assert representation.epoch_statistics()["code_churn_by_level"] == pytest.approx(expected)


def test_serving_and_training_sizes_count_what_each_holds(distinct_text, tiny_dataset):
    config, _, train_data, _, _ = prepare_tiny(tiny_dataset, "UnifiedSASRec", SMALL)
    model = UnifiedSASRec(config, train_data._dataset)
    representation = model.item_repr
    parameters = dict(representation.named_parameters())
    id_table = parameters["id_embedding.weight"].numel()
    codebooks = sum(p.numel() for name, p in parameters.items() if name.startswith("tokenizer.levels."))
    mlp = sum(p.numel() for name, p in parameters.items() if name.startswith(("tokenizer.encoder.", "tokenizer.decoder.")))
    n_items = train_data._dataset.item_num
    counts = representation.describe()
    assert counts["serving_size"] == id_table + codebooks + (n_items - 1) * 2  # 2 code indices per item
    assert counts["training_size"] == counts["serving_size"] + mlp + n_items * 12  # + the 12-d text buffer


def test_a_model_initialises_the_same_from_a_cache_hit_or_a_fit(distinct_text, tiny_dataset):
    from recbole.utils import init_seed

    states = []
    for _ in range(2):  # the first build fits (and caches), the second reads the cache
        config, _, train_data, _, _ = prepare_tiny(tiny_dataset, "UnifiedSASRec", SMALL)
        init_seed(config["seed"], config["reproducibility"])
        states.append(UnifiedSASRec(config, train_data._dataset).state_dict())
        if len(states) == 1:
            assert list(tiny_dataset.cache_dir.glob("*.semantic-ids.*.pt"))
    assert states[0].keys() == states[1].keys()
    assert all(torch.equal(states[0][key], states[1][key]) for key in states[0])
