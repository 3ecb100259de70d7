"""Training captions: every (dataset, class, template) sentence, tokenized once.

Captions are the class names in varied prompt templates: the CLIP template set of each dataset
(the ones zero-shot evaluation uses) plus a few more for variety. Each training sample draws one
template per step, so the text tower sees many phrasings of the same class.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from clipfuse.data.catalog import known_classnames, templates_for

EXTRA_TEMPLATES: dict[str, list[str]] = {
    "cifar10": ["a photo of a {c}.", "an image of a {c}.", "a small photo of a {c}.", "a {c}."],
    "fashion-mnist": [
        "a photo of a {c}, a type of clothing.",
        "a product photo of the {c}.",
        "a grayscale image of a {c}.",
        "an image of a {c}, a fashion item.",
        "a {c}.",
    ],
}


def training_templates(dataset: str) -> list[str]:
    """The dataset's CLIP templates followed by the extra ones (duplicates dropped, order kept)."""
    return list(dict.fromkeys(templates_for(dataset) + EXTRA_TEMPLATES.get(dataset, [])))


@dataclass
class CaptionBank:
    """All captions of the training domains as one token matrix.

    `offsets[d][c]` is the first row of domain d, class c; that class has `counts[d]` rows, one
    per template.
    """

    texts: list[str]
    tokens: torch.Tensor  # (M, context_length) int64
    offsets: torch.Tensor  # (D, C) int64
    counts: torch.Tensor  # (D,) int64 templates per domain

    @classmethod
    def build(cls, domains: list[str], tokenizer) -> CaptionBank:
        texts: list[str] = []
        offsets, counts = [], []
        for name in domains:
            templates = training_templates(name)
            row = []
            for classname in known_classnames(name):
                row.append(len(texts))
                texts.extend(t.replace("{c}", classname) for t in templates)
            offsets.append(row)
            counts.append(len(templates))
        tokens = tokenizer(texts)
        return cls(texts, tokens, torch.tensor(offsets), torch.tensor(counts))

    def draw(
        self, domain: torch.Tensor, label: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        """One caption row per sample, its template drawn uniformly."""
        counts = self.counts[domain]
        pick = (torch.rand(len(domain), generator=generator) * counts).long().clamp_max(counts - 1)
        return self.offsets[domain, label] + pick
