"""``auto``: choose the pipeline the labels support, by nested cross-validation (issue 21).

A user's question is "given my backbones and k labels per class, what is the best classifier?".
No single pipeline answers it: fusion of zero-shot logits (``safe_conf_mix``) is safe where the
text classifier is good and useless where it is not; per-backbone probes / Tip-Adapter-F with a
fusion on top (``lp_super_learner``, ``tipf_super_learner``) or zero-shot-initialised probes
(``zs_probe``) win big where zero-shot fails and lose where it is good. ``auto`` looks at the
evidence on the user's own hold-out:

- Every class has >= 2 labels: stratified K-fold cross-validation (K = min(folds, fewest labels
  per class)) of every candidate, each refitted inside every fold on that fold's training rows
  (plus the unlabelled images, y == -1, for candidates that declare ``uses_unlabelled``); the
  fold's held-out rows are never given to the fit, labelled or not, so choosing cannot leak.
  More than ``max_cv_classes`` classes: the CV runs on a seeded subset of that many classes (cost
  flat in C). The candidate with the highest cross-validated accuracy wins (ties: lower NLL), but the safe
  default (``fallback``) is kept unless the winner beats it by more than ``margin`` points and
  by more than ``margin_rows`` held-out rows (``choose_by_cv``).
- A class has a single label (1 shot): no fold can hold a row out and still know that class, so
  the rule uses signals no cross-validation is needed for. The zero-shot logits learned nothing
  from the labels, so their accuracy on the labelled rows is an honest estimate; with the
  backbones' agreement on the unlabelled images (near 1/C when the text classifier means
  nothing) it says whether zero-shot is worth keeping. Zero-shot below ``one_shot_threshold`` x
  chance (``one_shot_bar``) -> ``one_shot_heads`` (a head pipeline), else ``one_shot_strong``.
Where no candidate beats the fallback by the margin (CV cannot tell them apart),
``combine="hybrid"`` (default) predicts with the Super Learner blend of the candidates instead:
the convex mixture of their probabilities with the lowest out-of-fold NLL (``stack_weights``),
each member refitted on everything. A clear winner is used alone: an NLL-optimal blend hedges
toward a smooth member and gave up 30 accuracy points on one suite task where a head won clearly.
A candidate whose fit on all rows is predicted (from its CV fold fits) to exceed
``time_budget_s`` is not chosen (recorded); the fallback always stays.
Then the chosen candidate is fitted on all rows. Prediction is that candidate's, so it stays
inductive (one image at a time gives the same answer). The choice, every candidate's CV scores
and the signals are in ``fit_notes()`` (results tables, saved ensembles). A candidate that fails
to fit inside a fold is dropped and recorded; too few labels for CV is a recorded rule, not an
error. Candidates are built by registered name (``make_combiner``), so any registered pipeline
(or a preset of one) can be a candidate.
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch
import torch.nn.functional as F

from clipfuse.combiners._compose import build_combiner
from clipfuse.combiners._optim import minimise_lbfgs
from clipfuse.combiners.base import Combiner
from clipfuse.combiners.folds import stratified_folds
from clipfuse.combiners.registry import combiner_from_state, register_combiner
from clipfuse.errors import ClipfuseError, FitError

# Chosen on the task suite (BENCHMARKS.md "Task suite"); lp_super_learner is left out of the CV
# candidates because it costs ~7x tipf_super_learner per fit and the suite's CV rarely needs it.
DEFAULT_CANDIDATES = ("safe_conf_mix", "zs_probe", "tipf_super_learner")
# "choose": the CV winner alone; "stack": the Super Learner blend of the candidates; "hybrid"
# (default, chosen on the task suite): the winner where it beats the fallback by the margin, the
# blend where CV cannot tell them apart.
COMBINE = ("choose", "stack", "hybrid")


def agreement(z: torch.Tensor) -> float:
    """Mean pairwise share of rows on which two backbones' zero-shot argmax agree."""
    pred = z.argmax(-1)
    b = pred.shape[0]
    pairs = [(i, j) for i in range(b) for j in range(i + 1, b)]
    if not pairs:
        return 1.0
    return float(sum((pred[i] == pred[j]).float().mean() for i, j in pairs) / len(pairs))


def zero_shot_signals(z: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """Label-free and label-honest evidence on the zero-shot logits (no fitting involved).

    ``zs_acc_labelled``: best single backbone's zero-shot accuracy on the labelled rows;
    ``agreement_excess``: backbones' pairwise agreement on all rows, as a multiple of chance (1/C);
    ``confidence``: mean max-softmax of the mean of logits on all rows."""
    lab = y >= 0
    c = z.shape[2]
    accs = (z[:, lab].argmax(-1) == y[lab]).float().mean(-1)
    conf = torch.softmax(z.mean(0), -1).max(-1).values.mean()
    return {
        "zs_acc_labelled": float(accs.max()),
        "agreement_excess": agreement(z) * c,
        "confidence": float(conf),
        "chance": 1.0 / c,
    }


def choose_by_cv(
    scores: dict[str, dict[str, float]], fallback: str, margin: float, examples: int, n: int
) -> str:
    """The CV winner (highest accuracy, ties: lower NLL), unless it beats ``fallback`` by no more
    than ``margin`` points or no more than ``examples`` of the ``n`` held-out rows (at 4 shots x
    10 classes one row is 2.5 points: one lucky row must not switch pipelines)."""
    if not scores:
        return fallback
    best = max(scores, key=lambda k: (scores[k]["cv_acc"], -scores[k]["cv_nll"]))
    safe = scores.get(fallback)
    if safe is None:
        return best
    need = max(float(margin) / 100.0, int(examples) / max(int(n), 1))  # cv_acc is a fraction
    return fallback if scores[best]["cv_acc"] <= safe["cv_acc"] + need + 1e-9 else best


def stack_weights(oof: dict[str, torch.Tensor], y: torch.Tensor, floor: float = 0.05):
    """Super Learner weights over pipelines (van der Laan et al. 2007): the convex mixture of
    their out-of-fold probabilities with the lowest NLL on the CV rows; weights below ``floor``
    are dropped (a member costs a fit and a prediction) and the rest renormalised. Between
    pipelines that CV cannot tell apart, a blend does not have to bet on one."""
    names = list(oof)
    if len(names) < 2:
        return {n: 1.0 for n in names}
    logp = torch.stack([oof[n].gather(1, y.view(-1, 1)).squeeze(1) for n in names])  # (K, N)
    a = torch.zeros(len(names), requires_grad=True)

    def loss() -> torch.Tensor:
        return -torch.logsumexp(torch.log_softmax(a, 0).view(-1, 1) + logp, 0).mean()

    minimise_lbfgs([a], loss, 100)
    w = torch.softmax(a.detach(), 0)
    keep = {n: float(v) for n, v in zip(names, w) if float(v) >= floor}
    total = sum(keep.values())
    return {n: v / total for n, v in keep.items()}


def one_shot_bar(threshold: float, chance: float) -> float:
    """Zero-shot accuracy below which 1-shot ``auto`` prefers heads: ``threshold`` x chance, but
    never above a third of the way from chance to perfect (with 4 classes, 4 x chance would be
    100 %). At 10 classes (the suite's) both are 40 %."""
    return min(threshold * chance, chance + (1.0 - chance) / 3.0)


@register_combiner(groups=("recommended",))
class AutoSelect(Combiner):
    """Chooses among registered pipelines by nested CV (>= 2 labels per class) or by zero-shot
    evidence (1 label), then fits the choice on everything (see the module doc).

    Fitted: ``choice_``, ``rule_`` ("cv" or "one-shot"), ``scores_`` (candidate -> CV accuracy /
    NLL), ``signals_``, ``dropped_`` (candidate -> why it failed), ``chosen_model_``.
    """

    name = "auto"
    uses_features = True
    uses_unlabelled = True
    min_per_class = 1

    def __init__(
        self,
        *,
        candidates: tuple[str, ...] | list[str] = DEFAULT_CANDIDATES,
        fallback: str = "safe_conf_mix",
        one_shot_heads: str = "lp_super_learner",
        one_shot_strong: str = "safe_conf_mix",
        one_shot_threshold: float = 4.0,
        folds: int = 3,
        margin: float = 1.0,
        margin_rows: int = 1,
        max_cv_classes: int = 30,
        time_budget_s: float | None = 60.0,
        combine: str = "hybrid",
        seed: int = 0,
        device: str = "cpu",
    ) -> None:
        super().__init__(device=device)
        self.candidates = candidates
        self.fallback = fallback
        self.one_shot_heads = one_shot_heads
        self.one_shot_strong = one_shot_strong
        self.one_shot_threshold = one_shot_threshold
        self.folds = folds
        self.margin = margin
        self.margin_rows = margin_rows
        self.max_cv_classes = max_cv_classes
        self.time_budget_s = time_budget_s
        self.combine = combine
        self.seed = seed

    def _validate_params(self) -> None:
        if not self.candidates:
            raise FitError("auto: candidates must name at least one registered combiner")
        if self.fallback not in self.candidates:
            raise FitError(f"auto: fallback {self.fallback!r} must be one of the candidates")
        if int(self.folds) < 2:
            raise FitError(f"auto: folds must be >= 2; got {self.folds}")
        if self.combine not in COMBINE:
            raise FitError(f"auto: combine must be one of {COMBINE}; got {self.combine!r}")
        if int(self.max_cv_classes) < 2:
            raise FitError(f"auto: max_cv_classes must be >= 2; got {self.max_cv_classes}")
        if self.time_budget_s is not None and not float(self.time_budget_s) > 0:
            raise FitError(f"auto: time_budget_s must be > 0 or None; got {self.time_budget_s}")
        for name in {*self.candidates, self.one_shot_heads, self.one_shot_strong}:
            if name == self.name:
                raise FitError("auto cannot be its own candidate")
            self._build(name)  # unknown names fail here, before any work

    def _build(self, name: str) -> Combiner:
        return build_combiner(name, seed=int(self.seed), device=self.device)

    @staticmethod
    def _rows_for(model: Combiner, train: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Training rows of one fold: its labelled rows, plus unlabelled ones if it uses them."""
        if model.uses_unlabelled:
            return torch.cat([train, torch.nonzero(y < 0).flatten()])
        return train

    def _fit_on(
        self, name: str, feats: list[torch.Tensor], z: torch.Tensor, y: torch.Tensor, rows
    ) -> Combiner:
        model = self._build(name)
        rows = self._rows_for(model, rows, y)
        model.fit([f[rows] for f in feats] if model.uses_features else None, z[:, rows], y[rows])
        return model

    def _class_subset(self, feats, z, y):
        """The CV problem: at most ``max_cv_classes`` classes (seeded), their labelled rows and
        the unlabelled rows the mean zero-shot assigns to them, labels renumbered. Choosing a
        pipeline on a random subset of classes keeps CV's cost flat in C (1,000 classes x 9
        backbones fit in the fit-time target) while every candidate sees the same kind of task."""
        c = z.shape[2]
        if c <= int(self.max_cv_classes):
            return feats, z, y
        gen = torch.Generator().manual_seed(int(self.seed))
        keep = torch.randperm(c, generator=gen)[: int(self.max_cv_classes)].sort().values
        keep = keep.to(z.device)
        new_id = torch.full((c,), -2, dtype=torch.long, device=z.device)
        new_id[keep] = torch.arange(keep.numel(), device=z.device)
        guess = new_id[z.mean(0).argmax(-1)]
        y_sub = torch.where(y >= 0, new_id[y.clamp(min=0)], torch.where(guess >= 0, -1, -2))
        rows = torch.nonzero(y_sub >= -1).flatten()
        self.cv_classes_ = int(keep.numel())
        return [f[rows] for f in feats], z[:, rows][:, :, keep], y_sub[rows]

    def _cross_validate(self, feats, z, y, k: int):
        """(candidate -> CV accuracy / NLL / fold fit time, candidate -> out-of-fold
        log-probabilities of the CV rows, the CV rows' labels); fit-time only, not state."""
        feats, z, y = self._class_subset(feats, z, y)
        labelled = torch.nonzero(y >= 0).flatten()
        fold = stratified_folds(y[labelled], k, int(self.seed))
        scores: dict[str, dict[str, float]] = {}
        oofs: dict[str, torch.Tensor] = {}
        for name in self.candidates:
            correct, nll, fit_s = 0.0, 0.0, 0.0
            oof = torch.zeros(labelled.numel(), z.shape[2], device=z.device)
            try:
                for f in range(k):
                    test = labelled[fold == f]
                    t0 = time.perf_counter()
                    model = self._fit_on(name, feats, z, y, labelled[fold != f])
                    fit_s += time.perf_counter() - t0
                    out = model.predict_logits([x[test] for x in feats], z[:, test])
                    oof[fold == f] = torch.log_softmax(out.float(), -1)
                    correct += float((out.argmax(-1) == y[test]).sum())
                    nll += float(F.cross_entropy(out.float(), y[test], reduction="sum"))
            except ClipfuseError as exc:  # e.g. a head that cannot fit a tiny fold
                self.dropped_[name] = str(exc)
                continue
            n = labelled.numel()
            self.cv_rows_ = int(n)
            oofs[name] = oof
            scores[name] = {"cv_acc": correct / n, "cv_nll": nll / n, "fold_fit_s": fit_s / k}
        return scores, oofs, y[labelled]

    def _within_budget(self, scores, num_classes: int, k: int) -> dict[str, dict[str, float]]:
        """The candidates whose fit on everything is predicted to take at most
        ``time_budget_s``: a fold's fit time scaled by (rows ratio)^2 -- rows grow with the
        classes left out of the CV subset and with the held-out fold, and a head's cost grows
        with rows x classes. The fallback is always kept (it is the safe default); a dropped
        candidate is recorded with its prediction."""
        scale = (num_classes / max(self.cv_classes_, 1)) * k / (k - 1)
        kept = {}
        for name, score in scores.items():
            score["predicted_fit_s"] = score["fold_fit_s"] * scale**2
            over = self.time_budget_s is not None and score["predicted_fit_s"] > self.time_budget_s
            if over and name != self.fallback:
                self.dropped_[name] = (
                    f"predicted fit on all rows {score['predicted_fit_s']:.0f} s > time_budget_s "
                    f"{float(self.time_budget_s):.0f} s"
                )
                continue
            kept[name] = score
        return kept

    def _fit(self, features: list[torch.Tensor] | None, z: torch.Tensor, y: torch.Tensor) -> None:
        assert features is not None
        c = z.shape[2]
        self.dropped_: dict[str, str] = {}
        self.scores_: dict[str, dict[str, float]] = {}
        self.stack_weights_: dict[str, float] = {}
        self.signals_ = zero_shot_signals(z, y)
        self.cv_classes_, self.cv_rows_ = c, 0
        fewest = int(torch.bincount(y[y >= 0], minlength=c).min())
        if fewest >= 2:
            self.rule_ = f"cv ({min(int(self.folds), fewest)}-fold, nested)"
            k = min(int(self.folds), fewest)
            self.scores_, oofs, y_cv = self._cross_validate(features, z, y, k)
            kept = self._within_budget(self.scores_, c, k)
            self.choice_ = choose_by_cv(
                kept, self.fallback, float(self.margin), int(self.margin_rows), self.cv_rows_
            )
            unclear = self.choice_ == self.fallback  # no candidate beat it by the margin
            if self.combine == "stack" or (self.combine == "hybrid" and unclear):
                self.stack_weights_ = stack_weights({n: oofs[n] for n in kept}, y_cv)
                if len(self.stack_weights_) == 1:  # one pipeline carries the blend: that one
                    self.choice_, self.stack_weights_ = next(iter(self.stack_weights_)), {}
        else:
            self.rule_ = "one-shot (a class has 1 label: zero-shot evidence, no CV)"
            s = self.signals_
            weak = s["zs_acc_labelled"] < one_shot_bar(float(self.one_shot_threshold), s["chance"])
            self.choice_ = self.one_shot_heads if weak else self.one_shot_strong
        labelled = torch.nonzero(y >= 0).flatten()
        try:
            model = self._fit_on(self.choice_, features, z, y, labelled)
        except ClipfuseError as exc:
            if self.choice_ == self.fallback:
                raise
            self.dropped_[self.choice_] = str(exc)
            self.choice_ = self.fallback
            model = self._fit_on(self.choice_, features, z, y, labelled)
        self.chosen_model_ = model
        self.others_: dict[str, Combiner] = {}
        for name in list(self.stack_weights_):
            if name == self.choice_:
                continue
            try:
                self.others_[name] = self._fit_on(name, features, z, y, labelled)
            except ClipfuseError as exc:  # a member that cannot fit on everything leaves the blend
                self.dropped_[name] = str(exc)
                del self.stack_weights_[name]
        models = {self.choice_: self.chosen_model_, **self.others_}
        left = {n: w for n, w in self.stack_weights_.items() if n in models}
        if len(left) == 1:  # one member is left of the blend: that pipeline alone
            self.choice_ = next(iter(left))
            self.chosen_model_, left = models[self.choice_], {}
        self.others_ = {n: m for n, m in self.others_.items() if n in left and n != self.choice_}
        total = sum(left.values())
        self.stack_weights_ = {n: w / total for n, w in left.items()}

    def _members(self) -> list[tuple[float, Combiner]]:
        """(weight, fitted pipeline): the stack's members, or the chosen pipeline alone."""
        if len(self.stack_weights_) < 2:
            return [(1.0, self.chosen_model_)]
        models = {self.choice_: self.chosen_model_, **self.others_}
        return [(w, models[n]) for n, w in self.stack_weights_.items()]

    def _predict_logits(self, features: list[torch.Tensor] | None, z: torch.Tensor) -> torch.Tensor:
        members = self._members()
        outs = [
            (w, m.predict_logits(features if m.uses_features else None, z)) for w, m in members
        ]
        if len(outs) == 1:
            return outs[0][1]
        return torch.logsumexp(
            torch.stack([torch.log_softmax(o.float(), -1) + math.log(w) for w, o in outs]), 0
        )

    def chosen_backbone(self) -> int | None:
        self._check_fitted()
        if len(self.stack_weights_) >= 2:
            return None
        return self.chosen_model_.chosen_backbone()

    def fit_notes(self) -> dict[str, Any]:
        self._check_fitted()
        notes: dict[str, Any] = {
            "auto_choice": self.choice_,
            "auto_rule": self.rule_,
            "auto_signals": {k: round(v, 4) for k, v in self.signals_.items()},
        }
        if self.scores_:
            notes["auto_cv"] = {
                n: {k: round(v, 4) for k, v in s.items()} for n, s in self.scores_.items()
            }
        if self.dropped_:
            notes["auto_dropped"] = dict(self.dropped_)
        if self.scores_ and self.cv_classes_ < self.num_classes_:
            notes["auto_cv_classes"] = self.cv_classes_
        if len(self.stack_weights_) >= 2:
            notes["auto_stack"] = {n: round(w, 4) for n, w in self.stack_weights_.items()}
        inner = self.chosen_model_.fit_notes()
        notes.update({k: v for k, v in inner.items() if k not in notes})
        return notes

    # ---- saved state ---------------------------------------------------------------------
    def _get_fitted(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        meta = {
            "choice": self.choice_,
            "rule": self.rule_,
            "scores": self.scores_,
            "signals": self.signals_,
            "dropped": self.dropped_,
            "cv_classes": self.cv_classes_,
            "chosen": self.chosen_model_.config(),
            "stack": self.stack_weights_,
            "others": {n: m.config() for n, m in self.others_.items()},
        }
        tensors = {f"chosen.{k}": v for k, v in self.chosen_model_.state_dict().items()}
        for n, m in self.others_.items():
            tensors.update({f"other.{n}.{k}": v for k, v in m.state_dict().items()})
        return meta, tensors

    def _set_fitted(self, meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        self.choice_, self.rule_ = meta["choice"], meta["rule"]
        self.scores_, self.signals_ = dict(meta["scores"]), dict(meta["signals"])
        self.dropped_ = dict(meta["dropped"])
        self.cv_classes_ = int(meta["cv_classes"])
        inner = {k[len("chosen.") :]: v for k, v in tensors.items() if k.startswith("chosen.")}
        self.chosen_model_ = combiner_from_state(meta["chosen"], inner, device=self.device)
        self.stack_weights_ = dict(meta.get("stack", {}))  # saved before stacking: none
        self.others_ = {}
        for n, config in meta.get("others", {}).items():
            own = {k[len(f"other.{n}.") :]: v for k, v in tensors.items()
                   if k.startswith(f"other.{n}.")}  # fmt: skip
            self.others_[n] = combiner_from_state(config, own, device=self.device)
