"""Resuming a checkpoint on another world size or engine layout: the saved shards -> one full state -> the
running engine's own layout, loaded through the engine's ordinary (rigid) load path.

DeepSpeed refuses a ZeRO checkpoint whose data-parallel size differs from the running one, and its universal
checkpoint needs an offline conversion that writes one folder per parameter. Here the conversion happens at
resume, in memory, from the files the run already wrote:

1. `read_full_state` reads the saved layout (plain torch, ZeRO-0, ZeRO-1/2 flat partitions with DeepSpeed's
   own per-parameter slice map, ZeRO-3 per-parameter partitions) into full fp32 weights and AdamW moments
   by parameter name, plus the step count, the optimizer's hyperparameters and the LR schedule.
2. The running engine saves a template of its own layout (`<step>.reshard.tmp`, cleaned at start-up if a kill
   leaves it behind); each rank overwrites the tensors of its own files with the full state's slices.
3. The engine loads the template as if it had saved it, so DeepSpeed's own load path places every tensor.

Cost: every rank reads the old files memory-mapped and holds the full fp32 state (12 bytes per trainable
parameter: weights and two moments) in CPU memory during the conversion; the template adds one save and one
load of the running layout. Measured times: docs/elastic.md.
"""

from __future__ import annotations

import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from train import distributed as dist
from train.engine import Engine

MOMENTS = ("exp_avg", "exp_avg_sq")
TEMPLATE_SUFFIX = ".reshard.tmp"  # ends in .tmp: train.checkpoint.clean_leftovers removes a killed one


class ReshardError(ValueError):
    """A checkpoint whose layout this conversion cannot read (named in the message)."""


@dataclass
class FullState:
    """One run's trainable state, independent of how it was sharded."""

    weights: dict[str, torch.Tensor]  # fp32 master weights by parameter name
    moments: dict[str, dict[str, torch.Tensor]]  # "exp_avg" / "exp_avg_sq" -> name -> full tensor
    step: torch.Tensor  # AdamW's step count (the same for every parameter)
    group: dict[str, Any]  # the optimizer's param-group hyperparameters (lr, betas, ...) without 'params'
    scheduler: dict[str, Any]  # the LR scheduler's state_dict
    counters: dict[str, int] = field(default_factory=dict)  # DeepSpeed's global_steps/global_samples/skipped
    buffers: dict[str, torch.Tensor] = field(default_factory=dict)  # non-trainable module entries


def saved_layout(folder: Path) -> str:
    """'torch', 'zero0', 'zero1', 'zero2' or 'zero3', from the files a checkpoint holds."""
    if (folder / "torch_state.pt").is_file():
        return "torch"
    if (folder / "zero_pp_rank_0_mp_rank_00_model_states.pt").is_file():
        return "zero3"
    if (folder / "zero_pp_rank_0_mp_rank_00_optim_states.pt").is_file():
        stage = _load(folder / "zero_pp_rank_0_mp_rank_00_optim_states.pt")["optimizer_state_dict"][
            "zero_stage"
        ]
        return f"zero{int(stage)}"
    if (folder / "mp_rank_00_model_states.pt").is_file():
        return "zero0"
    raise ReshardError(f"{folder}: no engine state found (torch_state.pt or DeepSpeed files)")


def running_layout(engine: Engine) -> str:
    return f"zero{engine.zero_stage}" if engine.use_deepspeed else "torch"


def _load(path: Path) -> dict:
    # mmap: a rank pages in only the slices it copies, not every rank's whole shard.
    return torch.load(path, map_location="cpu", weights_only=False, mmap=True)


def _one_group(groups: list[dict], where: Path) -> dict[str, Any]:
    if len(groups) != 1:
        raise ReshardError(f"{where}: {len(groups)} optimizer param groups; resharding supports one")
    return {k: v for k, v in groups[0].items() if k != "params"}


def _from_torch_optimizer(
    opt: dict, names: list[str], where: Path
) -> tuple[dict[str, dict[str, torch.Tensor]], torch.Tensor, dict]:
    """A torch AdamW state_dict (plain torch and ZeRO-0): parameter i of the group is names[i]."""
    params = opt["param_groups"][0]["params"]
    if len(params) != len(names):
        raise ReshardError(f"{where}: {len(params)} optimized tensors, this draft has {len(names)}")
    moments = {
        k: {n: opt["state"][i][k].float() for n, i in zip(names, params, strict=True)} for k in MOMENTS
    }
    return moments, torch.as_tensor(opt["state"][params[0]]["step"]), _one_group(opt["param_groups"], where)


def _counters(sd: dict) -> dict[str, int]:
    return {k: int(sd[k]) for k in ("global_steps", "global_samples", "skipped_steps") if k in sd}


def read_full_state(folder: Path, world: int, names: list[str]) -> FullState:
    """The checkpoint's full state. `world`: ranks that saved it; `names`: trainable parameters in order."""
    layout = saved_layout(folder)
    if layout == "torch":
        sd = _load(folder / "torch_state.pt")
        moments, step, group = _from_torch_optimizer(sd["optimizer"], names, folder)
        weights = {n: sd["model"][n].float() for n in names}
        buffers = {k: v for k, v in sd["model"].items() if k not in weights}
        return FullState(weights, moments, step, group, sd["scheduler"], {}, buffers)
    if layout == "zero3":
        return _read_zero3(folder, world)
    model = _load(folder / "mp_rank_00_model_states.pt")
    module = model["module"]
    if layout == "zero0":
        moments, step, group = _from_torch_optimizer(model["optimizer"], names, folder)
        weights = {n: module[n].float() for n in names}
    else:
        weights, moments, step, group = _read_zero12(folder, world)
    buffers = {k: v for k, v in module.items() if k not in weights}
    return FullState(weights, moments, step, group, model["lr_scheduler"], _counters(model), buffers)


def _read_zero12(folder: Path, world: int) -> tuple[dict, dict, torch.Tensor, dict]:
    """ZeRO-1/2: each rank holds a contiguous slice of every group's flat buffer; DeepSpeed saves, per rank,
    where each parameter's fragment sits in it (param_slice_mappings), so fragments are cut by that map."""
    parts: dict[str, dict[str, list[torch.Tensor]]] = {k: {} for k in ("fp32", *MOMENTS)}
    shapes: dict[str, torch.Size] = {}
    for group_shapes in _load(folder / "mp_rank_00_model_states.pt")["param_shapes"]:
        shapes.update(group_shapes)
    step, group = None, None
    for r in range(world):
        osd = _load(folder / f"zero_pp_rank_{r}_mp_rank_00_optim_states.pt")["optimizer_state_dict"]
        base = osd["base_optimizer_state"]
        if not isinstance(base, dict):
            raise ReshardError(f"{folder}: an elastic-format ZeRO checkpoint; not supported here")
        group = _one_group(base["param_groups"], folder)
        for g, mapping in enumerate(osd["param_slice_mappings"]):
            state = base["state"][g]
            step = state["step"]
            flats = {"fp32": osd["single_partition_of_fp32_groups"][g], **{k: state[k] for k in MOMENTS}}
            for name, frag in mapping.items():
                for key, flat in flats.items():
                    parts[key].setdefault(name, []).append(flat.narrow(0, frag.start, frag.numel))
    full = {k: {n: torch.cat(p).float().view(shapes[n]) for n, p in v.items()} for k, v in parts.items()}
    assert step is not None and group is not None
    return full["fp32"], {k: full[k] for k in MOMENTS}, torch.as_tensor(step), group


def _zero3_offsets(shapes: list[tuple[str, torch.Size]], world: int) -> list[tuple[str, int, int]]:
    """ZeRO-3 splits every parameter on its own: ceil(numel / world) elements per rank (the last rank's
    share padded), laid one after another in each rank's flat buffer. (name, offset, share) per parameter."""
    out, offset = [], 0
    for name, shape in shapes:
        share = math.ceil(shape.numel() / world)
        out.append((name, offset, share))
        offset += share
    return out


def _zero3_flats(osd: dict) -> dict[str, torch.Tensor]:
    """One rank's flat buffers (its sub-groups joined): fp32 weights and each moment."""
    inner = osd["optimizer_state_dict"]
    subs = range(len(osd["fp32_flat_groups"]))
    return {
        "fp32": torch.cat([osd["fp32_flat_groups"][i] for i in subs]),
        **{k: torch.cat([inner["state"][i][k] for i in subs]) for k in MOMENTS},
    }


def _read_zero3(folder: Path, world: int) -> FullState:
    shapes = [
        (n, s)
        for group in _load(folder / "zero_pp_rank_0_mp_rank_00_model_states.pt")["param_shapes"]
        for n, s in group.items()
    ]
    flats, step, group = [], None, None
    for r in range(world):
        osd = _load(folder / f"zero_pp_rank_{r}_mp_rank_00_optim_states.pt")["optimizer_state_dict"]
        flats.append(_zero3_flats(osd))
        step = osd["optimizer_state_dict"]["state"][0]["step"]
        group = _one_group(osd["optimizer_state_dict"]["param_groups"], folder)
    full: dict[str, dict[str, torch.Tensor]] = {k: {} for k in ("fp32", *MOMENTS)}
    for (name, offset, share), (_, shape) in zip(_zero3_offsets(shapes, world), shapes, strict=True):
        for key in full:
            joined = torch.cat([f[key].narrow(0, offset, share) for f in flats])
            full[key][name] = joined[: shape.numel()].float().view(shape)
    model = _load(folder / "zero_pp_rank_0_mp_rank_00_model_states.pt")
    assert step is not None and group is not None
    return FullState(
        full["fp32"],
        {k: full[k] for k in MOMENTS},
        torch.as_tensor(step),
        group,
        model["lr_scheduler"],
        _counters(model),
    )


# --- writing the running layout ---------------------------------------------------------------------------
def _fill_torch_optimizer(opt: dict, full: FullState, names: list[str]) -> None:
    params = opt["param_groups"][0]["params"]
    for n, i in zip(names, params, strict=True):
        opt["state"][i] = {"step": full.step.clone(), **{k: full.moments[k][n].clone() for k in MOMENTS}}
    opt["param_groups"][0].update(full.group)


def _fill_client(sd: dict, full: FullState, state_step: int, global_batch: int, skipped: int) -> None:
    """The parts of a DeepSpeed model-states file that are not tensors of the draft."""
    sd["lr_scheduler"] = full.scheduler
    sd["global_steps"] = full.counters.get("global_steps", state_step)
    sd["global_samples"] = full.counters.get("global_samples", state_step * global_batch)
    sd["skipped_steps"] = full.counters.get("skipped_steps", skipped)


def _fill_module(module: dict, full: FullState) -> None:
    for k, t in module.items():
        src = full.weights.get(k, full.buffers.get(k))
        if src is not None and src.shape == t.shape:
            t.copy_(src.to(t.dtype))


def _fill_zero12(osd: dict, full: FullState, shapes: list[dict[str, torch.Size]], rank: int) -> None:
    """ZeRO-1/2: group g's flat buffer holds its parameters one after another and is cut into equal
    partitions (the last one padded), so this rank's slice starts at rank x partition size."""
    if any(any(p) for p in osd.get("param_alignment_paddings", [])):
        raise ReshardError(
            "zero_optimization.parameter_alignment pads parameters; resharding does not support it"
        )
    base = osd["base_optimizer_state"]
    for g, mapping in enumerate(osd["param_slice_mappings"]):
        # A fresh engine has no AdamW state yet (it is made at the first step): create it, padded like the
        # partition it belongs to.
        padded = osd["single_partition_of_fp32_groups"][g].numel() + osd["group_paddings"][g]
        state = base["state"].setdefault(g, {k: torch.zeros(padded) for k in MOMENTS})
        begins, at = {}, 0
        for name, shape in shapes[g].items():
            begins[name], at = at, at + shape.numel()
        partition_start = rank * padded
        flats = {"fp32": osd["single_partition_of_fp32_groups"][g], **{k: state[k] for k in MOMENTS}}
        for name, frag in mapping.items():
            start = partition_start + frag.start - begins[name]  # where this fragment sits in the parameter
            for key, flat in flats.items():
                src = full.weights[name] if key == "fp32" else full.moments[key][name]
                flat.narrow(0, frag.start, frag.numel).copy_(src.reshape(-1)[start : start + frag.numel])
        state["step"] = full.step.clone()
        base["param_groups"][g].update(full.group)


def _fill_zero3(
    osd: dict, full: FullState, shapes: list[tuple[str, torch.Size]], rank: int, world: int
) -> None:
    inner = osd["optimizer_state_dict"]
    subs = list(range(len(osd["fp32_flat_groups"])))
    for i in subs:  # a fresh engine has no AdamW state yet (it is made at the first step)
        inner["state"].setdefault(i, {k: torch.zeros(osd["fp32_flat_groups"][i].numel()) for k in MOMENTS})
    targets = {"fp32": [osd["fp32_flat_groups"][i] for i in subs]}
    targets.update({k: [inner["state"][i][k] for i in subs] for k in MOMENTS})
    sizes = [t.numel() for t in targets["fp32"]]
    for name, offset, share in _zero3_offsets(shapes, world):
        for key, tensors in targets.items():
            src = (full.weights[name] if key == "fp32" else full.moments[key][name]).reshape(-1)
            piece = src[rank * share : (rank + 1) * share]
            _write_across(tensors, sizes, offset, piece, share)
    for i in subs:
        inner["state"][i]["step"] = full.step.clone()
    for g in inner["param_groups"]:
        g.update(full.group)


def _write_across(
    tensors: list[torch.Tensor], sizes: list[int], offset: int, piece: torch.Tensor, n: int
) -> None:
    """Write `piece` (zero-padded to n) at `offset` of the sub-groups' joined buffer."""
    padded = torch.zeros(n, dtype=torch.float32)
    padded[: piece.numel()] = piece
    at = 0
    for t, size in zip(tensors, sizes, strict=True):
        lo, hi = max(offset, at), min(offset + n, at + size)
        if lo < hi:
            t.narrow(0, lo - at, hi - lo).copy_(padded[lo - offset : hi - offset].to(t.dtype))
        at += size


def _read(path: Path) -> dict:
    """A template file, read whole (not memory-mapped): it is about to be rewritten."""
    return torch.load(path, map_location="cpu", weights_only=False)


@torch.no_grad()
def write_template(
    engine: Engine, template: Path, full: FullState, names: list[str], step: int, skipped: int
) -> None:
    """Every rank fills its own files of the template the running engine saved; every rank calls it."""
    layout, rank, world = running_layout(engine), dist.rank(), dist.world_size()
    global_batch = engine.cfg.train.micro_batch_size * engine.cfg.train.grad_accum * world
    writes: list[tuple[dict, Path]] = []
    if layout == "zero3":  # each rank has its own model-states and optimizer files
        opath = template / f"zero_pp_rank_{rank}_mp_rank_00_optim_states.pt"
        mpath = template / f"zero_pp_rank_{rank}_mp_rank_00_model_states.pt"
        osd, model = _read(opath), _read(mpath)
        shapes = [(n, s) for group in model["param_shapes"] for n, s in group.items()]
        _fill_zero3(osd["optimizer_state_dict"], full, shapes, rank, world)
        _fill_client(model, full, step, global_batch, skipped)
        writes += [(osd, opath), (model, mpath)]
    else:  # ZeRO 0-2: one model-states file (full weights; ZeRO-0's whole optimizer), rank 0 writes it
        mpath = template / "mp_rank_00_model_states.pt"
        model = _read(mpath)
        if layout in ("zero1", "zero2"):
            opath = template / f"zero_pp_rank_{rank}_mp_rank_00_optim_states.pt"
            osd = _read(opath)
            _fill_zero12(osd["optimizer_state_dict"], full, model["param_shapes"], rank)
            writes.append((osd, opath))
        if rank == 0:
            _fill_module(model["module"], full)
            if layout == "zero0":
                _fill_torch_optimizer(model["optimizer"], full, names)
            _fill_client(model, full, step, global_batch, skipped)
            writes.append((model, mpath))
    dist.barrier()  # every rank has read the shared model-states file before rank 0 rewrites it
    for sd, path in writes:
        torch.save(sd, path)


@torch.no_grad()
def load_into_torch(engine: Engine, full: FullState, names: list[str]) -> None:
    """Plain torch (one process): no template; the state dicts are built directly."""
    module_sd = engine.module.state_dict()
    _fill_module(module_sd, full)
    engine.module.load_state_dict(module_sd)
    opt = engine.optimizer.state_dict()
    _fill_torch_optimizer(opt, full, names)
    engine.optimizer.load_state_dict(opt)
    engine.scheduler.load_state_dict(full.scheduler)


def trainable_names(engine: Engine) -> list[str]:
    return [n for n, p in engine.module.named_parameters() if p.requires_grad]


def reshard_load(engine: Engine, folder: Path, saved_world: int, step: int, skipped: int) -> float:
    """Load `folder` (saved by `saved_world` ranks, any layout) into the running engine; every rank calls it.
    Returns the seconds the conversion took (read, template, fill, load)."""
    t0 = time.perf_counter()
    names = trainable_names(engine)
    try:
        full = read_full_state(folder, saved_world, names)
    except (KeyError, IndexError, TypeError, RuntimeError) as err:  # a layout this reader does not know
        raise ReshardError(
            f"{folder}: unexpected {saved_layout(folder)} checkpoint contents ({err!r})"
        ) from None
    if not engine.use_deepspeed:
        load_into_torch(engine, full, names)
        return time.perf_counter() - t0
    template = folder.parent / (folder.name + TEMPLATE_SUFFIX)
    if dist.is_main() and template.exists():
        shutil.rmtree(template)
    dist.barrier()
    engine.save(folder.parent, template.name)
    dist.barrier()  # every rank's template files exist before any rank rewrites its own
    write_template(engine, template, full, names, step, skipped)
    dist.barrier()
    engine.load(folder.parent, template.name)
    dist.barrier()
    if dist.is_main():
        shutil.rmtree(template, ignore_errors=True)
    return time.perf_counter() - t0
