"""The zoo: small CLIP backbones trained here, so the method runs on real images offline.

Four open_clip models share the text tower, the data (CIFAR-10 + Fashion-MNIST train), the
data order, the CLIP loss and the schedule; only the image tower differs (ModifiedResNet,
ViT patch 4, ViT patch 8, timm ConvNeXt). Committed weights live in `weights/NAME/` and load
with `clipfuse.backbones.load_backbone("zoo:NAME")`; `train_zoo` / `main` is the recipe.
"""

from clipfuse.zoo.configs import ZOO_NAMES, model_config
from clipfuse.zoo.recipe import Recipe
from clipfuse.zoo.train import main, train_zoo

__all__ = ["ZOO_NAMES", "Recipe", "main", "model_config", "train_zoo"]
