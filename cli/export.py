"""``fastnn export MODEL.npz --format onnx|torch -o PATH``: a checkpoint for ONNX Runtime or PyTorch."""

from __future__ import annotations

import click

from fastnn.cli.errors import reports_errors


@click.command("export")
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(["onnx", "torch"]), required=True,
              help="onnx: an ONNX graph; torch: a state_dict for torch.nn.Sequential.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), required=True, help="File to write.")
@click.option("--no-normalization", is_flag=True,
              help="Leave the checkpoint's input normalisation out (the export then takes "
                   "normalised inputs).")
@reports_errors
def export(checkpoint, fmt, output, no_normalization):
    """Export a checkpoint of `fastnn train` (or any fastnn.save file) to ONNX or PyTorch.

    The export takes raw inputs: the checkpoint's normalisation is the ONNX graph's first nodes, or
    folded into the first torch Linear layer. Batch / layer normalisation layers become ONNX
    BatchNormalization / LayerNormalization nodes, or torch BatchNorm1d / LayerNorm modules (the
    printed module is in evaluation mode). Class names go into the ONNX metadata.
    """
    from fastnn.checkpoint import load_checkpoint
    from fastnn.export import save_torch_state_dict, to_onnx, torch_sequential_source

    ckpt = load_checkpoint(checkpoint)
    meta = ckpt.metadata
    mean = std = None
    if not no_normalization and "mean" in meta and "std" in meta:
        mean, std = meta["mean"], meta["std"]
    if fmt == "onnx":
        names = meta.get("class_names") if ckpt.model.output == "softmax" else None
        path = to_onnx(ckpt.model, output, mean=mean, std=std, class_names=names)
        click.echo(f"ONNX model written to {path} (input 'input' float32 (N, {ckpt.model.n_inputs}); "
                   f"outputs {'probabilities, label' if ckpt.model.output == 'softmax' else 'outputs'})")
        return
    path = save_torch_state_dict(ckpt.model, output, mean=mean, std=std)
    click.echo(f"PyTorch state_dict written to {path}; rebuild it with:\n"
               f"import torch\n"
               f"net = {torch_sequential_source(ckpt.model)}\n"
               f"net.load_state_dict(torch.load({str(path)!r}))")
