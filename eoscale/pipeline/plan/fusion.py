"""Which map steps are fused into the steps that read their images, and at what cost.

A fused chain never makes its inner images whole: they are computed tile by tile inside the
tiles of the chain's last step (:mod:`eoscale.engine.fused`: the steps' margins add up, and the
rings that neighbouring tiles share are computed twice). The budget asks for fusion
(:mod:`~eoscale.pipeline.plan.fitting`); a chain is fused only when it recomputes little enough
(:func:`affordable`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from eoscale.engine.fused import ChainStep, chain_margin, recompute_share
from eoscale.engine.tiling import Tiling, plan_step
from eoscale.pipeline.plan.shapes import RunShape

#: The most recomputation a fused chain may cost, as a share of its steps' work (pixels computed):
#: above it the budget spills the chain's images instead. Spilling an image costs writing it and
#: reading it back (with its readers' margins), which on the out-of-core benchmark cost about as
#: much as a quarter of the chain's computing.
FUSE_MAX_RECOMPUTE = 0.25

#: The most recomputation a chain may cost to be fused even when the budget holds its images:
#: a fused chain holds none of its inner images (no shared memory for them, its last step's
#: output encoded by the workers and its reduces fed by its tiles), has no barrier between its
#: steps, and a run killed in the middle of it resumes from its recorded tiles, where an image
#: held in shared memory dies with the process and its step must be computed again. Measured on
#: the out-of-core chain at 8192 x 8192 (fill, median, gaussian, 1 % recomputed; 2 workers):
#: the same wall time fused or step by step, a third of the memory.
FUSE_FREELY_MAX_RECOMPUTE = 0.05

#: A chain by its steps' indices, in order, and the share of its work it computes again.
Priced = tuple[tuple[int, ...], float]


def affordable(share: float) -> bool:
    """Whether a chain that computes ``share`` more pixels than step by step is fused."""
    return share <= FUSE_MAX_RECOMPUTE


def cheap_chains(shape: RunShape, tiling_of: Callable[[int], Tiling], workers: int
                 ) -> frozenset[int]:
    """The steps of the chains fused from the start, whatever the budget: those that compute at
    most :data:`FUSE_FREELY_MAX_RECOMPUTE` more pixels than step by step."""
    priced = priced_chains(shape, fusable(shape, frozenset()), tiling_of, workers)
    return frozenset(index for chain, share in priced.values()
                     if share <= FUSE_FREELY_MAX_RECOMPUTE for index in chain[:-1])


def fusable(shape: RunShape, spilled: frozenset[int]) -> frozenset[int]:
    """The map steps whose images may be fused into their readers: no image of theirs is an
    output, spilled (its step in ``spilled``), or read by anything but map steps
    (:func:`chains` checks the rest)."""
    spec = shape.spec
    return frozenset(index for index, step in enumerate(spec.steps)
                     if index not in spilled and step.kind == "map" and step.outputs
                     and not any(name in spec.outputs for name in step.outputs)
                     and all(spec.steps[r].kind == "map" for name in step.outputs
                             for r in shape.readers.get(name, [])))


def chains(shape: RunShape, fuse: frozenset[int]) -> dict[int, tuple[int, ...]]:
    """The fused chains the ``fuse`` choices make, by their last step: each step in ``fuse`` is
    joined to the steps that read its images. A chain holds when every step but its last is in
    ``fuse``, is a map with a margin known before the run (as is the last), and its images are
    no outputs and are read by steps of the chain only; the others are not fused."""
    spec, readers = shape.spec, shape.readers
    parent = {index: index for index in range(len(spec.steps))}

    def root(index: int) -> int:
        while parent[index] != index:
            index = parent[index]
        return index

    for index in fuse:
        for name in spec.steps[index].outputs:
            for reader in readers.get(name, []):
                parent[root(reader)] = root(index)
    members: dict[int, list[int]] = {}
    for index in range(len(spec.steps)):
        members.setdefault(root(index), []).append(index)
    found = {}
    for group in members.values():
        if len(group) < 2:
            continue
        last, inside = group[-1], set(group)
        if all(spec.steps[i].kind == "map" and shape.margins.get(i) is not None
               for i in group) and all(
                i in fuse and not any(name in spec.outputs for name in spec.steps[i].outputs)
                and all(set(readers.get(name, [])) <= inside for name in spec.steps[i].outputs)
                for i in group[:-1]):
            found[last] = tuple(group)
    return found


def priced_chains(shape: RunShape, fuse: frozenset[int], tiling_of: Callable[[int], Tiling],
                  workers: int) -> dict[int, Priced]:
    """The chains ``fuse`` makes (:func:`chains`), each with the recomputation it costs on the
    tiles it would run with (its last step's ``tiling_of``), affordable or not."""
    return {last: (chain, chain_share(shape, chain, tiling_of(last), workers))
            for last, chain in chains(shape, fuse).items()}


def fusions(shape: RunShape, fuse: frozenset[int], spilled: frozenset[int],
            maker: int) -> list[frozenset[int]]:
    """Ways to fuse the images of step ``maker`` into their readers, as the steps fused: alone,
    and with every other step that can be fused into the chain it then joins."""
    alone = fuse | {maker}
    able = fusable(shape, spilled)
    chain = next((chain for chain in chains(shape, able | {maker}).values() if maker in chain), ())
    joined = fuse | {maker} | (able & set(chain[:-1]))
    return [alone] if joined == alone else [alone, joined]


def not_fused(priced: Mapping[int, Priced], maker: int) -> str:
    """Why step ``maker``'s image is spilled rather than fused into the steps that read it,
    given the chains its fusion would make."""
    share = next((share for chain, share in priced.values() if maker in chain), None)
    if share is None:
        return ("; not fused: only an image that is no output, made and read by map steps "
                "whose margins are known before the run, can be")
    return (f"; not fused: the chain would compute {share:.0%} more pixels than step by step, "
            f"more than spilling costs (at most {FUSE_MAX_RECOMPUTE:.0%})")


def chain_share(shape: RunShape, chain: tuple[int, ...], tiling: Tiling, workers: int) -> float:
    """The recomputation a fused chain costs on the tiles it would run with."""
    stages = chain_steps(shape, chain)
    size = plan_step(shape.height, shape.width, margin=chain_margin(stages), tiling=tiling,
                     workers=workers, block_shape=shape.block_shape).tile_size
    return recompute_share(shape.height, shape.width, size, tiling.mode, stages)


def chain_steps(shape: RunShape, chain: tuple[int, ...]) -> list[ChainStep]:
    """A chain's steps as the engine's fused stages (callables are not needed to plan them)."""
    steps = shape.spec.steps
    return [ChainStep(steps[i].name, _no_callable, steps[i].inputs, steps[i].outputs,
                      shape.margins[i]) for i in chain]


def _no_callable(*_args: Any) -> None:
    """The callable of a stage that is only planned."""
