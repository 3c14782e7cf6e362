"""Where each image of a run lives, and why: the rules, one function per kind of image.

- ``shared``: held whole in a shared-memory segment that every worker maps (inputs read by several
  steps or with a margin, which would otherwise decode their blocks again; every step's outputs);
- ``file``: read from its file window by window by the workers (an input that a single step reads
  without margin and that is not an output: each worker decodes its own tiles as it computes);
- ``written``: never held; written to its output file as its tiles are computed by the workers
  that compute them (a map output that no later step reads, or that only reduces fed by its
  tiles read: :mod:`~eoscale.pipeline.plan.feeding`);
- ``spilled``: a step's image that later steps read, when the budget cannot hold it: written as
  computed, to its output file or to a scratch file, and read back window by window;
- ``fused``: a map step's image that only later map steps read, when the budget cannot hold it
  and recomputing costs less than spilling: never made whole, computed tile by tile inside the
  tiles of the step that reads it (:mod:`eoscale.engine.fused`).

On a Dask cluster the workers share no memory with the main process, so nothing is ``shared``:
inputs are ``file``, step images that later steps read are ``spilled`` (unless fused), the others
``written``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import Enum

from eoscale.pipeline.spec import PipelineSpec


class Residence(str, Enum):
    """Where an image lives during a run. A ``str``, so that it compares, prints and goes to
    JSON as its value (``image.lives == "shared"``)."""

    SHARED = "shared"
    FILE = "file"
    WRITTEN = "written"
    SPILLED = "spilled"
    FUSED = "fused"

    def __str__(self) -> str:
        return self.value

    __format__ = str.__format__

    @property
    def held_whole(self) -> bool:
        """Held whole in shared memory while it is alive."""
        return self is Residence.SHARED

    @property
    def written_as_computed(self) -> bool:
        """A step's image written to a file as its tiles are computed."""
        return self in (Residence.WRITTEN, Residence.SPILLED)

    @property
    def read_by_window(self) -> bool:
        """Read by its readers from a file, window by window."""
        return self in (Residence.FILE, Residence.SPILLED)


Home = tuple[Residence, str]

#: What a spilled image's reason says of its readers (unless they are fed by its step's tiles:
#: :mod:`~eoscale.pipeline.plan.feeding`).
READ_BACK = "read back by window"


def input_home(name: str, spec: PipelineSpec, steps: Sequence[int], margin: int | None, *,
               cluster: bool, stream: bool) -> Home:
    """Where an input lives: by :func:`input_residence`, in its file on a ``cluster``, read from
    its file when the budget does not hold it (``stream``)."""
    home = cluster_input_residence(name, spec) if cluster else input_residence(
        name, spec, steps, margin)
    return streamed(home[1]) if stream else home


def step_image_home(name: str, spec: PipelineSpec, readers: Mapping[str, list[int]], *,
                    cluster: bool, spill: str | None, fused_into: tuple[str, float] | None,
                    fed: bool = False) -> Home:
    """Where a step's image lives: by :func:`output_residence`, or :func:`cluster_residence` on
    a ``cluster``; ``spill``: spilled, saying why it is not fused instead; ``fused_into``: the
    step whose tiles compute it and the share of work its chain computes again; ``fed``: an
    output that only reduces fed by its step's tiles read, written rather than held."""
    if fused_into is not None:
        return fused(*fused_into)
    if spill is not None:
        return spilled(name, spec, spill)
    if fed and not cluster:
        return Residence.WRITTEN, ("only reduces read it: written to its file as tiles are "
                                   "computed, never held")
    return (cluster_residence if cluster else output_residence)(name, spec, readers)


def input_residence(name: str, spec: PipelineSpec, steps: Sequence[int],
                    margin: int | None) -> Home:
    """Where an input lives when the budget holds it: ``steps`` read it (a fused chain counts
    once), the first with ``margin`` (a chain's: how far around its tiles it reads the input)."""
    if name in spec.outputs:
        return Residence.SHARED, "it is also an output: loaded once, then copied"
    if not steps:
        return Residence.FILE, "no step reads it"
    if len(steps) > 1:
        return Residence.SHARED, (f"{len(steps)} steps read it: loaded once rather than decoded "
                                  f"{len(steps)} times")
    if margin is None:
        return Residence.SHARED, "its reader's margin depends on ${...} params"
    if margin > 0:
        return Residence.SHARED, (f"its reader has margin {margin}: windows overlap, so reading "
                                  "the file would decode blocks again")
    return Residence.FILE, "one step reads it, without margin: workers decode their own windows"


def cluster_input_residence(name: str, spec: PipelineSpec) -> Home:
    """Where an input lives on a cluster, whose workers share no memory: in its file."""
    return Residence.FILE, ("read from its file by window: the cluster's workers share no memory"
                            + (", then copied to its output" if name in spec.outputs else ""))


def streamed(why: str) -> Home:
    """An input the budget does not hold (``why``: where it would have lived, and why)."""
    return Residence.FILE, f"read from its file by window: the budget does not hold it ({why})"


def output_residence(name: str, spec: PipelineSpec, readers: Mapping[str, list[int]]) -> Home:
    """Where a step's image lives when the budget holds it."""
    if name in readers:
        count = len(readers[name])
        return Residence.SHARED, (f"{count} later step{'s read' if count > 1 else ' reads'} it: "
                                  "held in shared memory, workers write their tiles into it")
    if name in spec.outputs:
        return Residence.WRITTEN, ("no later step reads it: written to its file as tiles are "
                                   "computed")
    return Residence.SHARED, "made by a step that nothing reads: held until the step ends"


def cluster_residence(name: str, spec: PipelineSpec, readers: Mapping[str, list[int]]) -> Home:
    """Where a step's image lives on a cluster, whose workers share no memory: in a file."""
    if name in readers:
        return Residence.SPILLED, (f"the cluster's workers share no memory: written to "
                                   f"{_file_of(name, spec)} as computed for the later steps, "
                                   f"{READ_BACK}")
    if name in spec.outputs:
        return Residence.WRITTEN, ("no later step reads it: written to its file as tiles are "
                                   "computed")
    return Residence.WRITTEN, ("made by a step that nothing reads: written to a scratch file, "
                               "removed when the step ends")


def spilled(name: str, spec: PipelineSpec, not_fused: str) -> Home:
    """A step's image the budget does not hold (``not_fused``: why it is not fused instead)."""
    return Residence.SPILLED, (f"the budget does not hold it: written to {_file_of(name, spec)} "
                               f"as computed, {READ_BACK}{not_fused}")


def fused(last: str, share: float) -> Home:
    """A step's image computed inside the tiles of step ``last``, ``share`` more pixels."""
    return Residence.FUSED, (f"computed tile by tile inside the tiles of step '{last}' (a fused "
                             f"chain), never held: the chain computes {share:.1%} more pixels "
                             "than step by step")


def _file_of(name: str, spec: PipelineSpec) -> str:
    return "its output file" if name in spec.outputs else "a scratch file"
