"""One ABX evaluation set: items sampled once, triples built once, then any representation scored on them."""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from typing import Sequence

import numpy as np
import soundfile
import torch

from measure.audio import load_audio

from .features import Representation
from .items import FrameGeometry, ItemTable, sample_items, seconds_of
from .scoring import CONDITIONS, build_task, score

log = logging.getLogger("abx")

CSV_COLUMNS = ("representation", "layer", "condition", "error", "items", "cells")


def with_lengths(table: ItemTable) -> ItemTable:
    """Fill in the sample count of files whose alignment did not give one (ZeroSpeech .item files)."""
    files = []
    for f in table.files:
        if f.num_samples:
            files.append(f)
            continue
        if not f.path.is_file():
            raise FileNotFoundError(f"{f.path}: audio file missing")
        files.append(replace(f, num_samples=int(soundfile.info(str(f.path)).frames)))
    return replace(table, files=files)


class ABXSet:
    """Items of `table` that have a frame in every geometry, at most `max_per_group` per (phone, context,
    speaker), the triples of `conditions`, and the waveforms, loaded once."""

    def __init__(
        self,
        table: ItemTable,
        geometries: Sequence[FrameGeometry],
        conditions: Sequence[str] = CONDITIONS,
        max_per_group: int = 10,
        max_x_speakers: int = 5,
        seed: int = 0,
    ):
        table = with_lengths(table)
        lengths = [
            table.frame_spans(g, [g.frames_for(f.num_samples) for f in table.files])[1]
            for g in dict.fromkeys(geometries)
        ]
        self.items = sample_items(table, lengths, max_per_group, seed)
        self.task = build_task(self.items, conditions, max_x_speakers, seed)
        self.wavs = []
        for f in self.items.files:
            wav = load_audio(f.path)
            if wav.shape[0] != f.num_samples:
                raise ValueError(f"{f.path}: {wav.shape[0]} samples, but its alignment says {f.num_samples}")
            self.wavs.append(wav)
        self.cells = {name: t.num_cells for name, t in self.task.conditions.items()}
        self._plans: dict[tuple, list] = {}  # (geometry, frame counts) -> pair layout: the monitor reuses one
        log.info(
            "ABX set: %d items of %d files (%.1f min, %d speakers); %d item pairs; cells %s",
            len(self.items),
            len(self.items.files),
            seconds_of(self.items) / 60,
            len(np.unique(self.items.speaker)),
            len(self.task.pairs),
            self.cells,
        )

    def frames(self, representation: Representation) -> tuple[list[torch.Tensor], list[int]]:
        """[L] x (N, D): each layer's frames of every file, concatenated; and the frame count of each file."""
        per_layer: list[list[torch.Tensor]] = []
        counts = []
        for wav in self.wavs:
            layers = representation.layers(wav)
            if not per_layer:
                per_layer = [[] for _ in layers]
            for store, h in zip(per_layer, layers):
                store.append(h)
            counts.append(int(layers[0].shape[0]))
        return [torch.cat(store) for store in per_layer], counts

    def spans(self, geometry: FrameGeometry, counts: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """Global first frame and frame count of every item; an item the representation's real frame count cuts
        to nothing keeps the file's last frame (counted in the log)."""
        first, length = self.items.frame_spans(geometry, counts)
        short = length == 0
        if short.any():
            log.info("%d items lie past the last frame of their file; each keeps the last frame", int(short.sum()))
            first = np.where(short, np.asarray(counts)[self.items.file] - 1, first)
            length = np.maximum(length, 1)
        offsets = np.r_[0, np.cumsum(counts)][:-1]
        return offsets[self.items.file] + first, length

    def evaluate(self, representation: Representation) -> list[dict]:
        """One row per layer and condition: error in %, items, cells."""
        tick = time.perf_counter()
        layers, counts = self.frames(representation)
        first, length = self.spans(representation.geometry, counts)
        extracted = time.perf_counter()
        key = (representation.geometry, tuple(counts))
        if key not in self._plans:
            self._plans[key] = self.task.plan(first, length)
        chunks = self._plans[key]
        rows = []
        for layer, frames in enumerate(layers):
            for condition, error in score(self.task, frames, chunks).items():
                rows.append(
                    {
                        "representation": representation.name,
                        "layer": layer,
                        "condition": condition,
                        "error": error,
                        "items": len(self.items),
                        "cells": self.cells[condition],
                    }
                )
        log.info(
            "%s: %d layers, features %.1f s, ABX %.1f s",
            representation.name,
            len(layers),
            extracted - tick,
            time.perf_counter() - extracted,
        )
        return rows
