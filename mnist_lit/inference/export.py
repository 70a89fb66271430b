"""Export a trained checkpoint for inference without Lightning: ONNX (any runtime) or ``torch.export`` (.pt2).

The exported graph takes what an application has at hand, pixels in [0, 1] shaped N×1×28×28 with a
light digit on a dark background (``mnist_lit.data.image_files.to_mnist_digit`` / 255 prepares any image), and
returns the 10 class probabilities. The network standardizes its own input, so a caller never needs to
know whether the model was trained on standardized pixels.

    mnist-lit export --ckpt_path logs/mlp/version_0/checkpoints/last.ckpt --output mnist.onnx
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch import Tensor, nn

from mnist_lit.data.constants import IMAGE_SIZE
from mnist_lit.errors import ConfigurationError, MNISTLitError
from mnist_lit.model.classifier import MNISTClassifier

FORMATS = {".onnx": "onnx", ".pt2": "torch.export"}
INPUT_NAME, OUTPUT_NAME = "pixels", "probabilities"


class DigitProbabilities(nn.Module):
    """Pixels in [0, 1] → class probabilities."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, pixels: Tensor) -> Tensor:
        return self.net(pixels).softmax(dim=-1)


def inference_module(checkpoint_path: str | Path) -> DigitProbabilities:
    """The checkpoint's network in eval mode on the CPU."""
    model = MNISTClassifier.load_from_checkpoint(checkpoint_path, map_location="cpu", weights_only=False)
    return DigitProbabilities(model.net).eval()


def export_checkpoint(checkpoint_path: str | Path, output: str | Path) -> Path:
    """Write ``output`` in the format its suffix names (``.onnx`` or ``.pt2``); the batch size stays free."""
    output = Path(output)
    if output.suffix not in FORMATS:
        raise ConfigurationError(
            f"{output}: unknown export format; name the file *.onnx (ONNX) or *.pt2 (torch.export)."
        )
    module = inference_module(checkpoint_path)
    example = torch.rand(2, 1, IMAGE_SIZE, IMAGE_SIZE)
    batch = torch.export.Dim("batch")
    output.parent.mkdir(parents=True, exist_ok=True)
    if output.suffix == ".pt2":
        torch.export.save(torch.export.export(module, (example,), dynamic_shapes=({0: batch},)), output)
        return output
    try:
        program = torch.onnx.export(
            module,
            (example,),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_shapes=({0: batch},),
            dynamo=True,
            verbose=False,
        )
    except ImportError as error:
        raise ConfigurationError(
            f"ONNX export needs the onnx and onnxscript packages ({error}); install them with "
            "`pip install mnist-lit[export]`, or export to *.pt2 instead."
        ) from error
    program.save(str(output))
    return output


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="mnist-lit export", description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt_path", required=True, help="a checkpoint written by `mnist-lit fit`")
    parser.add_argument("--output", required=True, help="where to write: *.onnx or *.pt2")
    args = parser.parse_args(argv)
    if not Path(args.ckpt_path).is_file():
        parser.exit(2, f"mnist-lit export: error: no checkpoint at {args.ckpt_path}.\n")
    try:
        written = export_checkpoint(args.ckpt_path, args.output)
    except MNISTLitError as error:
        parser.exit(2, f"mnist-lit export: error: {error}\n")
    print(f"wrote {written}", file=sys.stderr)


if __name__ == "__main__":
    main()
