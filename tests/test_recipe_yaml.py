"""The bounded safe YAML reader of recipes (sciformer/recipe_yaml.py): hostile files are refused in one line,
fast, and without writing anything."""

import os
import time
from pathlib import Path

import pytest

from sciformer.config import load_recipe, recipe_from_dict
from sciformer.errors import ConfigError


def refused(path_or_text, tmp_path=None, match: str | None = None) -> str:
    """Load a recipe (a path, or text written to a file) and return its ConfigError message, asserting one line."""
    path = path_or_text
    if isinstance(path_or_text, (str, bytes)):
        path = tmp_path / "r.yaml"
        path.write_bytes(path_or_text.encode() if isinstance(path_or_text, str) else path_or_text)
    with pytest.raises(ConfigError, match=match) as info:
        load_recipe(path)
    message = str(info.value)
    assert "\n" not in message, f"a message is one line: {message!r}"
    return message


def test_recipe_path_says_what_it_is(tmp_path):
    assert "is a directory, not a regular file" in refused(tmp_path)
    assert "is a character device, not a regular file" in refused(Path("/dev/null"))
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)
    assert "is a FIFO (named pipe), not a regular file" in refused(fifo)  # refused without opening it (no hang)
    assert "does not exist" in refused(tmp_path / "missing.yaml")


def test_oversized_recipe_is_refused_before_parsing(tmp_path):
    refused("# padding\n" * 120_000, tmp_path, match=r"is larger than 1 MiB")


def test_billion_laughs_fails_fast(tmp_path):
    levels = ['a0: &a0 "lol"'] + [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    started = time.perf_counter()
    refused("\n".join(levels) + "\n", tmp_path, match=r"aliases expand to more than 100000 values")
    assert time.perf_counter() - started < 1.0


def test_recursive_alias_and_deep_nesting_are_refused(tmp_path):
    refused("data: &a [*a]\n", tmp_path, match=r"refers to a node that contains it \(a recursive alias\)")
    refused("data: " + "[" * 5000 + "]" * 5000 + "\n", tmp_path, match=r"nested deeper than 50 levels \(line 1\)")
    chain = ["a0: &a0 [1]"] + [f"a{i}: &a{i} [*a{i - 1}]" for i in range(1, 60)]
    refused("\n".join(chain) + "\n", tmp_path, match=r"nested deeper than 50 levels once aliases are expanded")


def test_duplicate_keys_are_refused_with_their_lines(tmp_path):
    refused("train:\n  epochs: 1\n  lr: 0.1\n  epochs: 2\n", tmp_path, match=r"duplicate key 'epochs' on line 4 \(first on line 2\)")
    refused("train: {epochs: 1, epochs: 2}\n", tmp_path, match=r"duplicate key 'epochs' on line 1")
    path = tmp_path / "merge.yaml"  # a merge key's values may be overridden: that is what merging is for
    path.write_text("train:\n  <<: {epochs: 1, lr: 0.5}\n  epochs: 2\n")
    assert (load_recipe(path).train.epochs, load_recipe(path).train.lr) == (2, 0.5)


def test_encodings_other_than_utf8_are_named(tmp_path):
    refused("train:\n  epochs: 1\n".encode("utf-16"), tmp_path, match=r"is UTF-16/UTF-32 text or binary")
    refused("train:\n  epochs: 1\n".encode("utf-16-le"), tmp_path, match=r"holds NUL bytes")
    refused(b"data:\n  name: caf\xe9.csv\n", tmp_path, match=r"is not UTF-8 text \(byte 0xe9 on line 2\); save it as UTF-8")
    path = tmp_path / "bom.yaml"
    path.write_bytes("\ufefftrain:\n  epochs: 2\n".encode())  # a UTF-8 byte-order mark is UTF-8
    assert load_recipe(path).train.epochs == 2


def test_huge_integers_are_refused_in_one_line(tmp_path):
    refused("seed: " + "9" * 5000 + "\n", tmp_path, match=r"an integer of 5000 digits on line 1; recipes take integers of at most 100 digits")
    refused("seed: " + "9" * 30 + "\n", tmp_path, match=r"'seed': expected an integer of at most 64 bits")
    refused("seed: -1\n", tmp_path, match=r"'seed': expected an integer in \[0, 4294967295\], got -1")
    with pytest.raises(ConfigError, match=r"override 'seed=9+\.\.\.9+': an integer of 5000 digits"):
        recipe_from_dict({}, ["seed=" + "9" * 5000])


def test_empty_and_non_mapping_recipes_are_refused(tmp_path):
    for text in ("", "# only a comment\n\n", "{}\n"):
        refused(text, tmp_path, match=r"is empty \(only comments or blank lines\)")
    refused("- data\n- model\n", tmp_path, match=r"expected a mapping of sections \(data, model, .*\), got a list")
    refused("just words\n", tmp_path, match=r"got a str")
    refused("train: [unclosed\n", tmp_path, match=r"is not valid YAML: ")


# ---------------------------------------------------------------------- hostile recipes through the CLI
_LAUGHS = "\n".join(['a0: &a0 "lol"'] + [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]) + "\n"
_PDE = "data: {name: darcy_small}\nmodel: {name: galerkin}\n"
HOSTILE_RECIPES = {
    "billion-laughs": _LAUGHS,
    "recursive-alias": "data: &a [*a]\n",
    "deep-flow-nesting": "data: " + "[" * 20000 + "]" * 20000 + "\n",
    "deep-block-nesting": "".join(f"{'  ' * i}k{i}:\n" for i in range(80)) + "  " * 80 + "v\n",
    "deep-alias-chain": "\n".join(["a0: &a0 [1]"] + [f"a{i}: &a{i} [*a{i - 1}]" for i in range(1, 80)]) + "\n",
    "duplicate-section": "train: {epochs: 1}\ntrain: {epochs: 2}\n",
    "duplicate-key": "train:\n  lr: 0.1\n  lr: 0.2\n",
    "duplicate-flow-key": "model: {name: patchtst, name: itransformer}\n",
    "utf16-bom": "train: {epochs: 1}\n".encode("utf-16"),
    "utf16-no-bom": "train: {epochs: 1}\n".encode("utf-16-le"),
    "utf32": "train: {epochs: 1}\n".encode("utf-32"),
    "latin1": "data: {name: caf\xe9.csv}\n".encode("latin-1"),
    "binary": bytes(range(256)) * 4,
    "int-5000-digits": "seed: " + "7" * 5000 + "\n",
    "int-5000-digits-in-list": "data: {split: [" + "1" * 5000 + ", 0, 0]}\n",
    "hex-int-200-digits": "seed: 0x" + "f" * 200 + "\n",
    "int-30-digits": "seed: " + "9" * 30 + "\n",
    "negative-seed": "seed: -3\n",
    "float-seed": "seed: 1.5\n",
    "empty": "",
    "comment-only": "# nothing here\n\n",
    "empty-mapping": "{}\n",
    "list": "- data\n- model\n",
    "scalar": "42\n",
    "two-documents": "train: {epochs: 1}\n---\ntrain: {epochs: 2}\n",
    "python-tag": "data: !!python/object/apply:os.system ['echo pwned']\n",
    "python-name-tag": "data: !!python/name:os.system\n",
    "impossible-date": "name: 2024-13-45\n",
    "tab-indent": "train:\n\tepochs: 1\n",
    "unclosed-bracket": "train: [1, 2\n",
    "oversized": "# " + "x" * (1 << 20) + "\n",
    "unknown-section": "trian: {epochs: 1}\n",
    "section-not-mapping": "train: [1, 2]\n",
    "model-not-mapping": "model: itransformer\n",
    "model-name-int": "model: {name: 7}\n",
    "model-size-removed": _PDE.replace("galerkin", "poseidon, size: T"),
    "preset-fixed-key": _PDE.replace("galerkin", "pde_transformer_s, hidden_size: 32"),
    "split-nan": "data: {split: [.nan, 0.5, 0.5]}\n",
    "split-inf": "data: {split: [.inf, 0.5, 0.5]}\n",
    "split-zero": "data: {split: [0, 0.5, 0.5]}\n",
    "split-negative": "data: {split: [1.2, -0.1, -0.1]}\n",
    "split-two": "data: {split: [0.5, 0.5]}\n",
    "split-sum": "data: {split: [0.5, 0.3, 0.1]}\n",
    "lr-inf": "train: {lr: .inf}\n",
    "lr-1e999": "train: {lr: 1e999}\n",
    "lr-negative": "train: {lr: -0.001}\n",
    "lr-string": "train: {lr: fast}\n",
    "epochs-zero": "train: {epochs: 0}\n",
    "batch-negative": "train: {batch_size: -5}\n",
    "patience-bool": "train: {patience: yes}\n",
    "grad-clip-nan": "train: {grad_clip: .nan}\n",
    "device-tpu": "train: {device: tpu}\n",
    "loss-unknown": "train: {loss: huber}\n",
    "h1-loss-forecaster": "train: {loss: rel_l2_h1}\n",
    "d-model-zero": "model: {name: itransformer, d_model: 0}\n",
    "heads-zero": "model: {name: itransformer, n_heads: 0}\n",
    "layers-negative": "model: {name: autoformer, e_layers: -1}\n",
    "dropout-one": "model: {name: informer, dropout: 1.0}\n",
    "dropout-negative": "model: {name: patchtst, dropout: -0.2}\n",
    "heads-not-dividing": "model: {name: itransformer, d_model: 16, n_heads: 3}\n",
    "activation-unknown": "model: {name: etsformer, activation: swish}\n",
    "data-filled-key": "model: {name: itransformer, n_vars: 7}\n",
    "pde-with-lookback": _PDE.replace("darcy_small", "darcy_small, lookback: 96"),
    "pde-with-target": _PDE.replace("darcy_small", "darcy_small, target: u"),
    "forecast-with-initial-step": "data: {initial_step: 2}\n",
    "forecast-with-augment": "train: {augment: dihedral}\n",
    "generate-nan": "data: {name: b.h5, generate: {generator: burgers1d, nu: .nan}}\nmodel: {name: galerkin}\n",
    "data-dev-zero": "data: {name: /dev/zero}\n",
    "data-directory": "data: {name: ./}\n",
    "data-missing": "data: {name: nowhere/x.csv}\n",
    "dataset-unknown": "data: {name: ett_h3}\n",
    "time-features-unknown": "data: {time_features: fortnight}\n",
    "name-with-path": "name: ../../outside\n",
    "name-absolute": "name: /tmp/run\n",
    "name-hidden": "name: .hidden\n",
}


@pytest.mark.parametrize("verb", ["validate", "fit"])
@pytest.mark.parametrize("case", sorted(HOSTILE_RECIPES))
def test_hostile_recipe_exits_2_with_one_line_and_touches_nothing(case, verb, tmp_path, monkeypatch, capsys):
    from sciformer.cli import main

    monkeypatch.chdir(tmp_path)
    content = HOSTILE_RECIPES[case]
    path = tmp_path / "hostile.yaml"
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    started = time.perf_counter()
    assert main([verb, str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sciformer: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    assert time.perf_counter() - started < 2.0
    assert [p.name for p in tmp_path.iterdir()] == ["hostile.yaml"]  # no run folder, no data, no tracking store
