"""Evaluation engine: paired corrupted batches, streaming metrics, probes levels, resume, sharding."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import corruptions
from robustbench_act.evaluate import Normalize, evaluate, evaluate_tables, shard_range
from robustbench_act.results import load_run

CORRS = ["gaussian_noise", "contrast"]
MEAN, STD = (0.4,), (0.25,)


class TinySet(torch.utils.data.Dataset):
    """Synthetic grey 8x8 uint8 images; ``in_memory`` exposes .images/.labels like data.ImageDataset."""

    def __init__(self, n: int = 23, in_memory: bool = True, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self._x = torch.randint(0, 256, (n, 1, 8, 8), generator=g, dtype=torch.uint8)
        self._y = torch.randint(0, 10, (n,), generator=g)
        if in_memory:
            self.images, self.labels = self._x, self._y
        self.name, self.num_classes, self.mean, self.std, self.channels = "tiny", 10, MEAN, STD, 1
        self.classes = [str(i) for i in range(10)]

    def __len__(self) -> int:
        return len(self._y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self._x[i], int(self._y[i])


def tiny_model(seed: int, act: nn.Module | None = None) -> nn.Module:
    torch.manual_seed(seed)
    m = nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), nn.BatchNorm2d(6), act or nn.ReLU(inplace=True),
                      nn.Conv2d(6, 6, 3, padding=1), nn.Tanh(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                      nn.Linear(6, 10))
    with torch.no_grad():  # non-trivial BN statistics
        m[1].running_mean.uniform_(-0.2, 0.2)
        m[1].running_var.uniform_(0.5, 1.5)
    return m.eval()


class Recorder(nn.Module):
    """Remembers every input batch it sees (to check pairing and normalisation)."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(64, 10)
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.clone())
        return self.lin(x.flatten(1))


def test_every_model_sees_the_same_corrupted_images_normalised_after_corruption() -> None:
    ds = TinySet(10)
    a, b = Recorder(), Recorder()
    evaluate({"a": a, "b": b}, ds, corruptions=["gaussian_noise"], severities=[2], probes="none",
             seed=7, batch_size=4, indices_offset=100)
    assert len(a.seen) == len(b.seen) == 6  # 3 clean + 3 corrupted batches
    for xa, xb in zip(a.seen, b.seen):
        assert torch.equal(xa, xb)
    corrupted = torch.cat(a.seen[1::2])  # batches alternate clean, corrupted
    expected = corruptions.apply(ds.images, "gaussian_noise", 2, seed=7, indices=torch.arange(100, 110))
    assert torch.allclose(corrupted, Normalize(MEAN, STD)(expected), atol=1e-6)
    clean = torch.cat(a.seen[0::2])
    assert torch.allclose(clean, Normalize(MEAN, STD)(ds.images), atol=1e-6)


def test_metrics_match_a_direct_computation_and_do_not_depend_on_batching() -> None:
    ds = TinySet(23)
    model = tiny_model(0)
    m1 = evaluate({"relu": model}, ds, corruptions=CORRS, severities=[1, 3], probes="none", seed=3,
                  batch_size=5)
    m2 = evaluate({"relu": model}, TinySet(23, in_memory=False), corruptions=CORRS, severities=[1, 3],
                  probes="none", seed=3, batch_size=64)
    pd.testing.assert_frame_equal(m1.drop(columns="value"), m2.drop(columns="value"))
    np.testing.assert_allclose(m1["value"], m2["value"], rtol=1e-6, atol=1e-9)
    norm = Normalize(MEAN, STD)
    with torch.no_grad():
        for c in CORRS:
            x = corruptions.apply(ds.images, c, 3, seed=3, indices=torch.arange(23))
            acc = float((model(norm(x)).argmax(1) == ds.labels).float().mean())
            got = m1[(m1.corruption == c) & (m1.severity == 3) & (m1.metric == "top1")]["value"].item()
            assert got == pytest.approx(acc)
    cells = set(zip(m1.corruption, m1.severity))
    assert cells == {("clean", 0), *((c, s) for c in CORRS for s in (1, 3))}
    assert set(m1.metric) == {"top1", "top5", "nll", "ece"}
    assert (m1.n == 23).all() and set(m1.activation) == {"relu"} and set(m1.dataset) == {"tiny"}


def test_probe_levels_and_tables() -> None:
    ds = TinySet(12)
    models = {"relu": tiny_model(0), "silu": tiny_model(0, nn.SiLU())}
    t = evaluate_tables(models, ds, corruptions=["gaussian_noise"], severities=[1], probes="all",
                        batch_size=5, limit=10)
    m = t.metrics
    assert (m.n == 10).all()
    clean = m[m.corruption == "clean"]
    corr = m[m.corruption != "clean"]
    assert "abs_unit_mean" in set(clean.metric) and "sat" in set(clean.metric)  # the Tanh is bounded
    assert {"fluct_l1_mean", "fluct_l1_std", "in_fluct_l2_rel_mean", "fluct_l1_elem_std"} <= set(corr.metric)
    assert set(t.layers.layer) == {"2#0", "4#0"}
    assert set(t.units.stat) >= {"mean", "sat_pos", "sat_neg", "asym_sat", "skew"}
    s = t.samples
    assert set(s.stat) == {"correct", "nll", "fluct_l1_elem", "fluct_l2_elem", "in_fluct_l1_elem",
                           "in_fluct_l2_elem", "fluct_l1_rel", "in_fluct_l1_rel"}
    assert sorted(set(s["sample"])) == list(range(10))
    # the per-sample layer averages agree with the cell metric (the relative one too: the image
    # bootstrap of compare resamples these)
    for stat in ("fluct_l1_elem", "fluct_l1_rel"):
        fl = s[(s.corruption == "gaussian_noise") & (s.stat == stat) & (s.activation == "relu")]
        cell = corr[(corr.metric == f"{stat}_mean") & (corr.activation == "relu")]["value"].item()
        assert fl["value"].mean() == pytest.approx(cell, rel=1e-5)
    fluct = evaluate(models, ds, corruptions=["gaussian_noise"], severities=[1], probes="fluctuation")
    assert "abs_unit_mean" not in set(fluct.metric) and "fluct_l1_mean" in set(fluct.metric)
    none = evaluate(models, ds, corruptions=["gaussian_noise"], severities=[1], probes="none")
    assert set(none.metric) == {"top1", "top5", "nll", "ece"}
    # probes do not change the classification numbers
    key = ["activation", "corruption", "severity", "metric"]
    a = none.set_index(key)["value"]
    b = fluct.set_index(key)["value"].loc[a.index]
    np.testing.assert_allclose(a.to_numpy(), b.to_numpy(), rtol=1e-6)


def test_skip_cells_and_callbacks() -> None:
    ds = TinySet(9)
    seen, events = [], []
    m = evaluate(tiny_model(1), ds, corruptions=CORRS, severities=[1, 2], probes="fluctuation",
                 skip_cells=[("clean", 0), ("contrast", 1)], on_cell_done=lambda c: seen.append(c.key),
                 progress=events.append)
    assert seen == [("gaussian_noise", 1), ("gaussian_noise", 2), ("contrast", 2)]
    assert set(zip(m.corruption, m.severity)) == set(seen)
    assert events[0]["event"] == "plan" and events[0]["cells"] == 3
    assert [e["done"] for e in events if e["event"] == "cell"] == [1, 2, 3]


def test_bf16_autocast_runs_on_cpu() -> None:
    ds = TinySet(8)
    m = evaluate(tiny_model(0), ds, corruptions=["contrast"], severities=[1], amp="bf16", probes="all")
    assert m["value"].notna().all() and 0.0 <= m[m.metric == "top1"]["value"].min() <= 1.0


def test_resume_after_interruption_gives_the_uninterrupted_tables(tmp_path: Path) -> None:
    from robustbench_act.pipeline import run_models

    ds = TinySet(14)
    corrs, sevs = ["gaussian_noise", "contrast", "impulse_noise"], [1, 2]
    config = {"dataset": "tiny", "corruptions": corrs, "severities": sevs, "corruption_seed": 0,
              "batch_size": 4, "probes": "all", "clean": True}

    def run(out: Path, **kw: object) -> object:
        models = {"relu": tiny_model(0), "tanh": tiny_model(0, nn.Tanh())}
        return run_models(models, {}, ds, out=out, config=config, corruptions=corrs, severities=sevs,
                          batch_size=4, **kw)

    run(tmp_path / "a" / "run")
    done = []

    def boom(cell: object) -> None:
        done.append(cell)
        if len(done) == 4:
            raise KeyboardInterrupt  # like Ctrl-C after the 4th flushed cell

    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "b" / "run", on_cell_done=boom)
    b = tmp_path / "b" / "run"
    assert not (b / "metrics.parquet").exists()
    with pytest.raises(Exception, match="incomplete"):
        load_run(b)
    recomputed = []
    run(b, resume=True, on_cell_done=lambda c: recomputed.append(c.key))
    assert len(recomputed) == 7 - 4 and ("clean", 0) not in recomputed
    ra, rb = load_run(tmp_path / "a" / "run"), load_run(b)
    for table in ("metrics", "layers", "samples", "units"):
        pd.testing.assert_frame_equal(getattr(ra, table), getattr(rb, table))
    assert rb.manifest["status"] == "complete"


def test_shard_range_covers_without_overlap() -> None:
    for n in (1, 7, 10):
        for world in (1, 2, 3):
            if world > n:
                continue
            parts = [shard_range(n, r, world) for r in range(world)]
            assert parts[0][0] == 0 and parts[-1][1] == n
            assert all(parts[i][1] == parts[i + 1][0] for i in range(world - 1))


def _dist_worker(rank: int, world: int, init: str, out: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        t = evaluate_tables({"relu": tiny_model(0), "tanh": tiny_model(0, nn.Tanh())}, TinySet(11),
                            corruptions=CORRS, severities=[2], batch_size=4, probes="all")
        if rank == 0:
            for name in ("metrics", "samples", "units", "layers"):
                getattr(t, name).to_parquet(os.path.join(out, f"{name}.parquet"))
    finally:
        dist.destroy_process_group()


def test_two_gloo_processes_give_the_single_process_numbers(tmp_path: Path) -> None:
    import torch.multiprocessing as mp

    from robustbench_act.probes import find_sites

    find_sites(tiny_model(0))  # import what the probes need before forking

    # fork: the children inherit the imported modules (timm is slow to import); they use one thread
    mp.start_processes(_dist_worker, args=(2, f"file://{tmp_path / 'init'}", str(tmp_path)), nprocs=2,
                       join=True, start_method="fork")
    single = evaluate_tables({"relu": tiny_model(0), "tanh": tiny_model(0, nn.Tanh())}, TinySet(11),
                             corruptions=CORRS, severities=[2], batch_size=4, probes="all")
    for name in ("metrics", "samples", "units", "layers"):
        got = pd.read_parquet(tmp_path / f"{name}.parquet")
        want = getattr(single, name)
        pd.testing.assert_frame_equal(got.drop(columns="value"), want.drop(columns="value"))
        np.testing.assert_allclose(got["value"], want["value"], rtol=1e-5, atol=1e-7)


class FakeFamily:
    """A precomputed *-C set: corrupted copies of a TinySet made with the same seed."""

    def __init__(self, base: TinySet, seed: int):
        self.base, self.seed, self.name = base, seed, "tiny-c"

    def get(self, corruption: str, severity: int) -> TinySet:
        ds = TinySet(len(self.base))
        ds.images = ds._x = corruptions.apply(self.base.images, corruption, severity, seed=self.seed,
                                             indices=torch.arange(len(self.base)))
        return ds


def test_precomputed_corruption_files_give_the_on_the_fly_numbers() -> None:
    base = TinySet(13)
    models = {"relu": tiny_model(0), "tanh": tiny_model(1, nn.Tanh())}
    live = evaluate_tables(models, base, corruptions=CORRS, severities=[1, 4], seed=5, batch_size=6)
    files = evaluate_tables(models, FakeFamily(base, 5), clean=base, corruptions=CORRS, severities=[1, 4],
                            seed=5, batch_size=6)
    for name in ("metrics", "layers", "samples", "units"):
        a, b = getattr(live, name), getattr(files, name)
        pd.testing.assert_frame_equal(a.drop(columns="value"), b.drop(columns="value"))
        np.testing.assert_allclose(a["value"], b["value"], rtol=1e-6, atol=1e-9)
    # without a clean counterpart: the corrupted cells only, no probes
    alone = evaluate(models, FakeFamily(base, 5), corruptions=CORRS, severities=[1], seed=5)
    assert "clean" not in set(alone.corruption) and set(alone.metric) == {"top1", "top5", "nll", "ece"}


def test_each_model_gets_the_normalisation_it_was_trained_with():
    """A checkpoint's recorded (mean, std) wins over the dataset's, per model; others keep the dataset's."""
    ds = TinySet(n=9)
    trained, plain = Recorder(), Recorder()
    evaluate_tables({"ck": trained, "plain": plain}, ds, corruptions=["contrast"], severities=[2],
                    probes="none", batch_size=4, normalization={"ck": ((0.5,), (0.1,))})
    x = ds.images[:4].float() / 255.0
    torch.testing.assert_close(trained.seen[0], (x - 0.5) / 0.1)
    torch.testing.assert_close(plain.seen[0], (x - MEAN[0]) / STD[0])
