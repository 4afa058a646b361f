"""The training step as captured on a GPU: no host reads inside it, the capture's warm-up leaves no
trace, and a run through the capture path logs what an eager run logs. CUDA graphs themselves
need a GPU (benchmarks/gpu_session.sh); everything around them runs here on the CPU."""

import contextlib

import pytest
import torch

from nbkit import VARIANTS, create_model, resolve
from nbkit.design.models.layers import MixStyle
from nbkit.rundir.runlog import read_metrics
from nbkit.training import trainer as train_module
from nbkit.training.step import TrainStep, after_load, graph_safe, make_optimizer
from nbkit.training.trainer import train
from tests.training.test_trainer import FAST, strip_time


class HostRead(AssertionError):
    pass


_READS = ("item", "tolist", "__bool__", "__int__", "__float__", "__index__")
_ORIGINAL = {n: getattr(torch.Tensor, n) for n in _READS}


@contextlib.contextmanager
def host_reads(allowed: bool):
    """allowed=False: every way a tensor's value reaches Python raises, as a captured step cannot."""
    saved = {n: getattr(torch.Tensor, n) for n in _READS}  # what an enclosing call set

    def refuse(name):
        def read(self, *args, **kwargs):
            raise HostRead(f"Tensor.{name} inside the step")
        return read

    for n in _READS:
        setattr(torch.Tensor, n, _ORIGINAL[n] if allowed else refuse(n))
    try:
        yield
    finally:
        for n, f in saved.items():
            setattr(torch.Tensor, n, f)


def no_host_reads():
    return host_reads(False)


def one_step(name, capture_ready: bool):
    torch.manual_seed(0)
    model = create_model(name, num_classes=10).train()
    params = [p for p in model.parameters() if p.requires_grad]
    step = TrainStep(model, model, make_optimizer(params, 1e-3, torch.device("cpu")), params, 100.0, None,
                     torch.device("cpu"))
    if capture_ready:
        graph_safe(model)
    x, y = torch.rand(4, 3, 32, 32), torch.randint(0, 10, (4,))
    return step, x, y


# a variant that changes only the data order (the epochs comparison's) builds a model tested here already
@pytest.mark.parametrize("name", [n for n, v in VARIANTS.items() if not {"sampling", "train_fraction"} & set(v.options)])
def test_every_variant_steps_without_reading_a_tensor_on_the_host(name):
    step, x, y = one_step(name, capture_ready=True)
    adam = step.opt.step

    def cpu_adam(*args):  # Adam reads its step count on the CPU; on CUDA it is capturable (make_optimizer)
        with host_reads(True):
            return adam(*args)

    step.opt.step = cpu_adam
    with no_host_reads():
        stats = step(x, y, 1e-3)
    assert stats.shape == (4 + len(step.extra_keys),) and torch.isfinite(stats).all()


def test_the_host_read_check_catches_the_eager_mixstyle_coin():
    step, x, y = one_step("resnet18-ms2", capture_ready=False)
    with pytest.raises(HostRead, match="item"), no_host_reads():
        step(x, y, 1e-3)


def test_device_coin_mixes_with_probability_p_and_repeats_with_the_seed():
    ms = MixStyle(p=0.5).train()
    ms.device_coin = True
    x = torch.randn(8, 3, 5, 5) * 3 + 1

    def coins(seed):
        torch.manual_seed(seed)
        return [not torch.equal(ms(x), x) for _ in range(400)]

    mixed = coins(0)
    assert 0.42 < sum(mixed) / len(mixed) < 0.58
    assert coins(0) == mixed and coins(1) != mixed
    ms.p = 0.0
    assert not any(coins(0))


def test_capture_warm_up_leaves_model_optimiser_and_random_state_as_they_were():
    step, x, y = one_step("vitn-12x256-8x8-lt", capture_ready=False)  # dropout: draws from the random state
    for _ in range(2):  # an optimiser with state, as a resumed run has
        step(x, y, 1e-3)
    optimiser = lambda: [v for st in step.opt.state.values() for v in st.values()]
    before = ({k: v.clone() for k, v in step.model.state_dict().items()}, [v.clone() for v in optimiser()],
              torch.get_rng_state())
    fresh = TrainStep(step.model, step.model, step.opt, step.params, 100.0, None, torch.device("cpu"))
    fresh.capture(x, y)
    after = step.model.state_dict()
    assert all(torch.equal(after[k], v) for k, v in before[0].items())
    assert len(before[1]) == len(optimiser()) > 0
    assert all(torch.equal(a, b) for a, b in zip(before[1], optimiser()))
    assert torch.equal(torch.get_rng_state(), before[2])
    assert all(p.grad is None for p in step.params)


def test_capture_of_a_fresh_optimiser_zeroes_the_state_its_warm_up_made():
    step, x, y = one_step("toy-dilated", capture_ready=False)
    step.capture(x, y)
    states = list(step.opt.state.values())
    assert states and all(float(v.abs().sum()) == 0 for st in states for v in st.values())


def test_a_run_through_the_capture_path_logs_what_an_eager_run_logs(tmp_path, monkeypatch):
    name, s = resolve("toy-dilated", **{**FAST, "max_iter": 24, "eval_every": 12})
    eager = train(name, s, runs_dir=tmp_path / "eager", device="cpu")
    captures, capture = [], TrainStep.capture

    def counted(self, x, y):
        captures.append(len(x))
        capture(self, x, y)

    monkeypatch.setattr(train_module, "uses_cuda_graph", lambda *a: True)
    monkeypatch.setattr(TrainStep, "capture", counted)
    captured = train(name, s, runs_dir=tmp_path / "captured", device="cpu")
    assert captures == [s.batch_size]  # once, with the first batch
    assert strip_time(read_metrics(captured / "metrics.jsonl")) == strip_time(read_metrics(eager / "metrics.jsonl"))


def test_a_loaded_optimiser_state_gets_this_devices_learning_rate_back():
    model = create_model("toy-dilated", 10)
    params = list(model.parameters())
    opt = make_optimizer(params, 1e-3, torch.device("cpu"))
    state = opt.state_dict()
    state["param_groups"][0]["lr"] = torch.tensor(5e-4)  # as a CUDA run saves it
    opt.load_state_dict(state)
    after_load(opt, torch.device("cpu"))
    assert opt.param_groups[0]["lr"] == pytest.approx(5e-4) and isinstance(opt.param_groups[0]["lr"], float)


def test_mixstyle_leaves_a_single_position_alone_in_either_coin_mode():
    x = torch.randn(4, 8, 1, 1, requires_grad=True)  # resnet layer4 at 32x32: no spatial spread to mix
    for device_coin in (False, True):
        ms = MixStyle(p=1.0).train()
        ms.device_coin = device_coin
        out = ms(x)
        out.sum().backward()
        assert torch.equal(out, x) and torch.isfinite(x.grad).all()
        x.grad = None
