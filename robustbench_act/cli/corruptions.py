"""``actbench corruptions``: list the corruptions, preview them as a grid, export -C datasets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from robustbench_act.cli.common import command
from robustbench_act.errors import UserError

corruptions_app = typer.Typer(
    name="corruptions",
    help="Common corruptions (CIFAR-10-C / Tiny-ImageNet-C / ImageNet-C): list, preview, export.",
    no_args_is_help=True,
    add_completion=False,
)

_err = Console(stderr=True, highlight=False, soft_wrap=True)


def _load_plugins(plugins: list[Path] | None) -> None:
    import corruptions

    for p in plugins or []:
        corruptions.load_plugin(p)


def _check_preset(preset: str | None) -> None:
    from corruptions import PRESETS

    if preset is not None and preset not in PRESETS:
        from robustbench_act.errors import unknown

        raise unknown("preset", preset, PRESETS)


def select_corruptions(spec: str) -> list[str]:
    """Names for a comma-separated mix of subsets (all, common, extra, a group) and names."""
    import corruptions

    out: list[str] = []
    for part in (p.strip() for p in spec.split(",")):
        if part:
            out.extend(n for n in corruptions.names(part) if n not in out)
    if not out:
        raise UserError(f"no corruptions selected by {spec!r}")
    return out


def _fmt_num(v: Any) -> str:
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, tuple)):
        if len(v) > 4 and all(isinstance(x, (int, float)) for x in v):
            steps = {round(b - a, 9) for a, b in zip(v, v[1:])}
            if len(steps) == 1:  # an arithmetic sequence: first..last step d
                return f"{_fmt_num(v[0])}..{_fmt_num(v[-1])}/{_fmt_num(steps.pop())}"
        return "[" + ",".join(_fmt_num(x) for x in v) + "]"
    return str(v)


def _fmt_row(row: dict) -> str:
    vals = [_fmt_num(v) for v in row.values()]
    return vals[0] if len(vals) == 1 else "(" + ",".join(vals) + ")"


@corruptions_app.command("list")
@command
def list_command(
    preset: str = typer.Option(
        "cifar", "--preset", help="Severity table: cifar, tinyimagenet or imagenet."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    plugin: list[Path] = typer.Option(
        None, "--plugin", help="Python file registering more corruptions (repeatable)."
    ),
) -> None:
    """List corruptions: name, group, random?, and the severity 1..5 parameters of a preset."""
    import corruptions

    _check_preset(preset)
    _load_plugins(plugin)
    rows = []
    for name in corruptions.names("all"):
        c = corruptions.get(name)
        table = [c.params(s, preset) for s in range(1, 6)] if preset in c.presets else None
        rows.append(
            {
                "name": name,
                "group": c.group,
                "benchmark": name in corruptions.COMMON,
                "random": c.random,
                "rgb": c.rgb,
                "params": list(c.param_names),
                "preset": preset,
                "severities": table,
                "description": c.description,
                "source": c.source,
            }
        )
    if as_json:
        typer.echo(json.dumps(rows, indent=2, default=str))
        return
    t = Table(title=f"Corruptions ({preset} preset)", show_lines=False)
    for col in ("name", "group", "random", "parameters", "severity 1..5"):
        t.add_column(col, overflow="fold")
    for r in rows:
        sev = "-" if r["severities"] is None else "  ".join(_fmt_row(p) for p in r["severities"])
        group = r["group"] + ("" if r["benchmark"] else " (extra)" if r["group"] != "extra" else "")
        t.add_row(r["name"], group, "yes" if r["random"] else "no", ", ".join(r["params"]), sev)
    Console(highlight=False, soft_wrap=False).print(t)
    from corruptions.frost import frost_description

    Console(highlight=False, soft_wrap=True).print(frost_description(), markup=False)


def _load_preview_image(
    image: Path | None, dataset: str | None, index: int, split: str, size: int | None
):
    """One uint8 image (1, C, S, S) from a file or a dataset item."""
    import torch
    import torch.nn.functional as F

    if (image is None) == (dataset is None):
        raise UserError("give an IMAGE file or --dataset SPEC (exactly one)")
    if index < 0:
        raise UserError(f"--index must be >= 0, got {index}")
    if size is not None and size < 8:
        raise UserError(f"--size must be >= 8, got {size}")
    if image is not None:
        from corruptions import CorruptionError
        from corruptions.imageio import read_image

        if not image.is_file():
            raise UserError(f"image file not found: {image}")
        try:
            img = read_image(image, 3)
        except CorruptionError as exc:
            raise UserError(f"cannot read image {image}: {exc}") from exc
        size = size or 32
    else:
        from robustbench_act.data import load_dataset

        ds = load_dataset(dataset, split=split, limit=index + 1)
        if not hasattr(ds, "__getitem__") or not hasattr(ds, "__len__"):
            raise UserError(
                f"--dataset {dataset!r} needs a clean dataset spec (give one corruption copy or a base set)"
            )
        if index >= len(ds):
            raise UserError(f"--index {index} is past the end of {dataset} ({len(ds)} images)")
        img = torch.as_tensor(ds[index][0])
    if size is not None:
        h, w = img.shape[-2:]
        if (h, w) != (size, size):
            scale = size / min(h, w)
            nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
            x = F.interpolate(
                img[None].float(),
                size=(nh, nw),
                mode="bilinear",
                antialias=True,
                align_corners=False,
            )
            top, left = (nh - size) // 2, (nw - size) // 2
            img = (
                x[0, :, top : top + size, left : left + size].round().clamp(0, 255).to(torch.uint8)
            )
    return img.unsqueeze(0)


def render_grid(rows: list[tuple[str, list[Any]]], out: Path, title: str) -> None:
    """Save a labelled grid (one row per corruption: clean + severities) as an image, atomically."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from robustbench_act.figures.style import save_figure

    ncols = len(rows[0][1])
    side = rows[0][1][0].shape[-1]
    cell = max(1.15, side / 90.0)
    fig_w, fig_h = cell * ncols + 1.6, cell * len(rows) + 0.75
    fig = Figure(figsize=(fig_w, fig_h), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(rows), ncols, squeeze=False)
    col_titles = ["clean"] + [f"severity {s}" for s in range(1, ncols)]
    for r, (name, imgs) in enumerate(rows):
        for ci, img in enumerate(imgs):
            ax = axes[r][ci]
            arr = img.permute(1, 2, 0).numpy()
            ax.imshow(arr[..., 0] if arr.shape[-1] == 1 else arr, cmap="gray" if arr.shape[-1] == 1 else None,
                      vmin=0, vmax=255, interpolation="nearest")  # fmt: skip
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(col_titles[ci], fontsize=9)
            if ci == 0:
                ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=9)
    fig.suptitle(title, fontsize=10, y=1 - 0.12 / fig_h, va="top")
    fig.subplots_adjust(left=1.5 / fig_w, right=1 - 0.05 / fig_w, top=1 - 0.65 / fig_h,
                        bottom=0.05 / fig_h, wspace=0.04, hspace=0.04)  # fmt: skip
    fmt = _image_format(out)
    save_figure(fig, out, fmt)


def _image_format(out: Path) -> str:
    """The image format an output path asks for (its suffix; png without one)."""
    return out.suffix.lstrip(".").lower() or "png"


def _check_image_format(out: Path) -> None:
    """Refuse an output suffix matplotlib cannot write, before any work is done."""
    from matplotlib.backend_bases import FigureCanvasBase

    fmt = _image_format(out)
    formats = sorted(FigureCanvasBase.get_supported_filetypes())
    if fmt not in formats:
        raise UserError(f"cannot write a .{fmt} image ({out}); use one of: {', '.join(formats)}")


@corruptions_app.command("preview")
@command(out="out_file")
def preview_command(
    image: Path | None = typer.Argument(None, help="An image file (png/jpg); or use --dataset."),
    out: Path = typer.Option(..., "--out", "-o", help="Output grid image (PNG)."),
    dataset: str | None = typer.Option(
        None, "--dataset", help="Dataset spec (digits, cifar10, imagefolder:PATH)."
    ),
    index: int = typer.Option(
        0, "--index", help="Image index in --dataset (also the corruption's sample index)."
    ),
    split: str = typer.Option("test", "--split", help="Dataset split."),
    size: int | None = typer.Option(
        None,
        "--size",
        help="Resize + centre-crop to SIZE px (default 32 for IMAGE, native for --dataset).",
    ),
    preset: str | None = typer.Option(
        None, "--preset", help="Severity table (default: from the image size)."
    ),
    seed: int = typer.Option(0, "--seed", help="Corruption seed."),
    corruption_spec: str = typer.Option(
        "all",
        "--corruptions",
        help="Comma-separated names and/or subsets: all, common, extra, noise, blur, weather, digital.",
    ),
    plugin: list[Path] = typer.Option(
        None, "--plugin", help="Python file registering more corruptions (repeatable)."
    ),
) -> None:
    """Render one image under every corruption and severity as a labelled grid."""
    import corruptions

    _check_image_format(out)
    _check_preset(preset)
    _load_plugins(plugin)
    selected = select_corruptions(corruption_spec)
    img = _load_preview_image(image, dataset, index, split, size)
    h, w = img.shape[-2:]
    used = preset or corruptions.preset_for_size(h, w)
    rows = []
    for name in selected:
        imgs = [img[0]]
        for s in range(1, 6):
            imgs.append(
                corruptions.apply(img, name, s, seed=seed, indices=[index], preset=preset)[0]
            )
        rows.append((name, imgs))
    src = str(image) if image is not None else f"{dataset}[{index}]"
    render_grid(rows, out, f"{src}  {w}x{h}  preset={used}  seed={seed}")
    typer.echo(f"wrote {out} ({len(rows)} corruptions x 5 severities)")


@corruptions_app.command("export")
@command(out="new_dir")
def export_command(
    dataset: str = typer.Option(
        ..., "--dataset", help="Clean dataset spec (digits, cifar10, cifar100, imagefolder:PATH)."
    ),
    out: Path = typer.Option(
        ..., "--out", "-o", help="Output folder (created; must not exist or be empty)."
    ),
    fmt: str = typer.Option(
        "cifar-c", "--format", help="cifar-c (<name>.npy + labels.npy) or imagefolder (PNG tree)."
    ),
    corruption_spec: str = typer.Option(
        "all",
        "--corruptions",
        help="Comma-separated names and/or subsets: all, common, extra, noise, blur, weather, digital.",
    ),
    severities: str = typer.Option("1-5", "--severities", help="e.g. 1-5, 3, 1,3,5."),
    seed: int = typer.Option(0, "--seed", help="Corruption seed."),
    limit: int | None = typer.Option(None, "--limit", help="Only the first N images."),
    split: str = typer.Option("test", "--split", help="Dataset split."),
    preset: str | None = typer.Option(
        None, "--preset", help="Severity table (default: from the image size)."
    ),
    batch_size: int = typer.Option(256, "--batch-size", help="Images per batch."),
    device: str = typer.Option(
        "cpu", "--device", help="Torch device for the corruption kernels (cpu, cuda, ...)."
    ),
    root: Path | None = typer.Option(None, "--root", help="Data root for cifar10/cifar100."),
    frost_dir: Path | None = typer.Option(
        None, "--frost-dir",
        help="Folder of frost photographs (default: $ACTBENCH_FROST_DIR, an installed package's, else procedural).",
    ),
    streams: int | None = typer.Option(None, "--streams", show_default=False, help="Output version of the corruptions: 4 (default), 3 (defocus blur by one convolution), 2 (and motion blur by FFT from 96x96 px) or 1 (runs made before 0.2: slower noise streams) [default: $CORRUPTIONS_STREAMS, else 4]."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a non-empty --out folder."),
    plugin: list[Path] = typer.Option(
        None, "--plugin", help="Python file registering more corruptions (repeatable)."
    ),
) -> None:
    """Write a CIFAR-10-C / ImageNet-C style copy of a dataset (atomic: all or nothing)."""
    from corruptions.frost import frost_description, frost_images
    from corruptions.streams import using_streams

    ds, selected, sevs = _export_inputs(dataset, out, fmt, corruption_spec, severities, limit, split, preset,
                                        batch_size, device, root, overwrite, plugin)  # fmt: skip
    with frost_images(frost_dir), using_streams(streams):
        from robustbench_act.pipeline import check_plugins

        also = ("frost",) if frost_dir is not None else ()  # user code and files fail before any output
        check_plugins(selected, sevs, ds, seed=seed, preset=preset, also=also)
        path = _export_with_progress(ds, out, selected, sevs, seed=seed, fmt=fmt, batch_size=batch_size,
                                     preset=preset, device=device, overwrite=overwrite)  # fmt: skip
    typer.echo(f"wrote {path} ({len(ds)} images x {len(selected)} corruptions x {len(sevs)} severities, {fmt})")
    frost = json.loads((path / "manifest.json").read_text(encoding="utf-8")).get("frost")
    if frost:
        typer.echo(frost_description(frost))


def _export_inputs(dataset: str, out: Path, fmt: str, corruption_spec: str, severities: str, limit: int | None,
                   split: str, preset: str | None, batch_size: int, device: str, root: Path | None,
                   overwrite: bool, plugin: list[Path] | None) -> tuple[Any, list[str], list[int]]:  # fmt: skip
    """Every export option checked, and the clean dataset loaded, before any output exists."""
    from corruptions.datasets import FORMATS
    from robustbench_act.data import load_dataset
    from robustbench_act.parsing import parse_severities

    if fmt not in FORMATS:
        from robustbench_act.errors import unknown

        raise unknown("format", fmt, FORMATS)
    _check_preset(preset)
    sevs = parse_severities(severities)
    _load_plugins(plugin)
    selected = select_corruptions(corruption_spec)
    if batch_size <= 0:
        raise UserError(f"--batch-size must be positive, got {batch_size}")
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not overwrite)):
        raise UserError(f"output folder {out} exists and is not empty (use --overwrite)")
    try:
        import torch

        torch.empty(0, device=device)
    except (RuntimeError, ValueError) as exc:
        raise UserError(f"unusable --device {device!r}: {str(exc).splitlines()[0]}") from None
    ds = load_dataset(dataset, split=split, limit=limit, root=root)
    if not hasattr(ds, "__getitem__") or not hasattr(ds, "__len__"):
        raise UserError(f"--dataset {dataset!r} is a family of corrupted copies; export needs a clean dataset")
    return ds, selected, sevs


def _export_with_progress(ds: Any, out: Path, selected: list[str], sevs: list[int], *, seed: int, fmt: str,
                          batch_size: int, preset: str | None, device: str, overwrite: bool) -> Path:  # fmt: skip
    """export_c_dataset under a lock beside ``out``, with a progress bar on stderr."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    from corruptions.datasets import export_c_dataset
    from robustbench_act.fileio import locked_beside

    with locked_beside(out), Progress(TextColumn("[bold]export[/]"), BarColumn(), MofNCompleteColumn(),
                                      TimeRemainingColumn(), console=_err, transient=False) as bar:  # fmt: skip
        task = bar.add_task("export", total=len(ds) * len(selected) * len(sevs))
        return export_c_dataset(ds, out, corruptions=selected, severities=sevs, seed=seed, format=fmt,
                                batch_size=batch_size, preset=preset, device=device, overwrite=overwrite,
                                progress=lambda done, total: bar.update(task, completed=done))  # fmt: skip


def register(app: typer.Typer) -> None:
    """Add the ``corruptions`` command group to the actbench app."""
    app.add_typer(corruptions_app, name="corruptions")
