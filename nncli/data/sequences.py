"""What a run keeps of sequence data (inside preprocessing.json): a timeseries' windows
(`Series`) and a text column's tokens and train-split vocabulary (`Tokens`), with the
numpy code that turns rows into windows and text into token ids. Torch- and pandas-free."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

PAD, UNKNOWN = 0, 1  # token ids: padding after the text's end, and a token not in the vocabulary
Tokenizer = Literal["char", "word"]
_WORD = re.compile(r"\w+|[^\w\s]")


class Series(BaseModel):
    """A timeseries run: each sample is the last `window` rows of `columns` (time order);
    its target is the target columns `horizon` rows after the window's last row."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    columns: list[str]  # the input columns, in their order in each step
    window: int
    horizon: int
    date: str | None = None  # the column of dates (not an input; rows must be in its order)

    def train_part(self, rows: NDArray[np.float32]) -> NDArray[np.float32]:
        """The series' rows that the windows `rows` (consecutive, first to last, flat
        (n, window * columns)) read: each row once, (n + window - 1, columns)."""
        import numpy as np

        steps = rows.reshape(len(rows), self.window, len(self.columns))
        return np.concatenate([steps[:, 0, :], steps[-1, 1:, :]])


def windows(values: NDArray[np.float32], window: int) -> NDArray[np.float32]:
    """Every run of `window` consecutive rows of `values` (T, F), first to last: (T -
    window + 1, window, F), row i the steps i .. i + window - 1 (a copy, float32)."""
    import numpy as np

    view = np.lib.stride_tricks.sliding_window_view(values, window, axis=0)
    return np.ascontiguousarray(view.transpose(0, 2, 1), dtype=np.float32)


def lagged(columns: Sequence[str], window: int) -> list[str]:
    """The names of a window's flat values, step by step: `y[t-2], y[t-1], y[t]`."""
    steps = [f"t-{window - 1 - i}" if i < window - 1 else "t" for i in range(window)]
    return [f"{c}[{s}]" for s in steps for c in columns]


class Tokens(BaseModel):
    """A text column as token ids: `max_length` per row (cut or padded with PAD), the tokens
    seen at least `min_count` times in the train split numbered from 2 (most frequent first),
    any other token UNKNOWN. Text is lower-cased."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    column: str
    tokenizer: Tokenizer
    max_length: int
    min_count: int = 1
    vocabulary: list[str] | None = None  # fitted on the train split: token i has id i + 2

    @property
    def vocab_size(self) -> int:
        """Ids run from 0 to vocab_size - 1 (PAD, UNKNOWN, then the vocabulary)."""
        return 2 + len(self.vocabulary or [])

    def split(self, text: str) -> list[str]:
        lowered = text.lower()
        return list(lowered) if self.tokenizer == "char" else _WORD.findall(lowered)

    def fit(self, texts: Sequence[str]) -> Tokens:
        """The vocabulary of `texts` (the train split's rows only)."""
        counts = Counter(token for text in texts for token in self.split(text))
        kept = sorted(
            (t for t, c in counts.items() if c >= self.min_count), key=lambda t: (-counts[t], t)
        )
        return self.model_copy(update={"vocabulary": kept})

    def ids(self, texts: Sequence[str]) -> NDArray[np.float32]:
        """(len(texts), max_length) token ids, as float32 (exact below 2**24) like every
        model input; an embedding layer takes them as integers."""
        import numpy as np

        if self.vocabulary is None:
            raise ValueError("fit the tokens before encoding")
        index = {token: i + 2 for i, token in enumerate(self.vocabulary)}
        out = np.full((len(texts), self.max_length), PAD, dtype=np.float32)
        for row, text in enumerate(texts):
            ids = [index.get(t, UNKNOWN) for t in self.split(text)[: self.max_length]]
            out[row, : len(ids)] = ids
        return out
