"""The terminal shows a comparisons file's strings as data, and a mistyped option in one line."""

import pytest

from nbkit.cli import main


def test_variants_shows_escape_sequences_and_bidi_controls_as_codes(tmp_path, capsys):
    study = tmp_path / "study.toml"
    study.write_text('[variants.evil]\nbase = "resnet18"\ndescription = "a \\u001b[31mred\\u001b[0m \\u202eevil"\n')
    assert main(["variants", "--comparisons", str(study)]) == 0
    out = capsys.readouterr().out
    (line,) = [line for line in out.splitlines() if line.startswith("evil ")]
    assert line.endswith("a \\x1b[31mred\\x1b[0m \\u202eevil") and "\x1b" not in out and "\u202e" not in out


@pytest.mark.parametrize("args", [["sweep", "toy-dilated", "--pack", "nan"], ["train", "toy-dilated", "--max-iter", "x"]])
def test_a_mistyped_option_is_one_line(args, capsys):
    with pytest.raises(SystemExit) as e:
        main(args)
    assert e.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"nbkit {args[0]}: error: argument ") and line.endswith(f"(see nbkit {args[0]} --help)")


def test_a_sweep_whose_train_size_the_data_cannot_give_starts_no_run(tmp_path, capsys):
    code = main(["sweep", "toy-dilated", "--dataset", "synthetic", "--max-iter", "2", "--device", "cpu",
                 "--runs-dir", str(tmp_path / "runs"), "--set", "train_size=999999"])
    assert code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("nbkit sweep: error: train_size 999999 exceeds the 2000 training images")
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").rglob("status.json"))
