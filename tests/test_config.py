"""Property precedence, the unknown-property guard and isolation from ``sys.argv``.

Precedence (lowest first): RecBole's yamls, the plugin's overall / model / dataset yamls, the
user's ``config_file_list``, then ``config_dict`` (the command line).
"""

import os
import sys

import pytest
import recbole
import yaml
from recbole.config import Config

from conftest import write_yaml
from recbole_usr import recbole_config
from recbole_usr.quick_start import build_config

RECBOLE_PROPERTIES = os.path.join(os.path.dirname(recbole.__file__), "properties")


def read_yaml(path):
    with open(path) as f:
        return yaml.safe_load(f)


@pytest.fixture
def user_yaml(tmp_path):
    return write_yaml(tmp_path / "user.yaml", "learning_rate: 0.005\nhidden_size: 32\n")


def test_recbole_sasrec_defaults_are_what_these_tests_assume():
    # Guards the tests below: they are only meaningful if RecBole's defaults differ from ours.
    sasrec = read_yaml(os.path.join(RECBOLE_PROPERTIES, "model", "SASRec.yaml"))
    overall = read_yaml(os.path.join(RECBOLE_PROPERTIES, "overall.yaml"))
    assert (sasrec["hidden_size"], sasrec["n_layers"], sasrec["inner_size"]) == (64, 2, 256)
    assert (overall["learning_rate"], overall["stopping_step"]) == (0.001, 10)
    assert "Precision" in overall["metrics"]


def test_command_line_beats_user_yaml_beats_model_yaml(tiny_dataset, user_yaml):
    config = build_config(
        "SASRec",
        tiny_dataset.name,
        config_file_list=[str(tiny_dataset.yaml_path), str(user_yaml)],
        config_dict=tiny_dataset.config_dict(learning_rate="0.02"),
    )
    assert config["learning_rate"] == 0.02  # config_dict beats the yaml's 0.005, typed from "0.02"
    assert config["hidden_size"] == 32  # user yaml beats RecBole's SASRec.yaml (64)
    assert config["inner_size"] == 256  # untouched: RecBole's SASRec.yaml
    assert config["data_path"] == os.path.join(str(tiny_dataset.data_path), tiny_dataset.name)


def test_without_overrides_recbole_model_yaml_applies(tiny_dataset):
    config = build_config(
        "SASRec", tiny_dataset.name, [str(tiny_dataset.yaml_path)], tiny_dataset.config_dict()
    )
    assert (config["hidden_size"], config["learning_rate"]) == (64, 0.001)


def test_plugin_yamls_in_order_between_recbole_and_user(tiny_dataset, user_yaml, tmp_path, monkeypatch):
    """A private properties/ dir with one key set at each level shows the whole chain."""
    props = tmp_path / "plugin_properties"
    overall = read_yaml(os.path.join(recbole_config.PROPERTIES_DIR, "overall.yaml"))
    overall.update(stopping_step=3, weight_decay=0.1, hidden_dropout_prob=0.1)
    write_yaml(props / "overall.yaml", yaml.safe_dump(overall))
    write_yaml(
        props / "model" / "SASRec.yaml",
        "weight_decay: 0.2\nhidden_dropout_prob: 0.2\nattn_dropout_prob: 0.2\nn_layers: 3\n",
    )
    write_yaml(
        props / "dataset" / f"{tiny_dataset.name}.yaml",
        "hidden_dropout_prob: 0.3\nattn_dropout_prob: 0.3\nn_heads: 4\n",
    )
    write_yaml(tmp_path / "user2.yaml", "attn_dropout_prob: 0.4\nn_heads: 8\n")
    monkeypatch.setattr(recbole_config, "PROPERTIES_DIR", str(props))

    config = build_config(
        "SASRec",
        tiny_dataset.name,
        [str(tiny_dataset.yaml_path), str(user_yaml), str(tmp_path / "user2.yaml")],
        tiny_dataset.config_dict(learning_rate="0.02"),
    )
    assert config["stopping_step"] == 3  # plugin overall > RecBole overall (10)
    assert config["weight_decay"] == 0.2  # plugin model > plugin overall
    assert config["n_layers"] == 3  # plugin model > RecBole SASRec.yaml (2)
    assert config["hidden_dropout_prob"] == 0.3  # plugin dataset > plugin model
    assert config["attn_dropout_prob"] == 0.4  # user yaml > plugin dataset
    assert config["n_heads"] == 8
    assert config["learning_rate"] == 0.02  # command line > user yaml
    assert config["hidden_size"] == 32


def test_real_plugin_properties_for_ml_100k():
    config = build_config("SASRec", "ml-100k")
    # the plugin's dataset yaml beats its overall.yaml (text_fields: ~)
    assert config["text_fields"] == ["movie_title", "release_year", "class"]
    # the plugin's overall.yaml beats RecBole's overall.yaml
    assert config["metrics"] == ["Recall", "MRR", "NDCG", "Hit"]
    assert config["topk"] == [5, 10]
    assert config["valid_metric"] == "NDCG@10"
    assert config["text_encoder"] == "all-MiniLM-L6-v2"
    assert config["eval_args"]["split"] == {"LS": "valid_and_test"}
    assert config["eval_args"]["order"] == "TO"
    assert config["load_col"] == {"inter": ["user_id", "item_id", "timestamp"]}
    # SASRec is CE: build_config drops RecBole's default sampler instead of failing
    assert config["train_neg_sample_args"]["distribution"] == "none"
    assert config["MODEL_INPUT_TYPE"].name == "POINTWISE"


def test_unknown_command_line_property_suggests_the_right_one(tiny_dataset):
    with pytest.raises(ValueError) as error:
        build_config(
            "SASRec",
            tiny_dataset.name,
            [str(tiny_dataset.yaml_path)],
            tiny_dataset.config_dict(hiden_size="3"),
        )
    message = str(error.value)
    assert "'hiden_size'" in message
    assert "did you mean 'hidden_size'" in message
    assert "strict_properties=False" in message


def test_unknown_property_in_user_yaml_is_reported(tiny_dataset, tmp_path):
    typo = write_yaml(tmp_path / "typo.yaml", "learnig_rate: 0.01\n")
    with pytest.raises(ValueError, match=r"property files.*'learnig_rate'.*'learning_rate'"):
        build_config(
            "SASRec", tiny_dataset.name, [str(tiny_dataset.yaml_path), str(typo)], tiny_dataset.config_dict()
        )


@pytest.mark.parametrize("flag", [False, "False"])  # "False" is what the command line passes
def test_strict_properties_false_allows_unknown_properties(tiny_dataset, flag):
    config = build_config(
        "SASRec",
        tiny_dataset.name,
        [str(tiny_dataset.yaml_path)],
        tiny_dataset.config_dict(hiden_size="3", strict_properties=flag),
    )
    assert config["hiden_size"] == 3
    assert config["hidden_size"] == 64


def test_missing_user_yaml_is_an_error(tiny_dataset, tmp_path):
    with pytest.raises(FileNotFoundError):
        build_config(
            "SASRec", tiny_dataset.name, [str(tmp_path / "absent.yaml")], tiny_dataset.config_dict()
        )


def test_sys_argv_does_not_leak_into_config(tiny_dataset, monkeypatch):
    argv = ["pytest", "-q", "--hidden_size=7", "--learning_rate=0.9"]
    monkeypatch.setattr(sys, "argv", list(argv))
    files = [str(tiny_dataset.yaml_path)]
    # Control: RecBole's Config on its own does read these flags.
    raw = Config(model="SASRec", dataset=tiny_dataset.name, config_file_list=files,
                 config_dict=tiny_dataset.config_dict(train_neg_sample_args=None))
    assert raw["hidden_size"] == 7

    config = build_config("SASRec", tiny_dataset.name, files, tiny_dataset.config_dict())
    assert (config["hidden_size"], config["learning_rate"]) == (64, 0.001)
    assert sys.argv == argv  # restored afterwards


@pytest.mark.parametrize("recipe, model", [("id_ss", "UnifiedSASRec"), ("unified_ss", "UnifiedSASRec"),
                                           ("paper", "UnifiedSASRec"), ("tiger_paper", "TIGER")])
def test_every_recipe_key_is_a_known_property(recipe, model):
    """RecBole ignores unknown keys silently: a misspelt recipe key would change nothing."""
    import recbole_usr

    def keys(path):
        with open(path) as f:
            return set(yaml.safe_load(f) or {})

    plugin = os.path.join(os.path.dirname(recbole_usr.__file__), "properties")
    known = keys(os.path.join(plugin, "model", f"{model}.yaml")) | keys(os.path.join(plugin, "overall.yaml"))
    for defaults in ("overall.yaml", os.path.join("model", "SASRec.yaml"), os.path.join("dataset", "sample.yaml")):
        known |= keys(os.path.join(os.path.dirname(recbole.__file__), "properties", defaults))
    unknown = keys(os.path.join(plugin, "recipe", f"{recipe}.yaml")) - known
    assert not unknown, f"{recipe}.yaml sets properties no defaults file declares: {sorted(unknown)}"
