import pytest

from nbkit import VARIANTS, create_model, resolve
from nbkit.cli import main
from nbkit.design.settings import Settings, SettingsError
from nbkit.design.variants import UnknownVariantError, get_variant, variant_of
from tests.conftest import REPO, SHARED

EXPECTED = """resnet18 resnet18-aug resnet18-clr1e-4 resnet18-gn resnet18-ms1 resnet18-ms2 resnet18-ms3
resnet18-pcnorm resnet18-tnc resnet18-wonorm resnet34 resnet50 toy-dilated vit-12x256-8x8 vit-24x256-8x8
vit-b-8x8 vit-aux-3x4x256-8x8 vitn-12x256-8x8 vitn-12x256-8x8-ra vitn-12x256-8x8-dm vitn-12x256-8x8-lt
vitn-12x256-8x8-ltv vitn-12x256-8x8-dm-lt""".split()
ORIGINAL_CONFIGS = SHARED / "reference" / "original-configs"


def test_all_23_variants_by_their_exact_names():
    assert [name for name, v in VARIANTS.items() if v.original] == EXPECTED


@pytest.mark.parametrize("folder", [REPO / "configs" / "cifar100", ORIGINAL_CONFIGS])
def test_every_original_yaml_loads_to_the_variant_of_its_name(folder):
    if not folder.exists():
        pytest.skip(f"{folder} is absent (a clone without ../shared)")
    files = sorted(folder.glob("*.yml"))
    assert len(files) == 23
    for path in files:
        name, settings = resolve(path)
        assert name == path.stem
        assert settings == VARIANTS[path.stem].settings.replace(model=settings.model)
        assert variant_of(settings) == path.stem


def test_constant_lr_from_yaml_is_a_float():
    _, s = resolve(REPO / "configs" / "cifar100" / "resnet18-clr1e-4.yml")
    assert s.constant_lr == pytest.approx(1e-4) and isinstance(s.constant_lr, float)


def test_unknown_variant_lists_valid_ones_and_suggests_the_closest():
    with pytest.raises(UnknownVariantError, match=r"did you mean 'resnet18-gn'.*Valid variants: resnet18, "):
        get_variant("resnet18-gm")
    with pytest.raises(UnknownVariantError, match="unknown model 'resnet19'; did you mean 'resnet18'"):
        create_model(Settings(model="resnet19"), 10)


@pytest.mark.parametrize("changes, message", [
    ({"mixstlye_level": 1}, "unknown setting 'mixstlye_level'; did you mean 'mixstyle_level'"),
    ({"batch_size": "many"}, "batch_size expects a int, got 'many'"),
    ({"normalizer": "perhaps"}, "normalizer expects a bool"),
    ({"resnet_norm_type": "ln"}, "resnet_norm_type expects 'bn' or 'gn'"),
    ({"batch_size": 0}, "batch_size expects a positive integer"),
])
def test_bad_settings_are_refused_with_what_was_expected(changes, message):
    with pytest.raises(SettingsError, match=message):
        Settings().replace(**changes)


def test_resnet_options_on_a_vit_are_refused():
    with pytest.raises(SettingsError, match="apply to resnet models only"):
        Settings(model="vit-12x256-8x8", mixstyle_level=1)


def test_yaml_errors(tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text("model: [resnet18\n")
    with pytest.raises(SettingsError, match="not valid YAML"):
        resolve(bad)
    bad.write_text("- a\n- b\n")
    with pytest.raises(SettingsError, match="expects a mapping"):
        resolve(bad)
    bad.write_text("model: resnet18\nlearning_rate: 3\n")
    with pytest.raises(SettingsError, match="unknown setting 'learning_rate'"):
        resolve(bad)
    with pytest.raises(SettingsError, match="config file not found"):
        resolve(tmp_path / "missing.yml")


def test_cli_lists_variants(capsys):
    assert main(["variants"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in EXPECTED)
    assert "11,689,512" in out  # resnet18 with its 1000-way head
