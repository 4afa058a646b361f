"""A comparisons file (nbkit.design.comparisons_file): read on top of the built-in variants and comparisons, checked
key by key, every bad file one line naming the file and the key; the built-in study unchanged."""

import json
import sys
from pathlib import Path

import pytest
import torch

from nbkit.cli import main
from nbkit.design.comparisons import COMPARISONS, expand, get_comparison
from nbkit.design.comparisons_file import StudyError, builtin, check_models, load_study
from nbkit.design.models import create_model, parameter_count
from nbkit.design.settings import Settings
from nbkit.design.variants import VARIANTS, get_variant, resolve
from nbkit.sweeps.sweep import plan, settings_key
from tests.conftest import REPO

MODULE = '''
import torch
from torch import nn

class Tiny(nn.Module):
    def __init__(self, num_classes, width=4):
        super().__init__()
        self.conv = nn.Conv2d(3, width, 3, padding=1)
        self.head = nn.Linear(width, num_classes)
    def forward(self, x):
        return self.head(self.conv(x).mean((2, 3)))

class Wrong(nn.Module):
    def __init__(self, num_classes):
        super().__init__()
        self.head = nn.Linear(3, num_classes + 1)
    def forward(self, x):
        return self.head(x.mean((2, 3)))

def nothing(num_classes, settings):
    return None

class Pair(Tiny):
    def forward(self, x):
        return super().forward(x), 1
'''

GOOD = '''
[variants.tiny]
model = "own_models_study:Tiny"
description = "a one-convolution net"
model_kwargs = { width = 8 }

[variants.tiny-clr]
base = "tiny"
constant_lr = 1e-4

[variants.gn-aug]
base = "resnet18-gn"
use_augmentation = true

[comparisons.mine]
question = "Does tiny keep up?"
variants = ["resnet18", "tiny", "tiny-clr", "gn-aug"]
baseline = "resnet18"
expected = "no"
'''


@pytest.fixture
def module(tmp_path, monkeypatch):
    """A user's module, importable from the working directory as `own_models_study`."""
    (tmp_path / "own_models_study.py").write_text(MODULE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    sys.modules.pop("own_models_study", None)  # the next test imports its own copy


def write(tmp_path: Path, text: str, name: str = "study.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_file_adds_variants_and_comparisons_on_top_of_the_builtin_ones(tmp_path):
    study = load_study(write(tmp_path, GOOD))
    assert list(study.variants)[:len(VARIANTS)] == list(VARIANTS) and study.own_variants == ["tiny", "tiny-clr", "gn-aug"]
    tiny_clr = study.variants["tiny-clr"].settings
    assert (tiny_clr.model, tiny_clr.model_kwargs, tiny_clr.constant_lr) == ("own_models_study:Tiny", {"width": 8}, 1e-4)
    assert study.variants["tiny-clr"].description == "tiny with constant_lr=0.0001"  # said from what it changes
    gn_aug = study.variants["gn-aug"].settings
    assert gn_aug == VARIANTS["resnet18-gn"].settings.replace(use_augmentation=True)
    (mine,) = study.own_comparisons
    assert (mine.variants, mine.baseline, mine.expected) == (("resnet18", "tiny", "tiny-clr", "gn-aug"), "resnet18", "no")
    assert get_comparison("mine", study) is mine and get_comparison("models", study) is COMPARISONS["models"]
    assert expand(["mine", "toy-dilated"], study) == ["resnet18", "tiny", "tiny-clr", "gn-aug", "toy-dilated"]
    assert resolve("tiny", study, max_iter=7)[1].max_iter == 7
    with pytest.raises(ValueError, match="unknown comparison 'mine'"):
        get_comparison("mine")  # the built-in tables stay as they are
    assert "tiny" not in VARIANTS and "mine" not in COMPARISONS and builtin().variants == VARIANTS


def test_the_same_file_in_yaml_reads_the_same(tmp_path):
    yaml_text = """
variants:
  tiny: {model: "own_models_study:Tiny", description: a one-convolution net, model_kwargs: {width: 8}}
  tiny-clr: {base: tiny, constant_lr: 1e-4}
  gn-aug: {base: resnet18-gn, use_augmentation: true}
comparisons:
  mine: {question: "Does tiny keep up?", variants: [resnet18, tiny, tiny-clr, gn-aug], baseline: resnet18, expected: "no"}
"""
    toml, yaml = load_study(write(tmp_path, GOOD)), load_study(write(tmp_path, yaml_text, "study.yml"))
    assert [v.settings for v in toml.variants.values()] == [v.settings for v in yaml.variants.values()]
    assert [(c.variants, c.question) for c in toml.own_comparisons] == [(c.variants, c.question) for c in yaml.own_comparisons]


HOSTILE = {
    "unknown top-level key": ("[variant.x]\nmodel = 'timm/resnet18'\n", "variant: unknown key; did you mean 'variants'?"),
    "unknown variant key": ("[variants.x]\nmodel = 'timm/resnet18'\ndescripton = 'y'\n",
                            "variants.x.descripton: unknown key; did you mean 'description'?"),
    "unknown setting": ("[variants.x]\nbase = 'resnet18'\nconstant_rl = 1e-4\n",
                        "variants.x.constant_rl: unknown key; did you mean 'constant_lr'?"),
    "setting out of range": ("[variants.x]\nbase = 'resnet18'\nmixstyle_level = 9\n", "variants.x: mixstyle_level expects 0..4"),
    "no base nor model": ("[variants.x]\nconstant_lr = 1e-4\n", "variants.x: expected a base"),
    "unknown base": ("[variants.x]\nbase = 'resnet81'\n", "variants.x.base: unknown variant 'resnet81'; did you mean 'resnet18'?"),
    "circular bases": ("[variants.a]\nbase = 'b'\n[variants.b]\nbase = 'c'\n[variants.c]\nbase = 'a'\n",
                       "variants.a.base: circular bases: a -> b -> c -> a"),
    "its own base": ("[variants.a]\nbase = 'a'\n", "variants.a.base: circular bases: a -> a"),
    "a built-in variant's name": ("[variants.resnet18]\nbase = 'resnet18'\n",
                                  "variants.resnet18: 'resnet18' is one of nbkit's variants"),
    "a built-in comparison's name": ("[comparisons.models]\nquestion = 'q'\nvariants = ['resnet18']\n",
                                     "comparisons.models: 'models' is one of nbkit's comparisons"),
    "a variant's name for a comparison": ("[variants.x]\nbase = 'resnet18'\n[comparisons.x]\nquestion = 'q'\n"
                                          "variants = ['x']\n", "comparisons.x: 'x' is already a variant of this file"),
    "a built-in comparison's name for a variant": ("[variants.models]\nbase = 'resnet18'\n",
                                                   "variants.models: 'models' is already one of nbkit's comparisons"),
    "a name that is a path": ("[variants.'../x']\nbase = 'resnet18'\n", "variants.../x: expected a name of letters"),
    "duplicate TOML table": ("[variants.x]\nbase = 'resnet18'\n[variants.x]\nbase = 'resnet34'\n", "not valid TOML"),
    "a multi-line description": ("[variants.x]\nbase = 'resnet18'\ndescription = \"a\\nb\"\n",
                                 "variants.x.description: expected one line of text"),
    "missing variant in a comparison": ("[comparisons.c]\nquestion = 'q'\nvariants = ['resnet18', 'toy-dilatd']\n",
                                        "comparisons.c.variants: unknown variant 'toy-dilatd'; did you mean 'toy-dilated'?"),
    "a variant listed twice": ("[comparisons.c]\nquestion = 'q'\nvariants = ['resnet18', 'resnet18']\n",
                               "comparisons.c.variants: 'resnet18' is listed twice"),
    "baseline not a member": ("[comparisons.c]\nquestion = 'q'\nvariants = ['resnet18']\nbaseline = 'resnet34'\n",
                              "comparisons.c.baseline: expected one of the comparison's variants (resnet18)"),
    "no question": ("[comparisons.c]\nvariants = ['resnet18']\n", "comparisons.c.question: expected a question"),
    "unknown comparison key": ("[comparisons.c]\nquestion = 'q'\nvariants = ['resnet18']\nexpect = 'x'\n",
                               "comparisons.c.expect: unknown key; did you mean 'expected'?"),
    "nothing in it": ("", "no variants or comparisons"),
    "model_kwargs on nbkit's model": ("[variants.x]\nbase = 'resnet18'\nmodel_kwargs = { a = 1 }\n",
                                      "variants.x: model_kwargs applies to timm/<name> and package.module:callable"),
}


@pytest.mark.parametrize("case", HOSTILE)
def test_a_bad_file_is_one_line_naming_the_file_and_the_key(case, tmp_path):
    text, message = HOSTILE[case]
    path = write(tmp_path, text)
    with pytest.raises(StudyError) as e:
        load_study(path)
    assert str(e.value).startswith(f"{path}: ") and message in str(e.value) and "\n" not in str(e.value)


def test_duplicate_yaml_keys_are_refused(tmp_path):
    path = write(tmp_path, "variants:\n  x: {base: resnet18}\n  x: {base: resnet34}\n", "study.yaml")
    with pytest.raises(StudyError, match=r"study.yaml: not valid YAML \(duplicate key 'x'"):
        load_study(path)


def test_a_yaml_file_with_aliases_is_refused_before_it_expands(tmp_path):
    """A "billion laughs" of 9 levels (a few hundred bytes that expand to 10^9 values)."""
    levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"] + [
        f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    path = write(tmp_path, "\n".join(levels) + "\nvariants:\n  bomb: {base: resnet18, max_iter: *a8}\n", "bomb.yml")
    with pytest.raises(StudyError, match=r"bomb.yml: not valid YAML \(found an alias \(\*a0\); expected plain values"):
        load_study(path)


@pytest.mark.parametrize("model, message", [
    ("own_models_study:nothing", "variants.bad.model: model 'own_models_study:nothing' returned NoneType, not an nn.Module"),
    ("own_models_study:Wrong", "variants.bad.model: model 'own_models_study:Wrong' returned shape (2, 11); expected "
                               "logits of shape (batch, classes) = (2, 10)"),
    ("own_models_study:Tinny", "variants.bad.model: model 'own_models_study:Tinny': own_models_study has no "
                               "'Tinny'; did you mean 'Tiny'?"),
    ("no_such_module:Net", "variants.bad.model: model 'no_such_module:Net': cannot import no_such_module"),
    ("own_models_study.Tiny", "variants.bad.model: unknown model 'own_models_study.Tiny'"),
])
def test_a_model_that_cannot_serve_is_refused_naming_the_file_and_the_key(model, message, module):
    path = write(module, f"[variants.bad]\nmodel = '{model}'\n")
    with pytest.raises(StudyError) as e:
        check_models(load_study(path))
    assert str(e.value).startswith(f"{path}: ") and message in str(e.value) and "\n" not in str(e.value)


def test_the_cli_says_a_bad_file_in_one_line(module, capsys):
    path = write(module, "[variants.bad]\nmodel = 'own_models_study:Wrong'\n")
    assert main(["variants", "--comparisons", str(path), "--num-classes", "10"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"nbkit variants: error: {path}: variants.bad.model: model 'own_models_study:Wrong' returned "
                   "shape (2, 11); expected logits of shape (batch, classes) = (2, 10)")
    assert main(["summary", "--comparisons", str(path / "absent.toml")]) == 2
    assert "cannot read the comparisons file" in capsys.readouterr().err


@pytest.mark.parametrize("model, said", [
    ("Wrong", "returned shape (2, 11); expected logits of shape (batch, classes) = (2, 10)"),
    ("Pair", "returned a tuple; expected logits of shape (batch, classes) = (2, 10)"),
])
def test_train_checks_a_files_model_before_it_makes_a_run_folder(module, capsys, model, said):
    path = write(module, f"[variants.bad]\nmodel = 'own_models_study:{model}'\n")
    runs = module / "runs"
    assert main(["train", "bad", "--comparisons", str(path), "--dataset", "synthetic", "--max-steps", "2",
                 "--device", "cpu", "--runs-dir", str(runs)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"nbkit train: error: {path}: variants.bad.model: model 'own_models_study:{model}' {said}"
    assert not runs.exists()  # nothing half-made


def test_variants_lists_the_files_variants_with_their_parameters(module, capsys):
    path = write(module, GOOD)
    assert main(["variants", "--comparisons", str(path), "--num-classes", "10"]) == 0
    out = capsys.readouterr().out
    tiny = next(l for l in out.splitlines() if l.startswith("tiny "))
    assert "{:,}".format(3 * 8 * 9 + 8 + 8 * 10 + 10) in tiny and "a one-convolution net" in tiny
    assert f"30 variants (23 of the original study, 4 of nbkit's own, 3 of {path})" in out
    assert "comparison mine" in out and "baseline resnet18; expected: no" in out


def test_a_run_records_its_variants_definition_and_plans_the_same_folder_without_the_file(module):
    study = load_study(write(module, GOOD))
    (job,) = plan(["tiny-clr"], 1, {"dataset": "synthetic"}, module / "runs", study)
    assert job.definition == {"name": "tiny-clr", "description": "tiny with constant_lr=0.0001", "base": "tiny",
                              "options": {"model": "own_models_study:Tiny", "model_kwargs": {"width": 8},
                                          "constant_lr": 0.0001},
                              "source": str(module / "study.toml"), "model_file": "own_models_study.py"}
    again = Settings(**json.loads(json.dumps(job.settings.to_dict())))  # as config.json holds it
    assert again == job.settings and settings_key(again) == job.run_dir.name.rsplit("-s", 1)[0]


def test_model_kwargs_never_change_a_builtin_runs_identity():
    assert "model_kwargs" not in Settings().identity()
    assert Settings(model="timm/x", model_kwargs="{img_size: 32}").identity()["model_kwargs"] == {"img_size": 32}
    with pytest.raises(TypeError, match="read-only"):
        Settings(model="timm/x", model_kwargs={"a": 1}).model_kwargs["a"] = 2


def shipped_runs() -> list[dict]:
    return [json.loads(p.read_text()) | {"folder": p.parent} for p in sorted(REPO.glob("artifacts/runs*/*/*/*/config.json"))]


@pytest.mark.skipif(not shipped_runs(), reason="no shipped runs in this checkout")
def test_the_builtin_study_is_unchanged_its_shipped_runs_plan_to_their_own_folders():
    """Every shipped run's settings are its variant's plus run-level ones, `plan` names its folder
    as it was named, and its model has the parameters it had."""
    counted = {}
    for config in shipped_runs():
        variant, saved = get_variant(config["variant"]), Settings(**config["settings"])
        run_level = {k: v for k, v in config["settings"].items() if k not in variant.options and k != "model"}
        (job,) = plan([variant.name], 1, run_level, config["folder"].parents[2])
        assert job.settings == saved and job.run_dir == config["folder"], config["folder"]
        key = (variant.name, config["dataset"]["num_classes"])
        if key not in counted:
            with torch.device("meta"):
                counted[key] = parameter_count(create_model(variant.name, key[1]))
        assert counted[key] == config["parameters"], config["folder"]


def test_the_example_study_reads_and_its_runs_plan_to_their_own_folders(monkeypatch):
    """examples/: the comparisons file pits the user's CNN and a timm model against resnet18 and
    toy-dilated; each shipped run records its variant's definition and `plan` finds its folder."""
    monkeypatch.chdir(REPO)  # the import path examples.my_models resolves from the repository root
    study = load_study("examples/my-study.toml")
    mine = get_comparison("mine", study)
    assert {"resnet18", "toy-dilated", "small-cnn", "convnext-atto"} <= set(mine.variants) and mine.baseline == "resnet18"
    with torch.device("meta"):
        assert parameter_count(create_model(study.variants["small-cnn"].settings, 10)) == 94_762
    configs = [json.loads(p.read_text()) | {"folder": p.parent} for p in sorted(REPO.glob("examples/runs/*/*/*/config.json"))]
    assert {c["variant"] for c in configs} >= {"resnet18", "small-cnn", "small-cnn-wide", "convnext-atto"}
    for config in configs:
        variant = study.variants[config["variant"]]
        run_level = {k: v for k, v in config["settings"].items() if k not in variant.options and k != "model"}
        (job,) = plan([variant.name], 1, run_level, config["folder"].parents[2], study)
        assert job.settings == Settings(**config["settings"]) and job.run_dir == config["folder"], config["folder"]
        if variant.source is not None:
            assert config["definition"] == variant.definition()


def test_an_original_format_config_takes_model_kwargs_as_a_mapping(module):
    config = write(module, "model: own_models_study:Tiny\nmodel_kwargs:\n  width: 8\ntailor_num_classes: true\n",
                   "tiny.yml")
    name, s = resolve(str(config))
    assert s.model_kwargs == {"width": 8}
    assert create_model(s, 10).net.conv.out_channels == 8
    listed = write(module, "model: own_models_study:Tiny\nmax_iter:\n  a: 1\n", "listed.yml")
    with pytest.raises(Exception, match="max_iter expects one value"):  # other settings stay one value each
        resolve(str(listed))
