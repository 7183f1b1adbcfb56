"""Parameter counts and weight sizes of the registered models (issue item 7).

    python -m interceptor_lib.models.size_report            # markdown table at B4 size
    size_table(["ll", "effnet_b4"], backbone="test_efficientnet")

Built with pretrained=False (the counts do not depend on the weights), so it runs offline.
fp32 / fp16 MB are the state dict's tensor bytes (parameters + BN statistics, 10^6 bytes) stored at
that precision: what a safetensors checkpoint of the weights takes, without optimizer state.
"""

from __future__ import annotations

import argparse

import pandas as pd
from torch import nn

from interceptor_lib.models.registry import create_model, list_models


def parameter_report(model: nn.Module) -> dict:
    """Total / frozen / trainable parameters, backbone vs new ones, and fp32 / fp16 weight megabytes."""
    params = list(model.parameters())
    total = sum(p.numel() for p in params)
    trainable = sum(p.numel() for p in params if p.requires_grad)
    backbone = sum(p.numel() for p in model.backbone.parameters())
    state = model.state_dict()
    floats = sum(t.numel() for t in state.values() if t.is_floating_point())
    other = sum(t.numel() * t.element_size() for t in state.values() if not t.is_floating_point())
    return {"total": total, "frozen": total - trainable, "trainable": trainable, "backbone_params": backbone,
            "new_params": total - backbone, "fp32_MB": (floats * 4 + other) / 1e6,
            "fp16_MB": (floats * 2 + other) / 1e6}


def size_table(names: list[str] | None = None, backbone: str | None = None, **kwargs) -> pd.DataFrame:
    """One row per model (default: all registered). `backbone=None` keeps each model's own default
    (EfficientNet-B4 for the specialists and effnet_b4, MobileNetV2 for dual_stream_v3, Xception for
    xception); extra kwargs (e.g. trainable_stages=2) go to create_model."""
    rows = []
    for name in names or list_models():
        kw = dict(kwargs, pretrained=False)
        if backbone is not None:
            kw["backbone"] = backbone
        model = create_model(name, **kw)
        rows.append({"model": name, "backbone": model.backbone.name,
                     "trainable_stages": model.config.trainable_stages, **parameter_report(model)})
        del model
    return pd.DataFrame(rows).set_index("model")


def to_markdown(df: pd.DataFrame) -> str:
    """A GitHub table, parameters in millions, without the tabulate dependency."""
    head = ["model", "backbone", "trainable stages", "total (M)", "frozen (M)", "trainable (M)",
            "backbone (M)", "new (M)", "fp32 MB", "fp16 MB"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, r in df.iterrows():
        stages = "all" if pd.isna(r["trainable_stages"]) else str(int(r["trainable_stages"]))
        millions = [f"{r[c] / 1e6:.2f}" for c in ("total", "frozen", "trainable", "backbone_params", "new_params")]
        lines.append("| " + " | ".join([name, r["backbone"], stages, *millions,
                                         f"{r['fp32_MB']:.1f}", f"{r['fp16_MB']:.1f}"]) + " |")
    return "\n".join(lines)


def main(argv=None) -> pd.DataFrame:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbone", default=None, help="override every model's backbone (default: each model's own)")
    ap.add_argument("--models", nargs="*", default=None, help="registered names (default: all)")
    args = ap.parse_args(argv)
    df = size_table(args.models, args.backbone)
    print(to_markdown(df))
    return df


if __name__ == "__main__":
    main()
