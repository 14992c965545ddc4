"""The item layout s3prl's ctc data loader expects from a corpus (docs/design.md "s3prl compatibility layer")."""

from __future__ import annotations

from typing import Sequence

from torch.utils.data import Dataset

Item = tuple[str, list[int]]  # (audio path, token ids ending in <eos>)


class TokenSortedBuckets(Dataset):
    """Items sorted by token length, longest first; with bucket_size > 1, item i is the window of
    bucket_size neighbours starting at min(len - bucket_size, i), so a batch holds similar lengths."""

    def __init__(self, items: Sequence[Item], bucket_size: int) -> None:
        if bucket_size < 1:
            raise ValueError(f"bucket_size must be >= 1, got {bucket_size}")
        # sorted() is stable, so equal lengths keep their (path-sorted) input order
        self.items = sorted(items, key=lambda item: -len(item[1]))
        self.bucket_size = bucket_size

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> Item | list[Item]:
        if self.bucket_size == 1:
            return self.items[index]
        start = max(0, min(len(self.items) - self.bucket_size, index))
        return self.items[start : start + self.bucket_size]
