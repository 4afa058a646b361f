"""The original study's claims: its numbers (its two tables, its temperatures), its README's
sentences verbatim, and each claim as nbkit tests it (nbkit.analysis.scorecard judges them)."""

from __future__ import annotations

from dataclasses import dataclass

from nbkit.analysis.measures import OVERFIT_GAP
from nbkit.design.comparisons import get_comparison

# variant -> (best train_200 top-1, best test top-1) in the original's two tables
ORIGINAL: dict[str, tuple[float, float]] = {
    "resnet18-tnc": (1.0, 0.3477), "resnet18-wonorm": (1.0, 0.3572), "resnet18-pcnorm": (1.0, 0.3519),
    "resnet18": (1.0, 0.3539), "resnet18-clr1e-4": (1.0, 0.3184), "resnet34": (1.0, 0.3338),
    "resnet18-gn": (0.995, 0.3703), "resnet18-ms1": (0.975, 0.3768), "resnet18-ms2": (0.915, 0.3851),
    "vitn-12x256-8x8-ra": (0.74, 0.3877), "vitn-12x256-8x8-dm": (0.635, 0.3714),
    "vitn-12x256-8x8": (0.605, 0.367), "vitn-12x256-8x8-lt": (0.6, 0.3653), "vitn-12x256-8x8-ltv": (0.6, 0.3653),
    "resnet18-ms3": (0.585, 0.3617), "vit-aux-3x4x256-8x8": (0.455, 0.3575), "vit-12x256-8x8": (0.455, 0.345),
    "resnet18-aug": (0.405, 0.4077),  # its train_200 was scored on augmented images
    "toy-dilated": (0.19, 0.1886),
}
# the learned temperature at the end: mean and std across layers (the original's get_all_taus.py)
ORIGINAL_TAU = {"vitn-12x256-8x8-lt": (0.9, 0.0407), "vitn-12x256-8x8-ltv": (0.892, 0.0457)}
TABLES = "read off the original's tables"
CLEARLY = 0.1  # "clearly" narrower: by at least this fraction of the baseline's gap, beyond the noise
NO_GAIN = 0.01  # "does not improve": a gain of test top-1 under one point counts as none (non-superiority margin)
ORIGINAL_STEPS = 5000  # every run of the original
VERDICTS = ("holds", "does not hold", "within noise", "not judged", "partly measured", "not comparable", "not measured")

# the original README's sentences, verbatim (tests check them against its text)
OVERFITS = "It appears that the ResNet model severely overfits on the CIFAR100 dataset."
INVERSE = "Models with lower training accuracy have larger test accuracy."
MIXSTYLE = "The Mix-style method [1] helps alleviate this overfitting clearly."
PUZZLE = "Why does the loss suddenly drop periodically (after each epoch) for ResNet? Is it because of memorization?"
RELATIVE = ("The use of relative positional encoding [2] has been shown to improve model convergence and enhance "
            "testing performance when the model is trained for a specific number of steps.")
DIAGONAL = "Implementing a diagonal mask [3] results in a slight improvement in performance."
TEMPERATURE = ("The learnable temperature for attention [3] does not improve performance in this particular setting, "
               "although it does result in a decrease in temperature.")
TAU_VALUES = ("Specifically, for a log version implementation, the temperature is 0.9±0.0407, and for the vanilla "
              "version, the temperature is 0.892±0.0457.")


@dataclass(frozen=True)
class Claim:
    """kind: above / below / not above (a's measure above b's, below it, or not above it by NO_GAIN),
    narrower (a's gap below b's by CLEARLY of it; a may be several variants taken as one sample),
    exceeds / under (a's measure, or the least of several, above / below the number b), matches
    (a's temperature within the original's stated ± of its value), inverse (across a, higher
    train_200 with lower test), epoch drop (the training loss drops more at epoch ends than at the
    placebo, runs of a), best / worst (a's test top-1 above / below every other member of the
    comparison)."""
    comparison: str
    source: str  # the original's sentence, or TABLES
    tested_as: str
    kind: str
    a: str | tuple[str, ...]
    b: str | float | None = None
    measure: str = "test"


_PLAIN_RESNETS = ("resnet18", "resnet18-tnc", "resnet18-wonorm", "resnet18-pcnorm", "resnet18-gn", "resnet34")
# the original's resnets figure (its plot.sh --filter resnet): every ResNet it ran, augmentation and constant rate too
_FIGURE_RESNETS = (*_PLAIN_RESNETS[:5], "resnet18-ms1", "resnet18-ms2", "resnet18-ms3", "resnet34",
                   "resnet18-aug", "resnet18-clr1e-4")
_VITN = "vitn-12x256-8x8"


MIXSTYLES = ("resnet18-ms1", "resnet18-ms2", "resnet18-ms3")


def _temperature() -> tuple[Claim, ...]:
    """The three temperature claims for each parametrisation, grouped by claim."""
    both = (("vitn-12x256-8x8-lt", "-lt (learns log 1/tau)"), ("vitn-12x256-8x8-ltv", "-ltv (learns tau)"))
    return (*(Claim("models", TEMPERATURE, f"{name}: best test top-1 not above that of vitn", "not above", v, _VITN)
              for v, name in both),
            *(Claim("models", TEMPERATURE, f"{name}: final temperature (mean across layers) below its start, 1",
                    "under", v, 1.0, "tau") for v, name in both),
            *(Claim("models", TAU_VALUES, f"{name}: final temperature (mean over seeds) within the original's ± "
                    "(its std across layers) of the original value", "matches", v, None, "tau") for v, name in both))


CLAIMS: tuple[Claim, ...] = (
    Claim("resnets", OVERFITS, f"every ResNet without MixStyle: best-step gap (best clean train_200 - best test) "
          f"above {OVERFIT_GAP}",
          "exceeds", _PLAIN_RESNETS, OVERFIT_GAP, "gap"),
    Claim("resnets", INVERSE, "Kendall tau between train_200 (as the original scored it) and test top-1 below 0, "
          "over the 11 ResNets of the figure of the original", "inverse", _FIGURE_RESNETS, None, "train"),
    Claim("resnets", MIXSTYLE, "best-step gap (best clean train_200 - best test) of MixStyle, the mean of its three levels "
          "(each beside it), below that of resnet18 by a tenth of it or more", "narrower",
          MIXSTYLES, "resnet18", "gap"),
    Claim("resnets", PUZZLE, "its premise, that the loss drops after each epoch: the training loss falls further "
          "below its trend just after each epoch end than at the placebo points (relative drop, per run); whether it "
          "is memorisation is the epochs comparison's question", "epoch drop", get_comparison("resnets").variants),
    Claim("resnets", TABLES, "MixStyle (ms2) above the baseline on test", "above", "resnet18-ms2", "resnet18"),
    Claim("resnets", TABLES, "MixStyle after layer 1 (ms1) above the baseline on test", "above", "resnet18-ms1",
          "resnet18"),
    Claim("learning", TABLES, "Augmentation gives the best test top-1", "best", "resnet18-aug"),
    Claim("learning", TABLES, "A constant learning rate of 1e-4 is worst", "worst", "resnet18-clr1e-4"),
    Claim("models", RELATIVE, "convergence: mean training loss over the run (the original's loss figure) of vitn-ra "
          "below that of vitn", "below", "vitn-12x256-8x8-ra", _VITN, "loss_curve"),
    Claim("models", RELATIVE, "best test top-1 of vitn-ra above that of vitn", "above", "vitn-12x256-8x8-ra", _VITN),
    Claim("models", DIAGONAL, "best test top-1 of vitn-dm above that of vitn", "above", "vitn-12x256-8x8-dm", _VITN),
    *_temperature(),
    Claim("models", TABLES, "toy-dilated below every other model", "worst", "toy-dilated"),
)
