"""ABX scoring: batched DTW in torch, the (A, B, X) triples of a task, and the error collapsed over cells.

The triples, and the item pairs whose distances they compare, depend only on the items' labels, so a task is
built once (`build_task`) and then scored for any number of representations and layers (`score`): per layer
the cost is one DTW per distinct item pair plus a few numpy reductions.

Definitions (ZeroSpeech / Libri-light triphone ABX):
- distance of two items: each frame L2-normalised, frame distance = angle / pi, sequences aligned by DTW
  (steps right, down, diagonal), the path's summed cost divided by the path's length;
- a triple errs when d(A, X) > d(B, X), counts half on a tie;
- phone ABX within speaker: A, X share the centre phone, B has another one, all three one speaker and one
  context; across speaker: A and B from one speaker, X from another (at most `max_x_speakers` X speakers);
- speaker ABX: A, X one speaker, B another, all three the same triphone (phone and context);
- the error is averaged over the triples of a cell, then over contexts, then over speakers (speaker pairs
  across), then over the ordered (A, B) label pairs.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from .items import ItemTable

CONDITIONS = ("within", "across", "speaker")


# ---------------------------------------------------------------------------------------------------------
# Distances.


def dtw_normalised(cost: torch.Tensor, len_a: torch.Tensor, len_b: torch.Tensor) -> torch.Tensor:
    """Batched DTW. cost (P, La, Lb) frame distances (entries past a pair's lengths are ignored), len_a, len_b
    (P,) -> (P,) summed cost of the best path from (0, 0) to (len_a - 1, len_b - 1) divided by its length.

    On equal predecessors the diagonal wins, then the left cell, then the upper one. The recursion runs over
    anti-diagonals, each one over all pairs at once. A diagonal is stored by row (1-based, row 0 a border of
    unreachable cells), so the three predecessors of its cells are plain slices of the two diagonals before it."""
    P, La, Lb = cost.shape
    rows = torch.arange(La + 1, device=cost.device)
    diagonals = torch.arange(La + Lb + 1, device=cost.device)
    cols = diagonals[:, None] - rows[None, :]  # (K, La + 1): column of cell (row, diagonal), 1-based
    inside = (rows[None, :] >= 1) & (cols >= 1) & (cols <= Lb)
    flat = ((rows[None, :] - 1) * Lb + cols - 1).clamp(0, La * Lb - 1)
    skewed = cost.reshape(P, La * Lb)[:, flat.reshape(-1)].reshape(P, len(diagonals), La + 1)
    skewed = skewed.masked_fill(~inside[None], float("inf"))  # (P, K, La + 1)

    inf_row = torch.full((P, La + 1), float("inf"), dtype=cost.dtype, device=cost.device)
    acc_2, acc_1 = inf_row.clone(), inf_row.clone()  # diagonals k - 2 and k - 1
    acc_2[:, 0] = 0.0  # diagonal 0 is the start cell (0, 0)
    steps_2 = torch.zeros((P, La + 1), dtype=torch.int32, device=cost.device)
    steps_1 = steps_2.clone()
    final_cost = torch.empty(P, dtype=cost.dtype, device=cost.device)
    final_steps = torch.empty(P, dtype=torch.int32, device=cost.device)
    end_diagonal = len_a + len_b
    for k in range(2, La + Lb + 1):
        # predecessors of rows 1..La: diagonal (k-2, row-1), left (k-1, row), up (k-1, row-1)
        best, steps = acc_2[:, :-1], steps_2[:, :-1]
        for value, count in ((acc_1[:, 1:], steps_1[:, 1:]), (acc_1[:, :-1], steps_1[:, :-1])):
            better = value < best
            best, steps = torch.where(better, value, best), torch.where(better, count, steps)
        acc = inf_row.clone()
        acc[:, 1:] = best + skewed[:, k, 1:]
        step_row = torch.zeros_like(steps_1)
        step_row[:, 1:] = steps + 1
        done = end_diagonal == k
        if bool(done.any()):
            final_cost[done] = acc[done, len_a[done]]
            final_steps[done] = step_row[done, len_a[done]]
        acc_2, acc_1, steps_2, steps_1 = acc_1, acc, steps_1, step_row
    return final_cost / final_steps.to(cost.dtype)


def unit_frames(x: torch.Tensor) -> torch.Tensor:
    """Rows scaled to unit L2 norm (an all-zero row stays zero)."""
    return x / x.norm(dim=-1, keepdim=True).clamp(min=1e-12)


_CHUNK_CELLS = 1 << 24  # similarity cells held at once (64 MB of float32)
_BATCH_CELLS = 1 << 20  # DTW cells of one batch of pairs (larger batches measured slower: memory-bound)


@dataclass
class _Pairs:
    """Pairs sorted longest first: their index in the task, their two lengths."""

    ids: torch.Tensor
    len_a: torch.Tensor
    len_b: torch.Tensor

    @classmethod
    def of(cls, ids: np.ndarray, pairs: np.ndarray, length: np.ndarray) -> tuple["_Pairs", np.ndarray]:
        la, lb = length[pairs[ids, 0]], length[pairs[ids, 1]]
        order = np.argsort(-(np.maximum(la, lb) * 4096 + np.minimum(la, lb)), kind="stable")
        return cls(*(torch.as_tensor(np.ascontiguousarray(x[order])) for x in (ids, la, lb))), order

    def fill(self, out: torch.Tensor, similarity_of) -> None:
        """out[ids] = DTW distances, in batches; similarity_of(start, stop, i, j) gives the batch's frame
        similarities (P, La, Lb) for row indices i (P, La) and column indices j (P, Lb) inside each item."""
        start = 0
        while start < len(self.ids):
            longest = int(torch.maximum(self.len_a[start], self.len_b[start]))
            stop = start + max(1, _BATCH_CELLS // (longest * longest))
            la, lb = self.len_a[start:stop], self.len_b[start:stop]
            i = torch.minimum(torch.arange(int(la.max()))[None, :], la[:, None] - 1)  # padding repeats the last row
            j = torch.minimum(torch.arange(int(lb.max()))[None, :], lb[:, None] - 1)
            cost = torch.arccos(similarity_of(start, stop, i, j).clamp_(-1.0, 1.0)) / math.pi
            out[self.ids[start:stop]] = dtw_normalised(cost, la, lb).float()
            start = stop


@dataclass
class _BlockChunk:
    """Context groups whose frame similarities are computed together, one matmul per group, so that no frame
    is copied per pair. frames: global frame indices of the groups' items, group after group; groups: (start
    in `frames`, frame count n); per pair: the offset of its (0, 0) cell in the chunk's similarity buffer and
    its group's row stride."""

    frames: torch.Tensor
    groups: list[tuple[int, int]]
    pairs: _Pairs
    base: torch.Tensor
    stride: torch.Tensor

    def fill(self, frames: torch.Tensor, out: torch.Tensor) -> None:
        rows = frames.index_select(0, self.frames)
        similarity = torch.cat([(rows[s : s + n] @ rows[s : s + n].T).reshape(-1) for s, n in self.groups])

        def similarity_of(start: int, stop: int, i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
            index = (
                self.base[start:stop, None, None] + i[:, :, None] * self.stride[start:stop, None, None] + j[:, None, :]
            )
            return similarity[index]

        self.pairs.fill(out, similarity_of)


@dataclass
class _DirectChunk:
    """The pairs of one context group too large for a full similarity block: each pair's frames gathered and
    multiplied on their own. first_a/first_b: global first frame of each pair's two items."""

    pairs: _Pairs
    first_a: torch.Tensor
    first_b: torch.Tensor

    def fill(self, frames: torch.Tensor, out: torch.Tensor) -> None:
        def similarity_of(start: int, stop: int, i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
            rows_a = frames[self.first_a[start:stop, None] + i]  # (P, La, D)
            rows_b = frames[self.first_b[start:stop, None] + j]
            return torch.bmm(rows_a, rows_b.transpose(1, 2))

        self.pairs.fill(out, similarity_of)


def plan_pairs(
    pairs: np.ndarray, item_group: np.ndarray, first: np.ndarray, length: np.ndarray
) -> list[_BlockChunk | _DirectChunk]:
    """Lay out the distance computation of `pairs` (both items of a pair in one group, e.g. one context).
    Depends on where the items' frames are, not on their values: made once per representation, used for every
    layer."""
    a, b = pairs[:, 0], pairs[:, 1]
    group = item_group[a]
    if (item_group[b] != group).any():
        raise ValueError("every ABX pair must lie inside one context group")
    order = np.argsort(group, kind="stable")
    chunks: list = []
    pending: list[tuple[np.ndarray, np.ndarray, int]] = []  # (pair ids, items, frames) per group
    cells = 0
    for run in np.split(order, np.flatnonzero(np.diff(group[order])) + 1) if len(order) else []:
        items = np.unique(np.concatenate([a[run], b[run]]))
        n = int(length[items].sum())
        if n * n > _CHUNK_CELLS:
            sorted_pairs, order_in_run = _Pairs.of(run, pairs, length)
            chunks.append(
                _DirectChunk(sorted_pairs, *(torch.as_tensor(first[pairs[run[order_in_run], k]]) for k in (0, 1)))
            )
            continue
        if cells + n * n > _CHUNK_CELLS:
            chunks.append(_block_chunk(pending, pairs, first, length))
            pending, cells = [], 0
        pending.append((run, items, n))
        cells += n * n
    if pending:
        chunks.append(_block_chunk(pending, pairs, first, length))
    return chunks


def _block_chunk(groups: list, pairs: np.ndarray, first: np.ndarray, length: np.ndarray) -> _BlockChunk:
    frame_parts, spans, ids, base, stride = [], [], [], [], []
    start = offset = 0
    for run, items, n in groups:
        local = np.zeros(int(items.max()) + 1, dtype=np.int64)
        local[items] = np.r_[0, np.cumsum(length[items])][:-1]  # first row of each item inside the block
        frame_parts.append(np.concatenate([np.arange(first[i], first[i] + length[i]) for i in items]))
        spans.append((start, n))
        ids.append(run)
        base.append(offset + local[pairs[run, 0]] * n + local[pairs[run, 1]])
        stride.append(np.full(len(run), n))
        start += n
        offset += n * n
    sorted_pairs, order = _Pairs.of(np.concatenate(ids), pairs, length)
    return _BlockChunk(
        torch.as_tensor(np.concatenate(frame_parts)),
        spans,
        sorted_pairs,
        torch.as_tensor(np.concatenate(base)[order]),
        torch.as_tensor(np.concatenate(stride)[order]),
    )


def pair_distances(frames: torch.Tensor, chunks: Sequence[_BlockChunk | _DirectChunk], num_pairs: int) -> torch.Tensor:
    """DTW distance (angular frame distance) of every planned pair: frames (N, D) unit rows -> (num_pairs,)."""
    out = torch.full((num_pairs,), float("nan"), dtype=torch.float32)
    for chunk in chunks:
        chunk.fill(frames, out)
    return out


# ---------------------------------------------------------------------------------------------------------
# Triples.


@dataclass
class ConditionTriples:
    """The triples of one condition: per triple the index of its (A, X) and (B, X) pair in `AbxPlan.pairs`, and
    its cell; per cell its context group, its speaker group and its label pair (ints)."""

    ax: np.ndarray
    bx: np.ndarray
    cell: np.ndarray
    cell_context: np.ndarray
    cell_speakers: np.ndarray
    cell_labels: np.ndarray

    @property
    def num_cells(self) -> int:
        return len(self.cell_context)


@dataclass
class AbxPlan:
    """Item pairs to measure (P, 2) and the triples of each condition built on them."""

    pairs: np.ndarray
    conditions: dict[str, ConditionTriples]
    item_group: np.ndarray  # per item its context: both items of every pair share it

    def plan(self, first: np.ndarray, length: np.ndarray) -> list:
        return plan_pairs(self.pairs, self.item_group, first, length)


class _TripleBuilder:
    """Accumulates cells as arrays of item triples (A, B, X) with their group keys."""

    def __init__(self) -> None:
        self.a: list[np.ndarray] = []
        self.b: list[np.ndarray] = []
        self.x: list[np.ndarray] = []
        self.cells: list[tuple[int, int, int]] = []

    def add(
        self, a_items: np.ndarray, b_items: np.ndarray, x_items: np.ndarray, same_ax: bool, key: tuple[int, int, int]
    ) -> None:
        A, B, X = (g.reshape(-1) for g in np.meshgrid(a_items, b_items, x_items, indexing="ij"))
        if same_ax:  # X is drawn from A's group: never X = A
            keep = A != X
            A, B, X = A[keep], B[keep], X[keep]
        if len(A) == 0:
            return
        self.a.append(A)
        self.b.append(B)
        self.x.append(X)
        self.cells.append(key)

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        if not self.cells:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty, empty, empty, np.zeros((0, 3), dtype=np.int64)
        cell = np.repeat(np.arange(len(self.cells)), [len(x) for x in self.a])
        return (
            np.concatenate(self.a),
            np.concatenate(self.b),
            np.concatenate(self.x),
            cell,
            np.asarray(self.cells, dtype=np.int64),
        )


def _groups(keys: np.ndarray) -> dict[tuple[int, ...], np.ndarray]:
    """{key row: item indices} for a (N, k) int array."""
    out: dict[tuple[int, ...], list[int]] = {}
    for i, row in enumerate(map(tuple, keys.tolist())):
        out.setdefault(row, []).append(i)
    return {k: np.asarray(v, dtype=np.int64) for k, v in out.items()}


def build_task(
    items: ItemTable, conditions: Sequence[str] = CONDITIONS, max_x_speakers: int = 5, seed: int = 0
) -> AbxPlan:
    """The triples of each condition over `items`, and the distinct item pairs they compare."""
    unknown = [c for c in conditions if c not in CONDITIONS]
    if unknown:
        raise ValueError(f"unknown ABX condition {unknown[0]!r}; known: {', '.join(CONDITIONS)}")
    rng = np.random.default_rng(seed)
    n_phones = len(items.phones)
    context = items.prev * n_phones + items.next
    # (context, speaker, phone) -> items: the building block of every cell
    groups = _groups(np.stack([context, items.speaker, items.phone], axis=1))
    by_context: dict[int, dict[int, dict[int, np.ndarray]]] = {}
    for (c, s, p), members in groups.items():
        by_context.setdefault(c, {}).setdefault(s, {})[p] = members
    builders = {name: _TripleBuilder() for name in conditions}
    n_speakers = len(items.speakers)
    for c in sorted(by_context):
        speakers = by_context[c]
        for s in sorted(speakers):
            phones = speakers[s]
            for pa, pb in itertools.permutations(sorted(phones), 2):
                label = pa * n_phones + pb
                if "within" in builders:
                    builders["within"].add(phones[pa], phones[pb], phones[pa], True, (c, s, label))
                if "across" in builders:
                    others = [o for o in sorted(speakers) if o != s and pa in speakers[o]]
                    if len(others) > max_x_speakers:
                        others = sorted(rng.choice(others, size=max_x_speakers, replace=False).tolist())
                    for o in others:
                        builders["across"].add(
                            phones[pa], phones[pb], speakers[o][pa], False, (c, s * n_speakers + o, label)
                        )
        if "speaker" in builders:
            present = {p for s in speakers for p in speakers[s]}
            for p in sorted(present):
                owners = [s for s in sorted(speakers) if p in speakers[s]]
                for sa, sb in itertools.permutations(owners, 2):
                    # BY triphone: the "context" of a speaker cell is (phone, context)
                    builders["speaker"].add(
                        speakers[sa][p],
                        speakers[sb][p],
                        speakers[sa][p],
                        True,
                        (c * n_phones + p, 0, sa * n_speakers + sb),
                    )
    built = {name: b.arrays() for name, b in builders.items()}
    n_items = len(items)
    keys = [
        np.minimum(x, y) * n_items + np.maximum(x, y) for a, b, x, _, _ in built.values() for x, y in ((a, x), (b, x))
    ]
    unique = np.unique(np.concatenate(keys)) if keys else np.zeros(0, dtype=np.int64)
    pairs = np.stack([unique // n_items, unique % n_items], axis=1)
    out = {}
    for name, (a, b, x, cell, cells) in built.items():
        ax = np.searchsorted(unique, np.minimum(a, x) * n_items + np.maximum(a, x))
        bx = np.searchsorted(unique, np.minimum(b, x) * n_items + np.maximum(b, x))
        out[name] = ConditionTriples(ax, bx, cell, cells[:, 0], cells[:, 1], cells[:, 2])
    return AbxPlan(pairs, out, context)


# ---------------------------------------------------------------------------------------------------------
# Collapse.


def _mean_by(keys: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(distinct key rows, mean of `values` per key row)."""
    distinct, inverse = np.unique(keys, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    return distinct, np.bincount(inverse, weights=values) / np.bincount(inverse)


def condition_error(triples: ConditionTriples, distances: np.ndarray) -> float:
    """Error (0-1) of one condition given the distance of every pair of the task; NaN when it has no cell."""
    if triples.num_cells == 0:
        return float("nan")
    d_ax, d_bx = distances[triples.ax], distances[triples.bx]
    wrong = (d_ax > d_bx).astype(np.float64) + 0.5 * (d_ax == d_bx)
    per_cell = np.bincount(triples.cell, weights=wrong, minlength=triples.num_cells) / np.bincount(
        triples.cell, minlength=triples.num_cells
    )
    keys = np.stack([triples.cell_speakers, triples.cell_labels], axis=1)
    per_speakers, over_contexts = _mean_by(keys, per_cell)  # mean over contexts
    _, over_speakers = _mean_by(per_speakers[:, 1:], over_contexts)  # then over speakers
    return float(over_speakers.mean())  # then over label pairs


def score(task: AbxPlan, frames: torch.Tensor, chunks: Sequence[_BlockChunk | _DirectChunk]) -> dict[str, float]:
    """{condition: error in %} of one layer: frames (N, D) of every file concatenated, laid out by
    `plan_pairs(task.pairs, task.item_group, first, length)` (item k at frames[first[k] : first[k] + length[k]])."""
    distances = pair_distances(unit_frames(frames.float()), chunks, len(task.pairs)).double().numpy()
    return {name: 100.0 * condition_error(triples, distances) for name, triples in task.conditions.items()}
