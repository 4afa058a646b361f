"""Search spaces in a comparisons file (nbkit.design.search_space): parsed per variant and per
comparison, every bad one refused in one line naming the file and the key."""

import pytest

from nbkit.design.comparisons_file import StudyError, load_study
from nbkit.design.search_space import Param, space_of
from tests.conftest import REPO

FILE = '''
[variants.clr]
base = "resnet18"
constant_lr = 1e-4

[variants.clr.search]
constant_lr = { log_uniform = [1e-5, 1e-3] }

[comparisons.both]
question = "Does a constant rate keep up once each is tuned?"
variants = ["resnet18", "clr"]

[comparisons.both.search]
warmup_max_lr = { log_uniform = [1e-4, 1e-2] }
warmup_num_steps = { int = [0, 50] }
gradient_clipping = { uniform = [1.0, 100.0] }
use_augmentation = { choice = [false, true] }
resnet_norm_type = { choice = ["bn", "gn"] }
'''


def write(tmp_path, text, name="study.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_spaces_per_variant_and_per_comparison(tmp_path):
    study = load_study(write(tmp_path, FILE))
    assert study.variant_search["clr"] == (Param("constant_lr", "log_uniform", 1e-5, 1e-3),)
    both = study.comparison_search["both"]
    assert [p.name for p in both] == ["warmup_max_lr", "warmup_num_steps", "gradient_clipping", "use_augmentation",
                                      "resnet_norm_type"]
    assert both[1] == Param("warmup_num_steps", "int", 0, 50)
    assert both[3].choices == (False, True)
    # a variant's own space wins over its comparison's; nbkit's variant takes the comparison's
    assert space_of(study, "clr", "both") == study.variant_search["clr"]
    assert space_of(study, "resnet18", "both") == both
    with pytest.raises(ValueError, match=r"variant 'resnet18' has no search space; add \[variants.resnet18.search\]"):
        space_of(study, "resnet18")
    # the variant itself is read as before: the search table is not a setting
    assert study.variants["clr"].options == {"model": "resnet18", "constant_lr": 1e-4}


def test_the_shipped_example_reads():
    study = load_study(REPO / "examples" / "tune-study.toml")
    space = space_of(study, "small-cnn", "tuned")
    assert {p.name: p.kind for p in space} == {"warmup_max_lr": "log_uniform", "warmup_num_steps": "int",
                                               "use_augmentation": "choice"}


BAD = [
    ('lr = { log_uniform = [1e-4, 1e-2] }', "comparisons.both.search.lr", "unknown setting"),
    ('seed = { int = [0, 9] }', "comparisons.both.search.seed", "seed is not searched"),
    ('model = { choice = ["resnet18", "toy-dilated"] }', "comparisons.both.search.model", "not searched"),
    ('warmup_max_lr = { normal = [0, 1] }', "comparisons.both.search.warmup_max_lr", "expected one of"),
    ('warmup_max_lr = { uniform = [1e-4, 1e-2], log_uniform = [1e-4, 1e-2] }',
     "comparisons.both.search.warmup_max_lr", "expected one of"),
    ('warmup_max_lr = 1e-3', "comparisons.both.search.warmup_max_lr", "expected one of"),
    ('warmup_max_lr = { uniform = [1e-2, 1e-4] }', "search.warmup_max_lr.uniform", "expected low < high"),
    ('warmup_max_lr = { log_uniform = [0.0, 1e-2] }', "search.warmup_max_lr.log_uniform", "low > 0"),
    ('warmup_max_lr = { uniform = [1e-4, nan] }', "search.warmup_max_lr.uniform", "two finite numbers"),
    ('warmup_max_lr = { uniform = [1e-4, inf] }', "search.warmup_max_lr.uniform", "two finite numbers"),
    ('warmup_max_lr = { uniform = [true, false] }', "search.warmup_max_lr.uniform", "two finite numbers"),
    ('warmup_max_lr = { uniform = [1e-4] }', "search.warmup_max_lr.uniform", "two finite numbers"),
    ('warmup_max_lr = { uniform = "1e-4..1e-2" }', "search.warmup_max_lr.uniform", "two finite numbers"),
    ('warmup_max_lr = { int = [1, 10] }', "search.warmup_max_lr.int", "warmup_max_lr takes real numbers"),
    ('warmup_num_steps = { uniform = [0.5, 10.5] }', "search.warmup_num_steps.uniform", "(use int)"),
    ('warmup_num_steps = { int = [0.5, 10] }', "search.warmup_num_steps.int", "whole bounds"),
    ('warmup_num_steps = { int = [-5, 10] }', "search.warmup_num_steps.int", "warmup_num_steps"),
    ('use_augmentation = { uniform = [0, 1] }', "search.use_augmentation.uniform", "(use choice)"),
    ('use_augmentation = { choice = [] }', "search.use_augmentation.choice", "a list of 1 to 100 values"),
    ('use_augmentation = { choice = [true, true] }', "search.use_augmentation.choice", "listed twice"),
    ('use_augmentation = { choice = [{ a = 1 }] }', "search.use_augmentation.choice", "plain values"),
    ('resnet_norm_type = { choice = ["bn", "ln"] }', "search.resnet_norm_type.choice", "resnet_norm_type"),
    ('use_augmentation = { choice = [' + ", ".join(["true"] * 101) + '] }', "search.use_augmentation.choice",
     "1 to 100 values"),
]


@pytest.mark.parametrize("line,key,message", BAD, ids=[b[0][:40] for b in BAD])
def test_a_bad_search_is_one_line_naming_file_and_key(tmp_path, line, key, message):
    text = FILE[:FILE.index("warmup_max_lr = { log_uniform")] + line + "\n"
    path = write(tmp_path, text)
    with pytest.raises(StudyError) as e:
        load_study(path)
    said = str(e.value)
    assert said.startswith(f"{path}: ") and key in said and message in said and "\n" not in said


HOSTILE = [
    ("[comparisons.both.search]", "search = 3", "comparisons.both.search", "expected a table of settings"),
    ("[comparisons.both.search]", "search = {}", "comparisons.both.search", "expected a table of settings"),
    ("[variants.clr.search]", "search = [1, 2]", "variants.clr.search", "expected a table of settings"),
]


@pytest.mark.parametrize("table,line,key,message", HOSTILE)
def test_a_search_that_is_not_a_table_is_refused(tmp_path, table, line, key, message):
    start = FILE.index(table)
    end = FILE.find("\n\n", start)
    owner = table.strip("[]").rsplit(".", 1)[0]
    text = FILE[:start] + FILE[end if end > 0 else len(FILE):]
    text = text.replace(f"[{owner}]\n", f"[{owner}]\n{line}\n")
    with pytest.raises(StudyError, match=rf"{key}: {message}"):
        load_study(write(tmp_path, text))


def test_yaml_alike(tmp_path):
    yaml = ("variants:\n  clr:\n    base: resnet18\n    search:\n      constant_lr: {log_uniform: [1.0e-5, 1.0e-3]}\n"
            "comparisons:\n  both:\n    question: q?\n    variants: [resnet18, clr]\n    search: nope\n")
    with pytest.raises(StudyError, match=r"study.yml: comparisons.both.search: expected a table of settings"):
        load_study(write(tmp_path, yaml, "study.yml"))
    ok = load_study(write(tmp_path, yaml.replace("    search: nope\n", ""), "ok.yml"))
    assert ok.variant_search["clr"][0].kind == "log_uniform"
