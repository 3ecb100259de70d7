"""Zero-shot-initialised linear probes: a logistic regression that starts AT the text classifier.

Per backbone b, on L2-normalised features x:
``logits_b(x) = z_b(x) + x W_b^T + c_b``, fitted by ``mean CE + weight_decay / (2 C) *
(||W_b||^2 + ||c_b||^2)`` (``fit_logistic`` with an offset), starting from ``W_b = 0, c_b = 0``.
The zero-shot logits are linear in the normalised feature (``z_b(x) = s_b x T_b^T`` with the
text embeddings ``T_b`` and logit scale ``s_b``), so this is exactly a linear probe initialised
at the text weights ``s_b T_b`` and penalised for its squared distance from them (the residual
form needs no access to ``T_b``, only to the zero-shot logits every combiner already gets).
With a large weight decay the head *is* the zero-shot classifier; a finite one moves it only as
far as the labels pay for, so with one shot it stays close to zero-shot instead of collapsing to
a one-example prototype as a plain probe does. Dividing the penalty by the number of classes
keeps a weight decay's meaning the same for 10 and 1,000 classes (see ``clipfuse.heads.linear``).

Weight decay: k-fold cross-validation on the hold-out when every class has >= 2 labelled rows
(``LinearProbeHeads``' selection, same folds, same tie-break), otherwise the fixed
``default_weight_decay``, chosen on the shipped demo images only (BENCHMARKS.md
"Zero-shot-initialised probes").
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from clipfuse.heads.linear import LinearProbeHeads


class ZeroShotProbeHeads(LinearProbeHeads):
    """Per-backbone residual logistic regression on top of the zero-shot logits.

    Fitted tensors ``weight`` (C, D) and ``bias`` (C,) are the *distance* from the zero-shot
    classifier (zero = zero-shot); metadata records each backbone's weight decay and how it was
    chosen (cross-validation table or the fixed default).
    """

    kind = "zsprobe"
    DEFAULTS = {
        "weight_decays": [0.1, 1.0, 10.0, 100.0],
        "default_weight_decay": 30.0,
        "cv_folds": 3,
        "max_iter": 100,
    }
    penalise_bias = True

    def _init(self, x: torch.Tensor, y: torch.Tensor, c: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Start at the zero-shot classifier: no residual."""
        return torch.zeros(c, x.shape[1], device=x.device), torch.zeros(c, device=x.device)

    def _inputs(
        self, features: torch.Tensor, logits: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Normalised features (the space the text classifier is linear in), zero-shot offset."""
        return F.normalize(features.float(), dim=1), logits.float()
