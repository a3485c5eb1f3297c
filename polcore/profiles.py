"""The three profiles and the single place that turns a profile into sizes.

`smoke` exercises every code path in seconds (tests), `cpu` (default) reproduces every claim's
direction on 2 CPU cores with data that needs no network, `paper` is the papers' setup and needs a
GPU and the downloaded datasets. Experiments read their sizes from here and nowhere else; E, S, k
and Q are scaled together so that k / steps-per-epoch stays near the paper's 100 / 390.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from polcore.training import OptimizerConfig

if TYPE_CHECKING:
    from polcore.models import ModelSpec

PROFILE_NAMES = ("smoke", "cpu", "paper")
DEFAULT_PROFILE = "cpu"


@dataclass(frozen=True)
class TrainSetup:
    """An honest training run: data, model, schedule, and the proof's checkpoint interval k."""

    dataset: str
    model: str
    model_kwargs: dict[str, Any]
    epochs: int
    batch_size: int
    k: int
    lr: float
    lr_milestones: tuple[float, ...] = ()
    momentum: float = 0.9
    weight_decay: float = 5e-4
    augment: bool = False
    train_size: int | None = None

    def model_spec(self) -> ModelSpec:
        from polcore.models import ModelSpec  # local: keeps `import polcore.profiles` light

        return ModelSpec(self.model, dict(self.model_kwargs))

    def optimizer(self) -> OptimizerConfig:
        return OptimizerConfig(momentum=self.momentum, weight_decay=self.weight_decay)

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "model": self.model,
            "model_kwargs": dict(self.model_kwargs),
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "k": self.k,
            "lr": self.lr,
            "lr_milestones": list(self.lr_milestones),
            "momentum": self.momentum,
            "weight_decay": self.weight_decay,
            "augment": self.augment,
            "train_size": self.train_size,
        }


@dataclass(frozen=True)
class IndependentRunsSetup:
    """Fang et al. Sec. 7.1 (F-tab1): models that differ only in init seed and data order.

    One row of Table 1 per training setup (the paper: ResNet-20/CIFAR-10 and ResNet-50/CIFAR-100).
    """

    rows: tuple[TrainSetup, ...]
    n_models: int
    n_pairs: int


@dataclass(frozen=True)
class PolSetup:
    """Proof creation and verification (Algorithms 1-2): Q values and reference runs for d_ref."""

    train: TrainSetup
    q_values: tuple[int, ...] = (1, 3, 5)
    n_reference_runs: int = 2


@dataclass(frozen=True)
class ForgingSetup:
    """Suliman et al. 2024 (S-tab1, S-tab3, S-fig2, S-prop1, S-prop2, S-fig4): data forging.

    `lenet` and `vgg` are the honest runs whose weights the logged steps are sampled from (the
    paper's LeNet/MNIST and VGGmini/CIFAR-10; `k` unused), `logreg` the logistic regression of
    Sec. 4. Every logged, replayed or forged step is one plain SGD step at `eta` (the paper's 0.01).
    """

    lenet: TrainSetup
    vgg: TrainSetup
    logreg: TrainSetup
    lenet_batch_sizes: tuple[int, ...] = (100, 1000)  # Table 1's LeNet rows
    vgg_batch_sizes: tuple[int, ...] = (100,)  # Table 1's VGGmini row
    eta: float = 0.01
    n_steps: int = 100  # logged (weights, batch, update) triples per row (paper: 100)
    threads: int = 2  # the prover's CPU threads; the noise matrix also verifies with 1
    greedy_steps: int = 10  # logged steps forged by greedy search per row
    greedy_points: int = 1000  # n: points drawn from D' per forged step (well above b)
    greedy_candidates: int = 100  # M: candidate batches per forged step
    remove_fraction: float = 0.1  # |U| / |D|: the samples the model owner denies
    proof_steps: int = 8  # length of the honest and the forged proof the verifier judges
    adam_runs: int = 10  # Fig. 2: runs per model (best of runs decides)
    adam_iterations: int = 300  # per run, at the lr the sweep chose
    adam_lr: float = 0.5  # App. A.4's learning rate: always one point of the sweep
    adam_lr_grid: tuple[float, ...] = (5e-4, 5e-3, 5e-2, 0.5)  # the attacker's log-grid sweep
    adam_sweep_iterations: int = 200  # per grid point, on the first logged step
    adam_batch_size: int = 100
    logreg_batch_sizes: tuple[int, ...] = (100, 1000)  # Prop. 2 and Fig. 4
    n_shuffles: int = 100  # Fig. 4
    prop1_starts: int = 20
    domain_iterations: int = 500  # beyond the paper: projected Adam inside the data domain (comparison)
    domain_lr: float = 0.01
    box_max_iter: int = 1000  # beyond the paper: L-BFGS-B inside [0, 1] (logistic regression and LeNet)


# ---- helper D: Fang et al. Secs. 2.3, 6.1, 6.2, App. E (F-2.3, F-fig4, F-fig11, F-fig5) ------------
@dataclass(frozen=True)
class FangSetup:
    """Fang et al.'s spoofs against PoL verification: the infinitesimal update (Fig. 4), Lemma 3's
    adaptive threshold (Fig. 11), blindfold top-Q (Fig. 5) and Zhang's Attack II at two (k, delta)
    (Sec. 2.3). `rows` are the honest setups (paper: CIFAR-10/ResNet-20, CIFAR-100/ResNet-50)."""

    rows: tuple[TrainSetup, ...]
    n_reference_runs: int = 2  # F-tab1's models 0..n-1: model 0 is the stolen W_T, their distance d_ref
    static_delta: float = 0.008  # Fig. 4's delta, on the normalised error d / d_ref
    infinitesimal_lr: float = 1e-7  # the learning rate the infinitesimal spoof claims
    alpha: float = 1.0  # Lemma 3
    adaptive_runs: int = 5  # honest runs (seeds) per learning rate (Fig. 11: 5)
    small_lr_factor: float = 0.01  # Fig. 11's 100x smaller learning rate
    blindfold_k: int = 10  # checkpoint interval of the blindfold proofs (S / k intervals per epoch)
    blindfold_q: int = 5  # Q_a, the attacker's valid updates per epoch
    verifier_qs: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10)  # Fig. 5's x axis
    attack2_k: int = 100  # Sec. 2.3: Zhang's (k, delta) (CIFAR-100: 100, 0.1); the small one is both / 10
    attack2_delta: float = 0.1
    attack2_steps: int | None = None  # steps of the Attack II spoofs (None: the row's whole run)
    # helper F: Sec. 2.3 (F-2.3): Attack II at Zhang's (k, delta) and at both / 10, by an attacker
    # who sweeps Adam's lr on R (`attack2_lrs`), N = `attack2_iterations`, best of `attack2_runs`
    attack2_settings: tuple[tuple[int, float], ...] = ((100, 0.1), (10, 0.01))
    attack2_lrs: tuple[float, ...] = (0.005, 0.05, 0.5)
    attack2_iterations: int = 10
    attack2_runs: int = 1
    attack2_settings_steps: int | None = None  # F-2.3's T' (None: attack2_steps)


# ---- helper E: Fang et al. Sec. 7.2, App. C (F-fig6..8); Sec. 5, App. B, D (F-cost, F-L56) ----------
@dataclass(frozen=True)
class FangStochasticSetup:
    """Fang et al.'s stochastic-spoofing probes and cost analysis. `rows` are the victims' honest
    setups (paper: CIFAR-10/ResNet-20 and CIFAR-100/ResNet-50, F-tab1's rows, so d_ref is F-tab1's
    measured distance); Figs. 7 and 8 use rows[0]. `stages` are fractions of the training budget at
    which the per-example probe (Figs. 6, 12, 13) looks at the adversary's oracle-trained model."""

    rows: tuple[TrainSetup, ...]
    stages: tuple[float, ...] = (0.0, 0.1, 0.25, 0.5, 0.75, 1.0)
    probe_chunk: int = 256  # examples per vmap chunk of per-example gradients (capped by memory)
    synth_batch: int = 128  # Fig. 7: synthetic examples (one batch)
    synth_iterations: int = 2000  # Fig. 7: alternating data / SGD iterations
    synth_data_lr: float = 0.01  # Adam on the synthetic inputs
    rna_rounds_per_epoch: int = 10  # App. C: 10 RNA steps per epoch
    rna_runs: int = 5  # Fig. 8: 5 runs (confidence band)
    rna_lr_factors: tuple[float, ...] = (0.1, 1.0, 10.0, 100.0, 1000.0)  # the attacker's lr sweep, x the row's lr
    rna_history: int | None = 1  # rounds of updates in the least-squares basis (1: the paper's; None: all)
    calibration_factor: float = 100.0  # the bar: a calibrated verifier's tolerance, x benign error
    cost_attack2_iterations: int = 10  # App. B's n for Attack 2's formula and our measured run
    cost_attack2_steps: int | None = None  # T' of the measured Attack 2 run (None: the template's); costs are per interval


# ---- helper C: Zhang et al. Attacks I-III (Z-A1, Z-A2-opt, Z-A2, Z-A3, Z-Cor1, Z-nonoverlap, Z-acc, Z-hw) --
@dataclass(frozen=True)
class ZhangSetup:
    """Zhang et al.'s spoofs. `rows` are the victims' honest runs (trained WITH augmentation, so the
    paper's tolerance, the honest error under augmentation re-drawn at verification, is measured);
    rows[0] also carries Attack I, Corollary 1, the disjoint-data runs, accuracy and threads.
    `t_primes` is the sweep of T' for Attacks II and III; `gamma` Attack II's per-step stop (l2),
    `gamma3 - sigma` Attack III's per-interval stop; `iterations` N, `lr` Adam's step on R."""

    rows: tuple[TrainSetup, ...]
    t_primes: tuple[int, ...]
    attack1_fraction: float = 1.0  # Attack I's T' as a fraction of the victim's T (the paper: about equal time)
    gamma: float = 0.01
    gamma3: float = 1.0
    sigma: float = 0.1
    iterations: int = 10
    lr: float = 0.05
    r_weight: float = 1e-3
    retries: int = 1
    n_reference_runs: int = 2
    calibration_factor: float = 100.0
    hvp_iterations: int = 10  # Corollary 1: power iterations for the Hessian's spectral norm
    threads: tuple[int, ...] = (1, 2)  # Z-hw: thread counts the prover's per-step time is probed at
    prover_threads: int = 2  # Z-hw: the prover's CPU threads (more than the attacker's one)
    objective: str = "update"  # Attack II's residual: "update" (momentum-aware) or "gradient" (as printed)
    search_steps: int = 4  # Attack II's search: the first steps tried with 4x N and 4x N at 4x the step on R


# ---- helper D (issue 13): detection against cost ---------------------------------------------------
@dataclass(frozen=True)
class DetectionSetup:
    """How often a sampling verifier catches blindfold top-Q and spread state injection, against
    the fraction of steps it replays, next to the closed form (`polcore.detection`), and how often
    it rejects honest proofs at the same settings. `train` is the honest setup (template, stolen
    model and honest proofs); the blindfold spoof uses its own k and Q_a (as Fig. 5's)."""

    train: TrainSetup
    blindfold_k: int = 10
    blindfold_q: int = 5
    random_qs: tuple[int, ...] | None = None  # random-Q's q per epoch (None: 1..n, n an epoch's intervals)
    top_qs: tuple[int, ...] = (1, 2, 3, 4, 5, 6)  # top-Q's Q per epoch
    random_seeds: int = 20  # random-Q draws (seeds) per setting
    honest_seeds: int = 3  # honest proofs per k (their training seeds)
    cross_checks: int | None = None  # q values (the first n) whose seed 0 the whole verifier judges too; None: all


# ---- helper X: the verdict matrix (issue 13): every spoof against every verifier configuration ----------
@dataclass(frozen=True)
class MatrixSetup:
    """The verdict matrix's own knobs. The victim is the profile's `pol` setup; each spoof takes its
    parameters from its chapter's block (`zhang`, `fang`, `forging`), except Zhang's T' (`zhang_t_prime`:
    the victim here is the PoL primer's run, not Zhang's). Columns: one policy axis at the adaptive
    threshold, one threshold axis over every interval, and the two extra checks. Fang's block gives
    alpha, the normalised delta (Fig. 4's) and the small learning rate; Zhang's the calibration factor."""

    zhang_t_prime: int = 20  # T' of the Zhang spoofs (Attack I included)
    forge_steps: int = 8  # steps of the forged proof (plain SGD, k = 1) and of its honest twin
    top_qs: tuple[int, ...] = (1, 3)
    random_q: int = 3
    random_seeds: tuple[int, ...] = (0, 1)
    static_delta: float = 0.05  # a raw l2 tolerance, the same for every model (Jia et al.'s form)
    stage_factors: tuple[float, ...] = (2.0, 1.0, 0.5)  # x Fang's normalised delta per third of training (Zhang V)
    max_data_distance: float = 1 / 255  # linf: one grey level of an 8-bit image from every public example
    memorisation_threshold: float | None = None  # None: the check's own calibrated default


_CPU_MATRIX = MatrixSetup()
_PAPER_MATRIX = MatrixSetup(zhang_t_prime=1000, forge_steps=20, top_qs=(1, 3), random_q=3)
_SMOKE_MATRIX = MatrixSetup(zhang_t_prime=4, forge_steps=2)


@dataclass(frozen=True)
class Profile:
    name: str
    requires_cuda: bool
    description: str
    independent_runs: IndependentRunsSetup
    pol: PolSetup
    forging: ForgingSetup | None = None
    fang: FangSetup | None = None  # helper D's block
    fang_stochastic: FangStochasticSetup | None = None  # helper E's block
    zhang: ZhangSetup | None = None  # helper C's block
    matrix: MatrixSetup | None = None  # helper X's block
    detection: DetectionSetup | None = None  # helper D's block (issue 13)


# ---- cpu: scikit-learn digits (1,437 train images, 1x8x8) and small ResNets -------------------
_CPU_TRAIN = TrainSetup(
    dataset="digits",
    model="resnet",
    model_kwargs={"depth": 8, "width": 8, "in_channels": 1, "num_classes": 10},
    epochs=12,
    batch_size=32,  # 44 steps per epoch
    k=10,  # k / steps-per-epoch = 0.23 (paper: 100 / 390 = 0.26)
    lr=0.05,
    lr_milestones=(0.5, 0.75),
)

# ---- paper: CIFAR-10, ResNet-20, 200 epochs, batch 128, k = 100 --------------------------------
_PAPER_TRAIN = TrainSetup(
    dataset="cifar10",
    model="resnet20",
    model_kwargs={"num_classes": 10},
    epochs=200,
    batch_size=128,  # 390 steps per epoch
    k=100,
    lr=0.1,
    lr_milestones=(0.5, 0.75),
    weight_decay=1e-4,
    augment=True,
)

# Second rows of Table 1: the paper's ResNet-50 / CIFAR-100; on the CPU a deeper, wider ResNet.
_CPU_TRAIN_WIDE = replace(_CPU_TRAIN, model_kwargs={"depth": 14, "width": 12, "in_channels": 1, "num_classes": 10})
_PAPER_TRAIN_C100 = replace(_PAPER_TRAIN, dataset="cifar100", model="resnet50", model_kwargs={"num_classes": 100})

# ---- smoke: every code path in seconds -----------------------------------------------------
_SMOKE_TRAIN = replace(
    _CPU_TRAIN,
    model_kwargs={"depth": 8, "width": 4, "in_channels": 1, "num_classes": 10},
    train_size=256,
    epochs=2,
    k=4,  # 8 steps per epoch
)

# ---- forging (Suliman et al.): LeNet-5 and a small VGGmini on 8x8 digits; logistic regression ----
_CPU_FORGING = ForgingSetup(
    lenet=TrainSetup(dataset="digits", model="lenet5", model_kwargs={"in_channels": 1, "input_size": 8,
                     "num_classes": 10}, epochs=3, batch_size=32, k=1, lr=0.05),
    vgg=TrainSetup(dataset="digits", model="vggmini", model_kwargs={"width": 16, "stages": 3, "in_channels": 1,
                   "input_size": 8, "num_classes": 10}, epochs=3, batch_size=32, k=1, lr=0.05),
    # One epoch of plain SGD: a model still learning. On a converged one the update is so small next
    # to the weights that float32 rounding hides the summation order (shuffle errors of exactly 0).
    logreg=TrainSetup(dataset="digits", model="logreg", model_kwargs={"in_features": 64, "num_classes": 10},
                      epochs=1, batch_size=32, k=1, lr=0.05, momentum=0.0, weight_decay=0.0),
    # Table 1's second LeNet row (the paper's b = 1000, Thudi et al.) at b = 128: digits leaves
    # |D'| = 1,293 points, and the greedy search needs n well above b (here n = 1,280: 10 b).
    lenet_batch_sizes=(100, 128),
    n_steps=20,
    greedy_points=1280,
    greedy_candidates=200,
    adam_runs=4,
    adam_iterations=500,
    adam_sweep_iterations=150,
    domain_iterations=2000,
    box_max_iter=300,
)
_PAPER_FORGING = ForgingSetup(
    lenet=TrainSetup(dataset="mnist", model="lenet5", model_kwargs={"in_channels": 1, "input_size": 28,
                     "num_classes": 10}, epochs=2, batch_size=100, k=1, lr=0.05),
    vgg=TrainSetup(dataset="cifar10", model="vggmini", model_kwargs={"num_classes": 10}, epochs=2, batch_size=100,
                   k=1, lr=0.05),
    logreg=TrainSetup(dataset="mnist", model="logreg", model_kwargs={"in_features": 784, "num_classes": 10},
                      epochs=1, batch_size=100, k=1, lr=0.05, momentum=0.0, weight_decay=0.0),
    greedy_steps=20,
    greedy_points=10000,
    greedy_candidates=200,
    proof_steps=20,
    adam_iterations=1000,
)
_SMOKE_FORGING = replace(
    _CPU_FORGING,
    vgg=replace(_CPU_FORGING.vgg, model_kwargs={"width": 4, "stages": 3, "in_channels": 1, "input_size": 8,
                                                "num_classes": 10}),
    lenet_batch_sizes=(100,),
    n_steps=3,
    greedy_steps=2,
    greedy_candidates=4,
    proof_steps=2,
    adam_runs=2,
    adam_iterations=10,
    adam_lr_grid=(5e-3, 5e-2, 0.5),
    adam_sweep_iterations=4,
    greedy_points=300,
    box_max_iter=20,
    logreg_batch_sizes=(100,),
    n_shuffles=10,
    prop1_starts=2,
    domain_iterations=10,
)

# ---- helper D: Fang et al.'s spoofs (F-2.3, F-fig4, F-fig11, F-fig5) ------------------------------
# Blindfold top-Q needs S / k well above Q_a: the paper's Q_a = 5 against S / k = 390 / 10 = 39
# intervals an epoch (at its k = 100 an epoch has 3.9 intervals, fewer than Q_a); the cpu profile
# keeps Q_a / (S / k) near 5 / 39 with k = 2 (22 intervals an epoch) and Q_a = 3.
# Attack II's T' (its spoof's steps) is the attacker's: Zhang et al.'s CIFAR windows are 1,000-4,000.
_CPU_FANG = FangSetup(rows=(_CPU_TRAIN,), blindfold_k=2, blindfold_q=3, verifier_qs=(1, 2, 3, 4, 5, 6),
                      attack2_k=10, attack2_delta=0.1, attack2_steps=200,
                      attack2_settings=((10, 0.1), (1, 0.01)), attack2_settings_steps=60)  # F-2.3 (helper F)
_PAPER_FANG = FangSetup(rows=(_PAPER_TRAIN, _PAPER_TRAIN_C100), attack2_steps=2000)
_SMOKE_FANG = FangSetup(rows=(_SMOKE_TRAIN,), adaptive_runs=2, blindfold_k=1, blindfold_q=2, verifier_qs=(1, 2, 3),
                        attack2_k=4, attack2_delta=0.1, attack2_steps=8,
                        attack2_settings=((4, 0.1), (1, 0.01)), attack2_lrs=(0.01, 0.1, 1.0))


# ---- helper E: Fang et al.'s stochastic spoofing and costs (F-fig6, F-fig7, F-fig8, F-cost, F-L56) ----
_CPU_STOCHASTIC = FangStochasticSetup(rows=(_CPU_TRAIN, _CPU_TRAIN_WIDE), stages=(0.0, 0.25, 0.5, 1.0),
                                      synth_batch=32, synth_iterations=150, cost_attack2_steps=20)
_PAPER_STOCHASTIC = FangStochasticSetup(rows=(_PAPER_TRAIN, _PAPER_TRAIN_C100))
_SMOKE_STOCHASTIC = FangStochasticSetup(rows=(_SMOKE_TRAIN,), stages=(0.0, 1.0), synth_batch=8, synth_iterations=12,
                                        rna_runs=2, rna_lr_factors=(0.1, 1.0, 10.0), cost_attack2_iterations=2)


# ---- helper C: Zhang et al.'s Attacks I-III ------------------------------------------------------------
# cpu: a CIFAR-shaped generated dataset (flip + crop make sense on 32x32 images; on 8x8 digits a
# 4-pixel crop destroys them) and a small ResNet that learns it (held-out accuracy 1.0 from the
# 12th of 16 epochs on 1,024 examples); an MLP does not learn it under augmentation (23 %), which
# made every spoof's target a model no attacker would steal. The paper's lr 0.1 and schedule shape;
# k = 16 of S = 32 steps an epoch; T = 16 x 32 = 512 honest steps (about 12 s on one thread), T'
# up to T / 8: with 2,048 examples, T = 1,024 and T' up to 256 the experiment took 16 min, and
# with T' up to 128 here 9 min, against the 5-minute budget.
_CPU_ZHANG_TRAIN = TrainSetup(dataset="synthetic-cifar", model="resnet",
                              model_kwargs={"depth": 8, "width": 4, "in_channels": 3, "num_classes": 10}, epochs=16,
                              batch_size=32, k=16, lr=0.1, lr_milestones=(0.5, 0.75), augment=True, train_size=1024)
_CPU_ZHANG = ZhangSetup(rows=(_CPU_ZHANG_TRAIN,), t_primes=(32, 64), attack1_fraction=0.25, gamma=0.05,
                        gamma3=1.0, sigma=0.1, iterations=10, lr=0.05, retries=0, threads=(1,))
_PAPER_ZHANG = ZhangSetup(rows=(_PAPER_TRAIN, _PAPER_TRAIN_C100), t_primes=(500, 1000, 2000, 4000, 6000),
                          gamma=0.01, gamma3=0.5, sigma=0.05, iterations=10, lr=0.01)
_SMOKE_ZHANG = ZhangSetup(rows=(replace(_CPU_ZHANG_TRAIN, model="mlp", model_kwargs={"in_features": 3072, "hidden": 32,
                                                                                     "num_classes": 10}, lr=0.05,
                                        epochs=2, train_size=256, k=4),),
                          t_primes=(8,), attack1_fraction=0.5, iterations=3, retries=0, n_reference_runs=2,
                          hvp_iterations=3, threads=(1,))


# ---- helper D (issue 13): detection against cost ---------------------------------------------------
# The PoL setup's honest run; the blindfold spoof at Fig. 5's (k, Q_a) of each profile (cpu: 22
# intervals an epoch, 3 valid); random-Q's q spans 1 .. an epoch's intervals.
_CPU_DETECTION = DetectionSetup(train=_CPU_TRAIN, blindfold_k=2, blindfold_q=3,
                                random_qs=(1, 2, 3, 4, 5, 6, 8, 11, 16, 22), top_qs=(1, 2, 3, 4, 5, 6),
                                random_seeds=20, honest_seeds=3, cross_checks=4)
_PAPER_DETECTION = DetectionSetup(train=_PAPER_TRAIN, blindfold_k=10, blindfold_q=5,
                                  random_qs=(1, 2, 3, 5, 8, 13, 20, 39), top_qs=(1, 3, 5, 6, 10))
_SMOKE_DETECTION = DetectionSetup(train=_SMOKE_TRAIN, blindfold_k=1, blindfold_q=2, top_qs=(1, 2, 3),
                                  random_seeds=10, honest_seeds=1)

PROFILES: dict[str, Profile] = {
    "smoke": Profile(
        name="smoke",
        requires_cuda=False,
        description="seconds per notebook; exercises every code path, numbers mean nothing",
        independent_runs=IndependentRunsSetup((_SMOKE_TRAIN,), n_models=3, n_pairs=3),
        pol=PolSetup(_SMOKE_TRAIN, q_values=(1, 2), n_reference_runs=1),
        forging=_SMOKE_FORGING,
        fang=_SMOKE_FANG,
        fang_stochastic=_SMOKE_STOCHASTIC,
        zhang=_SMOKE_ZHANG,
        detection=_SMOKE_DETECTION,
        matrix=_SMOKE_MATRIX,
    ),
    "cpu": Profile(
        name="cpu",
        requires_cuda=False,
        description="2 CPU cores, scikit-learn digits and small ResNets; reproduces each claim's direction",
        independent_runs=IndependentRunsSetup((_CPU_TRAIN, _CPU_TRAIN_WIDE), n_models=9, n_pairs=30),
        pol=PolSetup(_CPU_TRAIN, q_values=(1, 3, 5), n_reference_runs=2),
        forging=_CPU_FORGING,
        fang=_CPU_FANG,
        fang_stochastic=_CPU_STOCHASTIC,
        zhang=_CPU_ZHANG,
        detection=_CPU_DETECTION,
        matrix=_CPU_MATRIX,
    ),
    "paper": Profile(
        name="paper",
        requires_cuda=True,
        description="the papers' setup: CIFAR-10/100, ResNet-20/50, 200 epochs; needs a GPU and the datasets",
        independent_runs=IndependentRunsSetup((_PAPER_TRAIN, _PAPER_TRAIN_C100), n_models=9, n_pairs=30),
        pol=PolSetup(_PAPER_TRAIN, q_values=(1, 3, 5), n_reference_runs=2),
        forging=_PAPER_FORGING,
        fang=_PAPER_FANG,
        fang_stochastic=_PAPER_STOCHASTIC,
        zhang=_PAPER_ZHANG,
        detection=_PAPER_DETECTION,
        matrix=_PAPER_MATRIX,
    ),
}


def get_profile(name: str) -> Profile:
    """The profile called `name`; unknown names raise with the list of known ones."""
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; choose one of {', '.join(PROFILE_NAMES)}")
    return PROFILES[name]


# ---- the paper profile's dry run: every code path, a handful of steps on the CPU -----------------
DRY_RUN_SUFFIX = "-dry"
DRY_RUN_TEST_IMAGES = 16  # per generated test set: a test-set pass of ResNet-50 over 128 CIFAR images is ~20 s on a CPU


def _dry_train(setup: TrainSetup, *, batch_size: int = 2, steps_per_epoch: int = 3, epochs: int = 2,
               k: int = 2) -> TrainSetup:
    """`setup` with sizes and step counts cut; model, kwargs, dataset, augmentation and schedule shape kept."""
    return replace(setup, batch_size=batch_size, train_size=batch_size * steps_per_epoch, epochs=epochs,
                   k=min(setup.k, k))


# The forging setups' sizes in a dry run (fields B's code may not have yet are skipped).
_DRY_FORGING = {
    "lenet_batch_sizes": (8,), "vgg_batch_sizes": (8,), "logreg_batch_sizes": (8,), "adam_batch_size": 4,
    "n_steps": 2, "threads": 2, "greedy_steps": 1, "greedy_points": 24, "greedy_candidates": 2, "proof_steps": 2,
    "adam_runs": 2, "adam_iterations": 3, "adam_sweep_iterations": 2, "n_shuffles": 3, "prop1_starts": 2,
    "domain_iterations": 3, "box_max_iter": 3,
}


def _dry_fang(fang: FangSetup | None) -> FangSetup | None:
    """Helper D's block cut for a dry run: the first row (its model and data; F-tab1's dry run
    trains the second row's ResNet-50), 3 steps an epoch, one honest run per learning rate,
    k = 1 blindfold proofs, Q_a = 1."""
    if fang is None:
        return None
    return replace(fang, rows=(_dry_train(fang.rows[0]),), adaptive_runs=1, blindfold_k=1, blindfold_q=1,
                   verifier_qs=(1, 2), attack2_k=2, attack2_steps=None,
                   attack2_settings=((2, 0.1), (1, 0.01)), attack2_iterations=2,
                   attack2_lrs=(0.05,))  # F-2.3: 2 iterations, one lr


def _dry_stochastic(setup: FangStochasticSetup | None) -> FangStochasticSetup | None:
    """Helper E's block cut for a dry run: 2 steps an epoch (the blindfold cost run needs an interval
    an epoch to interpolate besides its q = 1 trained one), two stages, a few iterations and runs."""
    if setup is None:
        return None
    return replace(setup, rows=tuple(_dry_train(r, steps_per_epoch=2) for r in setup.rows), stages=(0.0, 1.0),
                   probe_chunk=4, synth_batch=4, synth_iterations=3, rna_runs=2, rna_lr_factors=(0.1, 1.0, 10.0),
                   cost_attack2_iterations=1)


def _dry_zhang(setup: ZhangSetup | None) -> ZhangSetup | None:
    """Helper C's block cut for a dry run: victims of 2 steps with k = 1 (two intervals), spoofs of
    T' = 2 (two intervals: an interpolated checkpoint and W_T; Attack I one honest step, one
    optimised), one adversarial iteration and one retry (the fresh-batch path), one power
    iteration. The ResNet-50 row dominates: its attack units cost about 4.6 steps per
    iteration and try, and its calibrated replays run in float64 (helper R measured r1-a2 at
    T' = 4, two iterations: 473 s of a 2-core machine under load)."""
    if setup is None:
        return None
    return replace(setup, rows=tuple(_dry_train(r, steps_per_epoch=1, k=1) for r in setup.rows), t_primes=(2,),
                   iterations=1, retries=1, hvp_iterations=1, threads=(1,), search_steps=1)


def _dry_matrix(setup: MatrixSetup | None) -> MatrixSetup | None:
    """Helper X's block cut for a dry run: Zhang spoofs of 2 steps, a forged proof of 2 steps, one
    top-Q and one random-Q column (every kind of column, each verification costs ~1 s of ResNet-20 overhead)."""
    if setup is None:
        return None
    return replace(setup, zhang_t_prime=2, forge_steps=2, top_qs=(1,), random_seeds=(0,))


def _dry_detection(setup: DetectionSetup | None) -> DetectionSetup | None:
    """Helper D's detection block (issue 13) cut for a dry run: 3 steps an epoch, k = 1 blindfold
    proofs with Q_a = 1, two q (one cross-checked) and one Q, two draws, one honest proof per k."""
    if setup is None:
        return None
    return replace(setup, train=_dry_train(setup.train), blindfold_k=1, blindfold_q=1, random_qs=(1, 2),
                   top_qs=(1,), random_seeds=2, honest_seeds=1, cross_checks=1)

def dry_run_profile(name: str = "paper") -> Profile:
    """Profile `name` cut to a handful of steps for a CPU dry run (`polcore run ... --dry-run`).

    The models, their kwargs, the datasets (read from archives in the real formats), augmentation,
    k-interval proofs, verification and reduce are the profile's own; only sizes (examples, batch
    size, epochs, number of models, forging budgets) are cut, so the first run of the paper
    profile's code is not a reader's, hours into a GPU session.
    """
    base = get_profile(name)
    runs = base.independent_runs
    forging = base.forging
    if forging is not None:
        forging = replace(forging, lenet=_dry_train(forging.lenet, batch_size=8, steps_per_epoch=6, epochs=1),
                          vgg=_dry_train(forging.vgg, batch_size=8, steps_per_epoch=6, epochs=1),
                          logreg=_dry_train(forging.logreg, batch_size=8, steps_per_epoch=6, epochs=1),
                          **{k: v for k, v in _DRY_FORGING.items() if hasattr(forging, k)})
    return replace(
        base,
        name=name + DRY_RUN_SUFFIX,
        requires_cuda=False,
        description=f"a CPU dry run of the {name!r} profile: its code paths, a handful of steps",
        independent_runs=replace(runs, rows=tuple(_dry_train(r, steps_per_epoch=1) for r in runs.rows), n_models=3,
                                 n_pairs=3),
        pol=replace(base.pol, train=_dry_train(base.pol.train), n_reference_runs=2),  # the primer swaps checkpoints 2, 3
        forging=forging,
        fang=_dry_fang(base.fang),
        fang_stochastic=_dry_stochastic(base.fang_stochastic),
        zhang=_dry_zhang(base.zhang),
        detection=_dry_detection(base.detection),
        matrix=_dry_matrix(base.matrix),
    )
