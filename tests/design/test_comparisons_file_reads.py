"""Reading a comparisons file is reading data: it imports no model, reads a bounded regular file
only, and every error is one line naming the file."""

import os
import threading
import uuid

import pytest

from nbkit.design.comparisons_file import StudyError, load_study


def test_reading_a_comparisons_file_imports_no_model(tmp_path, monkeypatch):
    """A variant based on a code model's variant: reading the file (what the notebook's field,
    summary and report do) never imports the module; a run or a check does, later."""
    module = f"planted_{uuid.uuid4().hex}"
    marker = tmp_path / "imported"
    (tmp_path / f"{module}.py").write_text(f"open({str(marker)!r}, 'w').write('imported')\nNet = None\n")
    study = tmp_path / "study.toml"
    study.write_text(f'[variants.mine]\nmodel = "{module}:Net"\n\n[variants.mine-wide]\nbase = "mine"\n'
                     'model_kwargs = { width = 64 }\n\n[comparisons.own]\nquestion = "Wider?"\n'
                     'variants = ["mine", "mine-wide"]\n')
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    loaded = load_study(study)
    assert loaded.variants["mine-wide"].settings.model == f"{module}:Net"
    assert not marker.exists(), "reading the comparisons file imported the model's module"


def _error(path) -> str:
    with pytest.raises(StudyError) as e:
        load_study(path)
    (line,) = str(e.value).splitlines()
    return line


def test_a_comparisons_path_is_checked_before_it_is_read(tmp_path):
    assert _error("/dev/zero").endswith("expected a comparisons file ending in .toml, .yml or .yaml")
    big = tmp_path / "big.toml"
    with open(big, "wb") as f:
        f.truncate(1536 << 20)  # 1.5 GiB that takes no disk
    assert "larger than 1,048,576 bytes" in _error(big)
    fifo = tmp_path / "study.toml"
    os.mkfifo(fifo)
    said = []
    reader = threading.Thread(target=lambda: said.append(_error(fifo)), daemon=True)
    reader.start()
    reader.join(timeout=60)
    assert not reader.is_alive(), "reading a FIFO named study.toml waited for a writer"
    assert "not a regular file" in said[0]


def test_a_long_chain_of_bases_and_a_huge_number_are_one_line_naming_the_file(tmp_path):
    chain = tmp_path / "chain.toml"
    chain.write_text("".join(f'[variants.v{i}]\nbase = "v{i - 1}"\n' for i in range(2999, 0, -1))
                     + '[variants.v0]\nbase = "resnet18"\n')  # the first variant's bases, 3,000 deep
    assert "bases chained more than 100 deep" in _error(chain) and str(chain) in _error(chain)
    for suffix, text in ((".toml", "[variants.a]\nbase = \"resnet18\"\nseed = {}\n"),
                         (".yml", "variants:\n  a:\n    base: resnet18\n    seed: {}\n")):
        path = tmp_path / f"digits{suffix}"
        path.write_text(text.format("7" * 5000))
        assert _error(path).startswith(str(path))
